import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Fiber, Layer, Mailbox, Ref, Stream } from "effect"
import { RunNotFound } from "../../src/domain/Errors.ts"
import { Runs } from "../../src/Runs.ts"
import { Workers } from "../../src/Workers.ts"
import { Burst, currentDatabase, Executed, program } from "./support.ts"

describe.concurrent("two programs in one process", () => {
  it.scopedLive("share no run, event, fiber or connection, while both run workers", () =>
    Effect.gen(function*() {
      const a = yield* Layer.build(program())
      const b = yield* Layer.build(program())
      const runsA = Context.get(a, Runs)
      const runsB = Context.get(b, Runs)

      // Each program's debug stream, open before anything starts: 5 runs × (queued, started, 2 bursts, succeeded).
      const seenByA = yield* Mailbox.toStream(yield* runsA.subscribeAll()).pipe(Stream.take(5 * 5), Stream.runCollect, Effect.fork)
      const seenByB = yield* Mailbox.toStream(yield* runsB.subscribeAll()).pipe(Stream.take(5 * 5), Stream.runCollect, Effect.fork)

      const started = yield* Effect.all([
        Effect.forEach([1, 2, 3, 4, 5], () => runsA.start(Burst, { n: 2, concurrency: 1 })),
        Effect.forEach([1, 2, 3, 4, 5], () => runsB.start(Burst, { n: 2, concurrency: 1 }))
      ], { concurrency: 2 })
      const [idsA, idsB] = started.map((runs) => runs.map((run) => run.id))
      yield* Effect.forEach(idsA!, (id) => runsA.awaitCompletion(id, { timeout: "20 seconds" }), { concurrency: 5 })
      yield* Effect.forEach(idsB!, (id) => runsB.awaitCompletion(id, { timeout: "20 seconds" }), { concurrency: 5 })

      // Runs: each program sees only its own.
      expect((yield* runsA.list({ limit: 100 })).runs.map((r) => r.id).sort()).toEqual([...idsA!].sort())
      expect((yield* runsB.list({ limit: 100 })).runs.map((r) => r.id).sort()).toEqual([...idsB!].sort())
      const crossed = yield* runsB.get(idsA![0]!).pipe(Effect.flip)
      expect(crossed).toBeInstanceOf(RunNotFound)

      // Fibers: each program's workers executed exactly its own runs.
      expect([...(yield* Ref.get(Context.get(a, Executed)))].sort()).toEqual([...idsA!].sort())
      expect([...(yield* Ref.get(Context.get(b, Executed)))].sort()).toEqual([...idsB!].sort())
      expect(Context.get(a, Workers).workerId).not.toEqual(Context.get(b, Workers).workerId)

      // Events: each debug stream saw its own program's events only.
      const eventsA = Chunk.toArray(yield* Fiber.join(seenByA))
      const eventsB = Chunk.toArray(yield* Fiber.join(seenByB))
      expect(new Set(eventsA.map((e) => e.runId))).toEqual(new Set(idsA))
      expect(new Set(eventsB.map((e) => e.runId))).toEqual(new Set(idsB))

      // Connections: two databases, and every connection of a program is on its own.
      const dbA = yield* Effect.provide(currentDatabase, a)
      const dbB = yield* Effect.provide(currentDatabase, b)
      expect(dbA).not.toEqual(dbB)
      const sql = Context.get(a, SqlClient.SqlClient)
      const owners = yield* sql<{ datname: string; n: number }>`
        SELECT datname, count(*)::integer AS n FROM pg_stat_activity
        WHERE datname IN (${dbA}, ${dbB}) GROUP BY datname`
      expect(owners.map((o) => o.datname).sort()).toEqual([dbA, dbB].sort())
    }))

  it.scopedLive("closing one program stops its workers and frees its connections; the other runs on", () =>
    Effect.gen(function*() {
      const b = yield* Layer.build(program())
      const runsB = Context.get(b, Runs)
      const sqlB = Context.get(b, SqlClient.SqlClient)

      const dbA = yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* Layer.build(program())
        const runsA = Context.get(a, Runs)
        const run = yield* runsA.start(Burst, { n: 3, concurrency: 1 })
        yield* runsA.awaitCompletion(run.id, { timeout: "20 seconds" })
        return yield* Effect.provide(currentDatabase, a)
      }))

      // A's scope is closed: its pool, listener and workers are gone.
      const left = yield* sqlB<{ n: number }>`
        SELECT count(*)::integer AS n FROM pg_stat_activity WHERE datname = ${dbA}`
      expect(left[0]!.n).toBe(0)

      const run = yield* runsB.start(Burst, { n: 3, concurrency: 1 })
      const done = yield* runsB.awaitCompletion(run.id, { timeout: "20 seconds" })
      expect(done.status).toBe("succeeded")
    }))

  it.scopedLive("ten programs at once stay within their pool bounds and hand every connection back", () =>
    Effect.gen(function*() {
      const observer = yield* Layer.build(program({ workers: false, maxConnections: 1 }))
      const sql = Context.get(observer, SqlClient.SqlClient)
      const databases = yield* Effect.forEach(Array.from({ length: 10 }), () =>
        Effect.scoped(Effect.gen(function*() {
          const ctx = yield* Layer.build(program({ maxConnections: 3, workers: { concurrency: 20 } }))
          const runs = Context.get(ctx, Runs)
          const started = yield* Effect.forEach(Array.from({ length: 20 }), () => runs.start(Burst, { n: 5, concurrency: 5 }))
          yield* Effect.forEach(started, (run) => runs.awaitCompletion(run.id, { timeout: "60 seconds" }), { concurrency: 20 })
          const name = yield* Effect.provide(currentDatabase, ctx)
          // Pool of 3 plus the one LISTEN connection, however busy the program is.
          const [{ n }] = yield* sql<{ n: number }>`
            SELECT count(*)::integer AS n FROM pg_stat_activity WHERE datname = ${name}`
          expect(n).toBeLessThanOrEqual(4)
          return name
        })), { concurrency: 10 })
      const left = yield* sql<{ n: number }>`
        SELECT count(*)::integer AS n FROM pg_stat_activity WHERE datname IN ${sql.in(databases)}`
      expect(left[0]!.n).toBe(0)
    }), 180_000)
})
