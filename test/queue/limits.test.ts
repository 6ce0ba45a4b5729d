/**
 * Concurrency and rate limits per key (`queue/Limits.ts`): at most `limit`
 * runs of a key running at once across programs, race-safe, fair across keys,
 * held by a dead worker's runs until reclaimed, never skipped by the start's
 * handoff; a rate limit's runs wait (`run.throttled`) rather than fail.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, type Duration, Effect, Exit, Layer, Schema, Scope } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import type { RunId } from "../../src/domain/Ids.ts"
import * as Limits from "../../src/queue/Limits.ts"
import { RunQueue } from "../../src/queue/RunQueue.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import { Workers } from "../../src/Workers.ts"
import { dataOf, fastWorkers, logOf, patience, programOn, rowCounts, typesOf, withWorkers } from "./support.ts"

const Input = Schema.Struct({ n: Schema.Int })

/** How many runs of each key run now, and the most at once. */
const tracker = () => {
  const live = new Map<string, number>()
  const most = new Map<string, number>()
  return {
    live,
    most,
    enter: (key: string) => {
      const now = (live.get(key) ?? 0) + 1
      live.set(key, now)
      most.set(key, Math.max(most.get(key) ?? 0, now))
      return Array.from(live.values()).reduce((a, b) => a + b, 0)
    },
    leave: (key: string) => void live.set(key, live.get(key)! - 1)
  }
}

/** Each key's row of `runstream_limits`. */
const limitRows = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ key: string; running: number; waiting: number }>`
    SELECT key, running, waiting FROM runstream_limits ORDER BY key`
  return Object.fromEntries(rows.map((row) => [row.key, { running: row.running, waiting: row.waiting }]))
})

/** A claim by a worker that takes runs and never runs them. */
const claimAs = (workerId: string, limit: number, limitedTasks: ReadonlyArray<string>, leaseMs = 60_000) =>
  Effect.flatMap(RunQueue, (queue) => queue.claim({ workerId, queues: ["default"], limit, leaseMs, limitScopes: limitedTasks.map(Limits.taskScope) }))

describe.concurrent("concurrency limits per key", () => {
  it.live("at most `limit` runs of a key run at once across two programs' workers; slots come back", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const allIn = yield* Deferred.make<void>()
      const track = tracker()
      const Limited = Task.make("test.limited", {
        input: Schema.Struct({ key: Schema.String, n: Schema.Int }),
        output: Schema.Int,
        concurrency: { limit: 2 },
        run: ({ key, n }) =>
          Effect.gen(function*() {
            // 2 of "a", 2 of "b", 2 without a key: every slot taken.
            if (track.enter(key) === 6) yield* Deferred.succeed(allIn, undefined)
            yield* Deferred.await(gate)
            track.leave(key)
            return n
          })
      })
      const workers = { ...fastWorkers, concurrency: 4 }
      const scope = yield* Scope.make()
      const first = yield* Layer.buildWithScope(programOn({ tasks: [Limited], workers }), scope)
      const second = yield* Layer.buildWithScope(programOn({ tasks: [Limited], workers }), scope)
      const started = yield* Effect.gen(function*() {
        const runs = yield* Runs
        const started: Array<{ key: string; id: RunId }> = []
        for (let n = 0; n < 6; n++) {
          for (const key of ["a", "b"]) {
            const run = yield* runs.start(Limited, { key, n }, { concurrencyKey: key })
            // Never taken at its start, even by this program's idle pool.
            expect(run.status).toBe("queued")
            started.push({ key, id: run.id })
          }
        }
        for (let n = 0; n < 3; n++) started.push({ key: "", id: (yield* runs.start(Limited, { key: "", n })).id })
        return started
      }).pipe(Effect.provide(first))

      yield* Effect.gen(function*() {
        yield* Deferred.await(allIn)
        expect(yield* limitRows).toEqual({ "": { running: 2, waiting: 1 }, a: { running: 2, waiting: 4 }, b: { running: 2, waiting: 4 } })
        // The database refuses a third of a key to anyone: a claim now finds nothing.
        expect(yield* claimAs("intruder", 50, ["test.limited"])).toEqual([])
        expect(Object.fromEntries(track.live)).toEqual({ a: 2, b: 2, "": 2 })
        yield* Deferred.succeed(gate, undefined)
        const done = yield* Effect.forEach(started, ({ id }) => RunstreamTest.waitForRunCompletion(id, patience), {
          concurrency: "unbounded"
        })
        expect(done.every((run) => run.status === "succeeded")).toBe(true)
        expect(Object.fromEntries(track.most)).toEqual({ a: 2, b: 2, "": 2 })
        // Order per key is not checked by startedAt across two programs: it is the claimant's
        // clock read before its statement runs, and a claim that waited for a connection
        // stamps an earlier time than the one before it (docs/decisions.md).
        // Every slot came back, and idle keys leave no row behind.
        expect(yield* limitRows).toEqual({})
      }).pipe(Effect.provide(second))
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(TestDatabase.layerUrl)))

  it.live("two workers claiming at once never exceed a key's limit", () =>
    Effect.gen(function*() {
      const Limited = Task.make("test.limited", { input: Input, output: Schema.Int, concurrency: { limit: 2 }, run: ({ n }) => Effect.succeed(n) })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const keys = Array.from({ length: 40 }, (_, k) => `k${k}`)
        yield* runs.startMany(keys.flatMap((key) =>
          [0, 1, 2, 3, 4].map((n) => ({ task: Limited.name, input: { n }, options: { concurrencyKey: key } }))
        ))
        // Eight claims at once, each asking for far more than the limits allow.
        const claims = yield* Effect.all(
          Array.from({ length: 8 }, (_, i) => claimAs(`racer-${i}`, 60, [Limited.name])),
          { concurrency: "unbounded" }
        )
        const sql = yield* SqlClient.SqlClient
        const leased = yield* sql<{ key: string; n: number }>`
          SELECT concurrency_key AS key, count(*)::integer AS n FROM runstream_jobs
          WHERE locked_until IS NOT NULL GROUP BY concurrency_key`
        expect(leased.every((row) => row.n <= 2)).toBe(true)
        expect(claims.flat().length).toBe(leased.reduce((sum, row) => sum + row.n, 0))
        // Claims one after another fill every key to its limit, and no further.
        for (let i = 0; i < 3; i++) yield* claimAs("after", 100, [Limited.name])
        const rows = yield* limitRows
        expect(Object.values(rows).every((row) => row.running === 2 && row.waiting === 3)).toBe(true)
        expect(Object.keys(rows).length).toBe(40)
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Limited], workers: false })))
    }))

  it.live("fair across keys: one run of key B is claimed in the first claim behind 2,000 waiting runs of key A", () =>
    Effect.gen(function*() {
      const Limited = Task.make("test.limited", { input: Input, output: Schema.Int, concurrency: { limit: 5_000 }, run: ({ n }) => Effect.succeed(n) })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const a: Array<{ readonly id: RunId; readonly at: number }> = []
        for (let batch = 0; batch < 4; batch++) {
          const created = yield* runs.startMany(Array.from({ length: 500 }, (_, i) => ({
            task: Limited.name,
            input: { n: batch * 500 + i },
            options: { concurrencyKey: "A" }
          })))
          for (const { run } of created) a.push({ id: run.id, at: run.runAt.epochMillis })
        }
        const b = yield* runs.start(Limited, { n: -1 }, { concurrencyKey: "B" })
        const firstClaim = yield* claimAs("fair", 10, [Limited.name])
        expect(firstClaim.length).toBe(10)
        expect(firstClaim.map((claim) => claim.runId)).toContain(b.id)
        expect(firstClaim.every((claim) => claim.limited)).toBe(true)
        // A's runs in A's order (run_at, then id): its oldest first.
        const aOrder = [...a].sort((x, y) => x.at - y.at || (x.id < y.id ? -1 : 1)).map((run) => run.id)
        expect(firstClaim.filter((claim) => claim.runId !== b.id).map((claim) => claim.runId).sort()).toEqual(aOrder.slice(0, 9).sort())
        expect(yield* limitRows).toEqual({ A: { running: 9, waiting: 1991 }, B: { running: 1, waiting: 0 } })
        // Cancelling a waiting run gives up its place in the key's count.
        const waiting = yield* runs.start(Limited, { n: -2 }, { concurrencyKey: "B" })
        yield* runs.cancel(waiting.id)
        expect((yield* limitRows)["B"]).toEqual({ running: 1, waiting: 0 })
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Limited], workers: false })))
    }))

  it.live("a dead worker's run holds its key's slot until its lease is reclaimed, and gives it back once", () =>
    Effect.gen(function*() {
      const track = tracker()
      const Single = Task.make("test.single", {
        input: Input,
        output: Schema.Int,
        concurrency: { limit: 1 },
        run: ({ n }) =>
          Effect.sync(() => track.enter("k")).pipe(
            Effect.zipRight(Effect.yieldNow()),
            Effect.ensuring(Effect.sync(() => track.leave("k"))),
            Effect.as(n)
          )
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const first = yield* runs.start(Single, { n: 1 }, { concurrencyKey: "k" })
        const second = yield* runs.start(Single, { n: 2 }, { concurrencyKey: "k" })
        // A worker claims the first and dies (its lease: 2 seconds); the second waits for the slot.
        expect((yield* claimAs("ghost", 10, [Single.name], 2_000)).map((claim) => claim.runId)).toEqual([first.id])
        expect(yield* claimAs("other", 10, [Single.name])).toEqual([])
        expect(yield* limitRows).toEqual({ k: { running: 1, waiting: 1 } })
        // Workers (and the program's reclaim) take over: the first is retried, then the second runs.
        const done = yield* Effect.forEach([first, second], (run) => RunstreamTest.waitForRunCompletion(run.id, patience)).pipe(
          withWorkers({ ...fastWorkers, concurrency: 4 })
        )
        expect(done.map((run) => [run.status, run.attempt])).toEqual([["succeeded", 2], ["succeeded", 1]])
        expect(track.most.get("k")).toBe(1)
        expect(typesOf(yield* logOf(first.id))).toEqual(["run.queued", "run.started", "run.retrying", "run.started", "run.succeeded"])
        // The ghost's late end is refused and frees nothing twice.
        const queue = yield* RunQueue
        const late = yield* queue.recordEnds({ workerId: "ghost" }, [
          { runId: first.id, attempt: 1, outcome: { _tag: "succeeded", output: 1 }, limited: true }
        ])
        expect(late.size).toBe(0)
        expect(yield* limitRows).toEqual({})
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Single], workers: false })))
    }))

  it.live("runs started under limits a later deploy dropped are still claimed, under the limits they were started with", () =>
    Effect.gen(function*() {
      const track = tracker()
      const definition = (concurrency: { readonly limit: number } | undefined) =>
        Task.make("test.redeployed", {
          input: Input,
          output: Schema.Int,
          ...(concurrency === undefined ? {} : { concurrency }),
          run: ({ n }) =>
            Effect.sync(() => track.enter("k")).pipe(
              Effect.zipRight(Effect.sleep("20 millis")),
              Effect.ensuring(Effect.sync(() => track.leave("k"))),
              Effect.as(n)
            )
        })
      const before = definition({ limit: 1 })
      const after = definition(undefined)
      const started = yield* Effect.gen(function*() {
        const runs = yield* Runs
        return yield* runs.startMany([1, 2, 3].map((n) => ({ task: before.name, input: { n }, options: { concurrencyKey: "k" } })))
      }).pipe(Effect.provide(programOn({ tasks: [before], workers: false })))
      yield* Effect.gen(function*() {
        const done = yield* Effect.forEach(started, ({ run }) => RunstreamTest.waitForRunCompletion(run.id, patience))
        expect(done.map((run) => run.status)).toEqual(["succeeded", "succeeded", "succeeded"])
        expect(track.most.get("k")).toBe(1)
        expect(yield* limitRows).toEqual({})
      }).pipe(Effect.provide(programOn({ tasks: [after], workers: { ...fastWorkers, concurrency: 4 } })))
    }).pipe(Effect.provide(TestDatabase.layerUrl)))

  it.live("runs of a limited task are never taken at their start; other tasks' runs still are", () =>
    Effect.gen(function*() {
      const Limited = Task.make("test.limited", { input: Input, output: Schema.Int, concurrency: { limit: 3 }, run: ({ n }) => Effect.succeed(n) })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const workers = yield* Workers
        // Until the pool is idle between claims, an Echo run is taken at its start.
        let taken = false
        for (let i = 0; i < 20 && !taken; i++) {
          const before = yield* workers.takenAtStart
          const echo = yield* runs.start(Echo, `probe ${i}`)
          yield* RunstreamTest.waitForRunCompletion(echo.id, patience)
          taken = (yield* workers.takenAtStart) === before + 1
        }
        expect(taken).toBe(true)
        const before = yield* workers.takenAtStart
        const limited = yield* runs.start(Limited, { n: 1 }, { concurrencyKey: "x" })
        expect(limited.status).toBe("queued")
        expect(yield* workers.takenAtStart).toBe(before)
        expect((yield* RunstreamTest.waitForRunCompletion(limited.id, patience)).status).toBe("succeeded")
        expect(typesOf(yield* logOf(limited.id))).toEqual(["run.queued", "run.started", "run.succeeded"])
        // The run shows its key, and a replay keeps it; a task without limits ignores the key.
        expect(limited.concurrencyKey).toBe("x")
        expect((yield* runs.get(limited.id)).concurrencyKey).toBe("x")
        const replayed = yield* runs.replay(limited.id)
        expect(replayed.run.concurrencyKey).toBe("x")
        expect((yield* RunstreamTest.waitForRunCompletion(replayed.run.id, patience)).status).toBe("succeeded")
        expect("concurrencyKey" in (yield* runs.start(Limited, { n: 2 }))).toBe(false)
        expect("concurrencyKey" in (yield* runs.start(Echo, "keyed", { concurrencyKey: "x" }))).toBe(false)
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo, Limited], workers: fastWorkers })))
    }))
})

describe.concurrent("rate limits per key", () => {
  it.live("no more than `limit` starts of a key per period; the others wait, logged run.throttled once with their time", () =>
    Effect.gen(function*() {
      const Rated = Task.make("test.rated", {
        input: Input,
        output: Schema.Int,
        // A period long enough that the claims after the first come within it, however busy the machine.
        rateLimit: { limit: 2, period: "1500 millis" },
        run: ({ n }) => Effect.succeed(n)
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const started = yield* runs.startMany([0, 1, 2, 3, 4].map((n) => ({ task: Rated.name, input: { n }, options: { concurrencyKey: "r" } })))
        const other = yield* runs.start(Rated, { n: 9 }, { concurrencyKey: "other" })
        const done = yield* Effect.forEach(started, ({ run }) => RunstreamTest.waitForRunCompletion(run.id, patience)).pipe(
          withWorkers({ ...fastWorkers, concurrency: 8 })
        )
        expect(done.every((run) => run.status === "succeeded")).toBe(true)
        const starts = done.map((run) => run.startedAt!.epochMillis).sort((a, b) => a - b)
        // Any two starts `limit` apart are a period apart.
        for (let i = 0; i + 2 < starts.length; i++) expect(starts[i + 2]! - starts[i]!).toBeGreaterThanOrEqual(1500)
        let throttled = 0
        for (const run of done) {
          const log = yield* logOf(run.id)
          const types = typesOf(log)
          expect(log.map((event) => event.seq)).toEqual(log.map((_, i) => i + 1))
          const marks = log.filter((event) => event.type === "run.throttled")
          expect(marks.length).toBeLessThanOrEqual(1)
          if (marks.length === 1) {
            throttled++
            expect(types.slice(0, 2)).toEqual(["run.queued", "run.throttled"])
            const until = Date.parse(dataOf(marks[0]!)["until"] as string)
            expect(run.startedAt!.epochMillis).toBeGreaterThanOrEqual(until)
          } else {
            expect(types).toEqual(["run.queued", "run.started", "run.succeeded"])
          }
        }
        expect(throttled).toBeGreaterThanOrEqual(3)
        // Another key has its own rate.
        expect((yield* RunstreamTest.waitForRunCompletion(other.id, patience).pipe(withWorkers(fastWorkers))).status).toBe("succeeded")
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Rated], workers: false })))
    }))

  it.live("a claim that waits for a connection stamps its starts with the time it got one, not the time it was asked", () =>
    Effect.gen(function*() {
      const Rated = Task.make("test.rated", { input: Input, output: Schema.Int, rateLimit: { limit: 2, period: "1 minute" }, run: ({ n }) => Effect.succeed(n) })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const sql = yield* SqlClient.SqlClient
        yield* runs.start(Rated, { n: 1 }, { concurrencyKey: "k" })
        // The pool's one connection, held while the claim is asked for.
        const holder = yield* Scope.make()
        yield* Scope.extend(sql.reserve, holder)
        const claim = yield* Effect.fork(claimAs("w", 1, [Rated.name]))
        yield* Effect.sleep("300 millis")
        const released = Date.now()
        yield* Scope.close(holder, Exit.void)
        expect((yield* claim).length).toBe(1)
        const [row] = yield* sql<{ stamp: Date }>`SELECT starts[cardinality(starts)] AS stamp FROM runstream_limits WHERE key = 'k'`
        // Before, the stamp was read when the claim was asked for: 300 ms before the connection was free.
        expect(row!.stamp.getTime()).toBeGreaterThanOrEqual(released - 5)
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Rated], workers: false, maxConnections: 1 })))
    }))
})

describe.concurrent("limit definitions and options", () => {
  const withLimits = (limits: {
    readonly concurrency?: { readonly limit: number }
    readonly rateLimit?: { readonly limit: number; readonly period: Duration.DurationInput }
  }) => Task.make("test.bad", { input: Input, output: Schema.Int, run: ({ n }) => Effect.succeed(n), ...limits })

  it.effect("a limit of 0, a rate of 0, a period under 1 ms or negative are refused when the registry is built, naming the task and field", () =>
    Effect.gen(function*() {
      const cases = [
        [withLimits({ concurrency: { limit: 0 } }), "task 'test.bad': concurrency.limit must be an integer from 1 to 100000 (got 0)"],
        [withLimits({ concurrency: { limit: 1.5 } }), "concurrency.limit must be an integer"],
        [withLimits({ rateLimit: { limit: 0, period: "1 second" } }), "rateLimit.limit must be an integer from 1 to 10000 (got 0)"],
        [withLimits({ rateLimit: { limit: 5, period: "0.5 millis" } }), "rateLimit.period must be a whole number of milliseconds from 1 ms to 1 day (got 0.5 ms)"],
        [withLimits({ rateLimit: { limit: 5, period: -1000 } }), "rateLimit.period must be a whole number of milliseconds from 1 ms to 1 day (got 0 ms)"],
        [withLimits({ rateLimit: { limit: 5, period: "soon" as never } }), "(got no duration)"]
      ] as const
      for (const [task, message] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(Layer.build(Task.layerRegistry(task))))
        expect(Exit.isFailure(exit) && String(exit.cause)).toContain(message)
      }
      // GET /v1/tasks (and RPC Tasks) shows them.
      expect(Task.describe(withLimits({ concurrency: { limit: 3 }, rateLimit: { limit: 5, period: "2 seconds" } }))).toMatchObject({
        concurrency: { limit: 3 },
        rateLimit: { limit: 5, periodMs: 2000 }
      })
      expect(Task.describe(withLimits({}))).toMatchObject({ concurrency: null, rateLimit: null })
      const ok = yield* Effect.exit(Effect.scoped(Layer.build(Task.layerRegistry(withLimits({ concurrency: { limit: 1 }, rateLimit: { limit: 1, period: "1 millis" } })))))
      expect(Exit.isSuccess(ok)).toBe(true)
    }))

  it.live("a bad concurrencyKey is refused naming the field, and nothing is written", () =>
    Effect.gen(function*() {
      const Limited = Task.make("test.limited", { input: Input, output: Schema.Int, concurrency: { limit: 1 }, run: ({ n }) => Effect.succeed(n) })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const before = yield* rowCounts
        for (const concurrencyKey of ["", "x".repeat(201), "nul\u0000"]) {
          const error = yield* Effect.flip(runs.startMany([{ task: Limited.name, input: { n: 1 }, options: { concurrencyKey } }]))
          expect(error._tag).toBe("InvalidInput")
          expect(JSON.stringify(error)).toContain("concurrencyKey")
        }
        expect(yield* rowCounts).toEqual(before)
        expect(yield* limitRows).toEqual({})
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Limited], workers: false })))
    }))
})
