/**
 * Limits declared on a queue (`queue/QueueLimits.ts`): they count every run
 * started on the queue, whatever its task, by the start's `concurrencyKey`;
 * a task's own limits win; a worker that does not declare them still serves
 * the runs waiting under them; bad definitions stop the program at start-up.
 * And a trailing debounce fold moves its run to the last start's key.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Schema, Scope } from "effect"
import type { RunId } from "../../src/domain/Ids.ts"
import { RunQueue } from "../../src/queue/RunQueue.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import { fastWorkers, logOf, patience, programOn, typesOf, withWorkers } from "./support.ts"

const Input = Schema.Struct({ n: Schema.Int })

/** Each scope's and key's row of `runstream_limits`. */
const limitRows = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ scope: string; key: string; running: number; waiting: number }>`
    SELECT scope, key, running, waiting FROM runstream_limits ORDER BY scope, key`
  return rows.map((row) => ({ ...row }))
})

/** Two tasks that hold their place until `gate` opens, counting how many run at once. */
const gatedTasks = () =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<void>()
    let live = 0
    let most = 0
    const body = ({ n }: { n: number }) =>
      Effect.gen(function*() {
        live++
        most = Math.max(most, live)
        yield* Deferred.await(gate)
        live--
        return n
      })
    const First = Task.make("test.queue.first", { input: Input, output: Schema.Int, run: body })
    const Second = Task.make("test.queue.second", { input: Input, output: Schema.Int, run: body })
    return { First, Second, gate, live: () => live, most: () => most }
  })

const Quick = Task.make("test.queue.quick", { input: Input, output: Schema.Int, run: ({ n }) => Effect.succeed(n) })

const awaitAll = (ids: ReadonlyArray<RunId>) =>
  Effect.forEach(ids, (id) => RunstreamTest.waitForRunCompletion(id, patience), { concurrency: "unbounded" })

describe.concurrent("limits declared on a queue", () => {
  it.live("a queue's concurrency counts the runs of every task on it, per key; other queues are not held", () =>
    Effect.gen(function*() {
      const { First, Second, gate, live, most } = yield* gatedTasks()
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const started: Array<RunId> = []
        for (let n = 0; n < 3; n++) {
          for (const task of [First, Second]) {
            const run = yield* runs.start(task, { n }, { queue: "mail" })
            // Never taken at its start, though this program's pool is idle.
            expect(run.status).toBe("queued")
            started.push(run.id)
          }
        }
        // Another key of the queue has slots of its own.
        const keyed = yield* runs.start(First, { n: 9 }, { queue: "mail", concurrencyKey: "tenant-b" })
        // 2 of the key "" + 1 of tenant-b running, the other 4 waiting.
        yield* Effect.repeat(limitRows, {
          until: (rows) => rows.reduce((sum, row) => sum + row.running, 0) === 3 && live() === 3
        })
        // A run of another queue is not held by the queue's limit: it ends while they wait.
        const other = yield* runs.start(Quick, { n: 10 })
        expect((yield* RunstreamTest.waitForRunCompletion(other.id, patience)).status).toBe("succeeded")
        expect(yield* limitRows).toEqual([
          { scope: "queue:mail", key: "", running: 2, waiting: 4 },
          { scope: "queue:mail", key: "tenant-b", running: 1, waiting: 0 }
        ])
        yield* Deferred.succeed(gate, undefined)
        const done = yield* awaitAll([...started, keyed.id])
        expect(done.every((run) => run.status === "succeeded")).toBe(true)
        expect(most()).toBe(3)
        expect(yield* limitRows).toEqual([])
      }).pipe(Effect.provide(RunstreamTest.layer({
        tasks: [First, Second, Quick],
        workers: { ...fastWorkers, concurrency: 8, queues: ["default", "mail"] },
        queues: { mail: { concurrency: { limit: 2 } } }
      })))
    }))

  it.live("a queue's rate limit makes runs over it wait, logged run.throttled", () =>
    Effect.gen(function*() {
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const started = yield* runs.startMany([0, 1, 2].map((n) => ({ task: Quick.name, input: { n }, options: { queue: "mail" } })))
        // Which two start first is the claim's order (ids made in one millisecond are not ordered).
        const logs = yield* Effect.repeat(Effect.forEach(started, (created) => logOf(created.run.id)), {
          until: (logs) => logs.filter((log) => typesOf(log).includes("run.succeeded")).length === 2 &&
            logs.some((log) => typesOf(log).includes("run.throttled"))
        })
        const throttled = started[logs.findIndex((log) => typesOf(log).includes("run.throttled"))]!.run.id
        expect((yield* runs.get(throttled)).status).toBe("queued")
      }).pipe(Effect.provide(RunstreamTest.layer({
        tasks: [Quick],
        workers: { ...fastWorkers, queues: ["mail"] },
        queues: { mail: { rateLimit: { limit: 2, period: "1 hour" } } }
      })))
    }))

  it.live("a task's own limits win over its queue's", () =>
    Effect.gen(function*() {
      const Own = Task.make("test.queue.own", { input: Input, output: Schema.Int, concurrency: { limit: 3 }, run: ({ n }) => Effect.succeed(n) })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        yield* runs.startMany([0, 1].map((n) => ({ task: Own.name, input: { n }, options: { queue: "mail" } })))
        expect(yield* limitRows).toEqual([{ scope: "task:test.queue.own", key: "", running: 0, waiting: 2 }])
      }).pipe(Effect.provide(RunstreamTest.layer({
        tasks: [Own],
        workers: false,
        queues: { mail: { concurrency: { limit: 1 } } }
      })))
    }))

  it.live("a worker that does not declare a queue's limits serves the runs waiting under them", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const starter = yield* Layer.buildWithScope(
        programOn({ tasks: [Quick], workers: false, queues: { mail: { concurrency: { limit: 1 } } } }),
        scope
      )
      const ids = yield* Effect.gen(function*() {
        const runs = yield* Runs
        const started = yield* runs.startMany([0, 1, 2].map((n) => ({ task: Quick.name, input: { n }, options: { queue: "mail" } })))
        return started.map((created) => created.run.id)
      }).pipe(Effect.provide(starter))
      // Built after the starts: it finds the queue's scope waiting at its start.
      const worker = yield* Layer.buildWithScope(
        programOn({ tasks: [Quick], workers: { ...fastWorkers, queues: ["mail"] } }),
        scope
      )
      const done = yield* awaitAll(ids).pipe(Effect.provide(worker))
      expect(done.map((run) => run.status)).toEqual(["succeeded", "succeeded", "succeeded"])
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(TestDatabase.layerUrl)))

  it.live("a dead worker's run holds its queue's slot until its lease is reclaimed, and gives it back once", () =>
    Effect.gen(function*() {
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const queue = yield* RunQueue
        const first = yield* runs.start(Quick, { n: 1 }, { queue: "mail" })
        const second = yield* runs.start(Quick, { n: 2 }, { queue: "mail" })
        const claimAs = (workerId: string, leaseMs: number) =>
          queue.claim({ workerId, queues: ["mail"], limit: 10, leaseMs, limitScopes: ["queue:mail"] })
        // A worker claims the first and dies (its lease: 2 seconds); the second waits for the slot.
        expect((yield* claimAs("ghost", 2_000)).map((claim) => claim.runId)).toEqual([first.id])
        expect(yield* claimAs("other", 60_000)).toEqual([])
        expect(yield* limitRows).toEqual([{ scope: "queue:mail", key: "", running: 1, waiting: 1 }])
        // Workers (and the program's reclaim) take over: the first is retried, then the second runs.
        const done = yield* awaitAll([first.id, second.id]).pipe(withWorkers({ ...fastWorkers, queues: ["mail"] }))
        expect(done.map((run) => [run.status, run.attempt])).toEqual([["succeeded", 2], ["succeeded", 1]])
        // The ghost's late end is refused and frees nothing twice.
        const late = yield* queue.recordEnds({ workerId: "ghost" }, [
          { runId: first.id, attempt: 1, outcome: { _tag: "succeeded", output: 1 }, limited: true }
        ])
        expect(late.size).toBe(0)
        expect(yield* limitRows).toEqual([])
      }).pipe(Effect.provide(RunstreamTest.layer({
        tasks: [Quick],
        workers: false,
        reclaimInterval: "200 millis",
        queues: { mail: { concurrency: { limit: 1 } } }
      })))
    }))

  it.live("a bad queue definition stops the program at start-up", () =>
    Effect.gen(function*() {
      const build = (queues: Parameters<typeof RunstreamTest.layer>[0]["queues"]) =>
        Effect.scoped(Layer.build(RunstreamTest.layer({ tasks: [Quick], workers: false, queues }))).pipe(
          Effect.exit,
          Effect.map((exit) => Exit.isFailure(exit) ? String(exit.cause) : "built")
        )
      expect(yield* build({ mail: { concurrency: { limit: 0 } } })).toContain(
        "queue 'mail': concurrency.limit must be an integer from 1"
      )
      expect(yield* build({ "no spaces": { concurrency: { limit: 1 } } })).toContain("queue 'no spaces': a queue name is")
      expect(yield* build({ mail: { rateLimit: { limit: 1, period: "forever" as never } } })).toContain(
        "queue 'mail': rateLimit.period must be"
      )
    }))
})

describe.concurrent("a trailing debounce of a task with a key field", () => {
  it.live("the run takes the last start's key with its input, and the keys' waiting counts follow", () =>
    Effect.gen(function*() {
      const PerTenant = Task.make("test.debounce.tenant", {
        input: Schema.Struct({ tenant: Schema.String, n: Schema.Int }),
        output: Schema.Int,
        concurrency: { limit: 1, key: "tenant" },
        run: ({ n }) => Effect.succeed(n)
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const debounce = { key: "d", delayMs: 3_600_000 } as const
        const first = yield* runs.start(PerTenant, { tenant: "a", n: 1 }, { debounce })
        const folded = yield* runs.start(PerTenant, { tenant: "b", n: 2 }, { debounce })
        expect(folded.id).toBe(first.id)
        expect(folded.input).toEqual({ tenant: "b", n: 2 })
        expect(folded.concurrencyKey).toBe("b")
        expect(yield* limitRows).toEqual([
          { scope: "task:test.debounce.tenant", key: "a", running: 0, waiting: 0 },
          { scope: "task:test.debounce.tenant", key: "b", running: 0, waiting: 1 }
        ])
        const sql = yield* SqlClient.SqlClient
        const [job] = yield* sql<{ key: string }>`SELECT concurrency_key AS key FROM runstream_jobs WHERE run_id = ${first.id}`
        expect(job!.key).toBe("b")
        // Leading keeps the first start's input, and so its key.
        const leading = { key: "l", delayMs: 3_600_000, mode: "leading" } as const
        const kept = yield* runs.start(PerTenant, { tenant: "c", n: 3 }, { debounce: leading })
        expect((yield* runs.start(PerTenant, { tenant: "d", n: 4 }, { debounce: leading })).concurrencyKey).toBe("c")
        expect((yield* runs.get(kept.id)).input).toEqual({ tenant: "c", n: 3 })
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [PerTenant], workers: false })))
    }))
})
