import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestDatabase } from "../../src/testing/index.ts"

describe("the pool under interrupted statements", () => {
  it.scopedLive("an interrupted statement never cancels another fiber's statement on the connection it leaves", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      // Statements timed out at every point of their run (before, during,
      // just after), beside statements that must all succeed, on 2
      // connections: each released connection goes straight to the next one.
      let interrupted = 0
      let victims = 0
      const victim = (i: number) =>
        sql`SELECT pg_sleep(${(i % 5) / 1000})`.pipe(
          Effect.timeout(`${i % 7} millis`),
          Effect.catchTag("TimeoutException", () => Effect.sync(() => interrupted++)),
          Effect.ensuring(Effect.sync(() => victims++))
        )
      const failures: Array<string> = []
      let honest = 0
      const honestLoop = Effect.whileLoop({
        while: () => victims < 600,
        body: () =>
          sql`SELECT pg_sleep(0.001), 1 AS one`.pipe(
            Effect.tap(() => honest++),
            Effect.catchAll((error) => Effect.sync(() => failures.push(String(error.cause))))
          ),
        step: () => {}
      })
      yield* Effect.all([
        Effect.forEach(Array.from({ length: 600 }, (_, i) => i), victim, { discard: true }),
        honestLoop,
        honestLoop
      ], { concurrency: "unbounded", discard: true })
      // Before the pool kept connections from sql-pg's cancel, about one honest statement in 15 failed here.
      expect(failures).toEqual([])
      expect(interrupted).toBeGreaterThan(100)
      expect(honest).toBeGreaterThan(100)
    }).pipe(Effect.provide(TestDatabase.layer({ maxConnections: 2 }))), 60_000)

  it.scopedLive("a transaction interrupted in a statement rolls back, and its connection serves the next one", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE written (n integer)`
      const outcome = yield* sql.withTransaction(Effect.zipRight(
        sql`INSERT INTO written VALUES (1)`,
        sql`SELECT pg_sleep(0.3)`
      )).pipe(Effect.timeout("50 millis"), Effect.either)
      expect(outcome._tag).toBe("Left")
      // One connection: the next statement waits for the interrupted one, then runs on it.
      const rows = yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM written`
      expect(rows[0]!.n).toBe(0)
      const state = yield* sql<{ state: string }>`SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()`
      expect(state[0]!.state).toBe("active")
    }).pipe(Effect.provide(TestDatabase.layer({ maxConnections: 1 }))))
})
