import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Layer } from "effect"
import { maxPreparedPerConnection } from "../../src/internal/PreparingClient.ts"
import { TestDatabase } from "../../src/testing/index.ts"

/** A pool of one connection on a fresh database, so every statement runs on the same session. */
const onePool = (env: ReadonlyArray<readonly [string, string]> = []) =>
  Layer.build(TestDatabase.layer({ maxConnections: 1 }).pipe(
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(env))))
  ))

/** The statements this session prepared by name. */
const preparedByUs = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql<{ statement: string }>`SELECT statement FROM pg_prepared_statements WHERE name LIKE 'runstream\\_%'`,
    (rows) => rows.map((row) => row.statement)
  )

describe("prepared statements", () => {
  it.scopedLive("a marked statement is prepared once per connection and run with each call's values; others are not", () =>
    Effect.gen(function*() {
      const sql = Context.get(yield* onePool(), SqlClient.SqlClient)
      const before = yield* preparedByUs(sql)
      for (const n of [1, 2, 3]) {
        const [row] = yield* sql<{ n: number }>`/* prepared */ SELECT ${n}::integer * 2 AS n`
        expect(row!.n).toBe(n * 2)
      }
      yield* sql`SELECT ${1}::integer AS unmarked`
      const after = yield* preparedByUs(sql)
      expect(after.filter((text) => !before.includes(text))).toEqual(["/* prepared */ SELECT $1::integer * 2 AS n"])
    }))

  it.scopedLive("a connection prepares a bounded number of texts, and runs the others unnamed", () =>
    Effect.gen(function*() {
      const sql = Context.get(yield* onePool(), SqlClient.SqlClient)
      const before = (yield* preparedByUs(sql)).length
      for (let i = 0; i < maxPreparedPerConnection + 5; i++) {
        // A different text each time: what a marked statement must never be.
        const [row] = yield* sql<{ n: number }>`/* prepared */ SELECT ${i}::integer AS n, ${sql.literal(String(i))} AS k`
        expect(row!.n).toBe(i)
      }
      expect((yield* preparedByUs(sql)).length).toBe(maxPreparedPerConnection)
      expect(before).toBeLessThan(maxPreparedPerConnection)
    }))

  it.scopedLive("RUNSTREAM_DB_PREPARE=false prepares nothing", () =>
    Effect.gen(function*() {
      const sql = Context.get(yield* onePool([["RUNSTREAM_DB_PREPARE", "false"]]), SqlClient.SqlClient)
      const [row] = yield* sql<{ n: number }>`/* prepared */ SELECT ${4}::integer * 2 AS n`
      expect(row!.n).toBe(8)
      expect(yield* preparedByUs(sql)).toEqual([])
    }))
})
