/**
 * A fresh database for each test graph: cloned (`CREATE DATABASE … TEMPLATE`)
 * from a template migrated once per server and schema, dropped when the graph's
 * scope closes. Cloning takes a few milliseconds where migrating takes hundreds.
 * @since 0.1.0
 */
import { createHash, randomBytes } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Config, Data, Duration, Effect, Layer, Option, Redacted } from "effect"
import pg from "pg"
import * as Database from "../Database.ts"
import * as Embedded from "../internal/embeddedPostgres.ts"
import { serverUrlVariable } from "./TestServer.ts"

export class TestDatabaseError extends Data.TaggedError("TestDatabaseError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

const migrationsDir = join(dirname(fileURLToPath(import.meta.url)), "..", "migrations")

/** The template's name changes whenever a migration file does. */
const templateName = () => {
  const hash = createHash("sha256")
  for (const file of readdirSync(migrationsDir).sort()) hash.update(file).update(readFileSync(join(migrationsDir, file)))
  return `runstream_tpl_${hash.digest("hex").slice(0, 12)}`
}

const withUrlDatabase = (url: string, database: string) => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/** A connection to the server's admin database, closed with the scope. */
const adminClient = (url: string) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const client = new pg.Client({ connectionString: url })
        client.on("error", () => {})
        await client.connect()
        return client
      },
      catch: (cause) => new TestDatabaseError({ message: `cannot reach the test server: ${String(cause)}`, cause })
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

const query = (client: pg.Client, text: string, values: Array<unknown> = []) =>
  Effect.tryPromise({
    try: () => client.query(text, values),
    catch: (cause) => new TestDatabaseError({ message: `${text}: ${String(cause)}`, cause })
  })

/**
 * Creates and migrates the template once per server and schema. Test workers
 * race here, so it happens under a session advisory lock; the template is built
 * under another name and renamed, so nobody ever clones a half-migrated one.
 */
const ensureTemplate = (serverUrl: string, template: string) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* adminClient(serverUrl)
    yield* query(client, "SELECT pg_advisory_lock(hashtext('runstream.test-template'))")
    const exists = yield* query(client, "SELECT 1 FROM pg_database WHERE datname = $1", [template])
    if (exists.rowCount !== 0) return
    const building = `${template}_building_${randomBytes(4).toString("hex")}`
    yield* query(client, `CREATE DATABASE ${building}`)
    yield* Effect.scoped(Layer.build(
      Database.layerClient({ maxConnections: 2, connectTimeout }).pipe(Layer.provide(Layer.succeed(Database.DatabaseUrl, {
        url: Redacted.make(withUrlDatabase(serverUrl, building)),
        description: "test template"
      })))
    ))
    yield* query(client, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [building])
    yield* query(client, `ALTER DATABASE ${building} RENAME TO ${template}`)
  }))

/**
 * The admin URL of the test server: `RUNSTREAM_TEST_SERVER_URL` (set by the
 * global setup), else `TEST_DATABASE_URL`; without either, an embedded server
 * is started for this graph alone.
 */
const serverUrl = Effect.gen(function*() {
  const given = yield* Config.option(Config.string(serverUrlVariable))
  if (Option.isSome(given)) return given.value
  const test = yield* Config.option(Config.string("TEST_DATABASE_URL"))
  if (Option.isSome(test) && test.value !== "") return test.value
  const dir = yield* Effect.sync(() => join(process.cwd(), ".runstream", `test-${randomBytes(4).toString("hex")}`))
  const server = yield* Embedded.start({ dataDir: dir, persistent: false })
  return Redacted.value(server.url)
})

/** A `DatabaseUrl` for a fresh database, dropped when the scope closes. */
export const layerUrl = Layer.scoped(
  Database.DatabaseUrl,
  Effect.gen(function*() {
    const server = yield* serverUrl
    const template = templateName()
    yield* ensureTemplate(server, template)
    const name = `runstream_t_${randomBytes(6).toString("hex")}`
    const once = (text: string) => Effect.scoped(Effect.flatMap(adminClient(server), (client) => query(client, text)))
    yield* Effect.acquireRelease(
      once(`CREATE DATABASE ${name} TEMPLATE ${template}`),
      () =>
        once(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).pipe(
          Effect.catchAll((error) => Effect.logWarning(`could not drop test database ${name}`, error))
        )
    )
    return { url: Redacted.make(withUrlDatabase(server, name)), description: `test database ${name}` }
  })
)

/**
 * How long a test's pool waits for a connection. Generous: many graphs open
 * pools at once on a busy 2-core CI machine, where a new backend can take
 * seconds; a test should fail on its own timeout, not on its pool's.
 */
export const connectTimeout = Duration.seconds(30)

/** A migrated pool (small: many graphs run at once) on a fresh database. */
export const layer = (options: { readonly maxConnections?: number | undefined } = {}) =>
  Database.layerClient({ maxConnections: options.maxConnections ?? 4, connectTimeout }).pipe(Layer.provideMerge(layerUrl))
