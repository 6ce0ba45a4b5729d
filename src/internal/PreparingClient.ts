/**
 * A `pg` client that runs the statements marked with `preparedMarker` as named
 * prepared statements: each connection parses and plans such a statement once,
 * then only binds and executes it. The hot statements (create, claim, finish,
 * append, relay) are large CTEs whose parsing and planning cost Postgres more
 * than executing them; @effect/sql-pg sends every statement unnamed.
 *
 * Only marked statements: their text must not vary between calls (values are
 * parameters), since every distinct text stays prepared on its connection
 * until the connection closes. A connection prepares at most
 * `maxPreparedPerConnection` texts (a bound, should a marked text ever vary);
 * beyond them, statements run unnamed.
 */
import { createHash } from "node:crypto"
import * as Pg from "pg"

/** Starts the text of a statement to prepare. */
export const preparedMarker = "/* prepared */"

/** Runstream marks about ten statements. */
export const maxPreparedPerConnection = 100

type Query = (config: unknown, values?: unknown, callback?: unknown) => unknown

export class PreparingClient extends Pg.Client {
  constructor(config?: string | Pg.ClientConfig) {
    super(config)
    // This connection's statement names, by text (a handful of texts).
    const names = new Map<string, string>()
    const query = this.query.bind(this) as Query
    const prepared: Query = (config, values, callback) => {
      if (typeof config !== "string" || !config.startsWith(preparedMarker)) return query(config, values, callback)
      let name = names.get(config)
      if (name === undefined) {
        if (names.size >= maxPreparedPerConnection) return query(config, values, callback)
        name = `runstream_${createHash("sha1").update(config).digest("hex").slice(0, 24)}`
        names.set(config, name)
      }
      return query({ name, text: config }, values, callback)
    }
    this.query = prepared as Pg.Client["query"]
  }
}
