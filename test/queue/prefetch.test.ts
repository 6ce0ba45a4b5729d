import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Queue, Schema } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import type { RunId } from "../../src/domain/Ids.ts"
import * as Prefetch from "../../src/workers/Prefetch.ts"
import { RunQueue } from "../../src/queue/RunQueue.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import * as Workers from "../../src/Workers.ts"
import { fastWorkers, patience, programOn } from "./support.ts"

/** Starts runs from a program without workers, so that only claims take them. */
const queueRuns = <T extends Task.Any>(task: T, inputs: ReadonlyArray<Task.InputOf<T>>) =>
  Effect.flatMap(Runs, (runs) => Effect.forEach(inputs, (input) => runs.start(task, input))).pipe(
    Effect.provide(programOn({ tasks: [task], workers: false }))
  )

describe.concurrent("adaptive prefetch", () => {
  it.live("a pool whose runs are slow buffers none of the waiting runs: another worker starts them", () =>
    Effect.gen(function*() {
      const started = yield* Queue.unbounded<RunId>()
      const release = yield* Deferred.make<void>()
      const Blocking = Task.make("test.blocking", {
        input: Schema.Number,
        output: Schema.Number,
        run: (n, ctx) => Effect.zipRight(Queue.offer(started, ctx.runId), Effect.as(Deferred.await(release), n))
      })
      const queued = yield* queueRuns(Blocking, [1, 2, 3, 4, 5, 6, 7, 8])
      // Two pools of two runners, each with the default prefetch (up to 500).
      const pool = programOn({ tasks: [Blocking], workers: { ...fastWorkers, concurrency: 2 } })
      const drain = Effect.forEach(queued, (run) => RunstreamTest.waitForRunCompletion(run.id, patience)).pipe(
        Effect.provide(pool)
      )
      const a = yield* Effect.fork(drain)
      const b = yield* Effect.fork(drain)

      // A fixed buffer would let the first pool to claim take all eight, and
      // the second would find nothing: four bodies would never start together.
      yield* Queue.takeN(started, 4)
      const holders = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ locked_by: string | null; runs: number }>`
          SELECT locked_by, count(*)::integer AS runs FROM runstream_jobs GROUP BY locked_by ORDER BY locked_by`
      }).pipe(Effect.provide(programOn({ tasks: [Blocking], workers: false })))
      expect(holders.map((row) => row.runs)).toEqual([2, 2, 4])
      expect(holders[2]!.locked_by).toBeNull()

      yield* Deferred.succeed(release, undefined)
      const [doneA, doneB] = [yield* Fiber.join(a), yield* Fiber.join(b)]
      expect([...doneA, ...doneB].every((run) => run.status === "succeeded")).toBe(true)
    }).pipe(Effect.provide(TestDatabase.layerUrl)))

  it.live("a pool whose runs end quickly claims beyond its runners, in batches", () =>
    Effect.gen(function*() {
      const queued = yield* queueRuns(Echo, Array.from({ length: 300 }, (_, i) => `r${i}`))
      yield* Effect.forEach(queued, (run) => RunstreamTest.waitForRunCompletion(run.id, patience)).pipe(
        Effect.provide(programOn({ tasks: [Echo], workers: { ...fastWorkers, concurrency: 2 } }))
      )
      // A claim stamps its runs with one started_at: the largest claim, and the claims in all.
      const [claims] = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ largest: number; claims: number }>`
          SELECT max(n)::integer AS largest, count(*)::integer AS claims
          FROM (SELECT count(*) AS n FROM runstream_runs GROUP BY started_at) c`
      }).pipe(Effect.provide(programOn({ tasks: [Echo], workers: false })))
      // Two runners alone would take two runs a claim: 150 claims.
      expect(claims!.largest).toBeGreaterThan(2)
      expect(claims!.claims).toBeLessThan(100)
    }).pipe(Effect.provide(TestDatabase.layerUrl)))
})

describe.concurrent("the pool's bound", () => {
  it.live("a pool runs at most `concurrency` bodies at once, however many runs its buffer holds", () =>
    Effect.gen(function*() {
      const started = yield* Queue.unbounded<RunId>()
      const gate = yield* Queue.unbounded<void>()
      let running = 0
      let most = 0
      const Gated = Task.make("test.gated", {
        input: Schema.Number,
        output: Schema.Number,
        run: (n, ctx) =>
          Effect.gen(function*() {
            running++
            most = Math.max(most, running)
            yield* Queue.offer(started, ctx.runId)
            yield* Queue.take(gate)
            running--
            return n
          })
      })
      const queued = yield* queueRuns(Gated, Array.from({ length: 12 }, (_, i) => i))
      // A fixed buffer: the first claim takes all twelve.
      const pool = programOn({ tasks: [Gated], workers: { ...fastWorkers, concurrency: 3, prefetchWindow: Duration.infinity } })
      const drain = yield* Effect.fork(
        Effect.forEach(queued, (run) => RunstreamTest.waitForRunCompletion(run.id, patience)).pipe(Effect.provide(pool))
      )
      yield* Queue.takeN(started, 3)
      const [held] = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_jobs WHERE locked_by IS NOT NULL`
      }).pipe(Effect.provide(programOn({ tasks: [Gated], workers: false })))
      // The pool holds all twelve; three bodies run, the others wait in its buffer.
      expect(held!.n).toBe(12)
      expect(yield* Queue.size(started)).toBe(0)
      yield* Queue.offerAll(gate, Array.from({ length: 12 }, () => undefined))
      const done = yield* Fiber.join(drain)
      expect(done.every((run) => run.status === "succeeded")).toBe(true)
      expect(most).toBe(3)
    }).pipe(Effect.provide(TestDatabase.layerUrl)))
})

describe.concurrent("the pool's dispatch", () => {
  it.live("runs whose bodies end at once start one after another, not one inside another", () =>
    Effect.gen(function*() {
      // A body that ends without waiting ends inside the dispatch that
      // started it, and its freed place dispatches the next run: nested, each
      // run would start deeper in the stack than the one before, and a large
      // buffer would overflow it.
      const depths: Array<number> = []
      const stackDepth = () => {
        const limit = Error.stackTraceLimit
        Error.stackTraceLimit = Infinity
        const depth = new Error().stack!.split("\n").length
        Error.stackTraceLimit = limit
        return depth
      }
      const Instant = Task.make("test.instant", {
        input: Schema.Number,
        output: Schema.Number,
        run: (n) => Effect.sync(() => depths.push(stackDepth())).pipe(Effect.as(n))
      })
      const queued = yield* queueRuns(Instant, Array.from({ length: 200 }, (_, i) => i))
      // One place, and a fixed buffer: the first claim takes all 200.
      const pool = programOn({ tasks: [Instant], workers: { ...fastWorkers, concurrency: 1, prefetchWindow: Duration.infinity } })
      const done = yield* Effect.forEach(queued, (run) => RunstreamTest.waitForRunCompletion(run.id, patience)).pipe(
        Effect.provide(pool)
      )
      expect(done.every((run) => run.status === "succeeded")).toBe(true)
      expect(depths).toHaveLength(200)
      // Nested, the last body would run about ten frames deeper per run before it.
      expect(Math.max(...depths) - Math.min(...depths)).toBeLessThan(50)
    }).pipe(Effect.provide(TestDatabase.layerUrl)))
})

describe.concurrent("the pool's places", () => {
  it("ends the writer's queue holds take no place; ends beyond it do", () => {
    const pool = { inFlight: 600, reserved: 2, writerCapacity: 2000 }
    // 100 buffered or executing, 500 being recorded: those take none.
    expect(Workers.placesTaken({ ...pool, recording: 500 })).toBe(102)
    // Commits behind: 2,500 being recorded, 500 more than the writer holds.
    expect(Workers.placesTaken({ ...pool, inFlight: 2600, recording: 2500 })).toBe(602)
  })

  it.live("a pool whose ends cannot be written for a while runs on, then writes them all", () =>
    Effect.gen(function*() {
      const runs = 3000
      let bodies = 0
      // Beyond the writer's queue (2,000, and the batch it is writing): the last ends wait in their fibers.
      const writerFull = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const Counted = Task.make("test.counted", {
        input: Schema.Number,
        output: Schema.Number,
        run: (n) =>
          Effect.suspend(() => ++bodies === 2020 ? Deferred.succeed(writerFull, undefined) : Effect.void).pipe(Effect.as(n))
      })
      const queued = yield* Effect.flatMap(Runs, (r) =>
        r.startMany(Array.from({ length: runs }, (_, i) => ({ task: Counted.name, input: i })))).pipe(
          Effect.provide(programOn({ tasks: [Counted], workers: false }))
        )
      // The pool's ends wait at the gate before they are written.
      const gatedQueue = Layer.effect(
        RunQueue,
        Effect.map(RunQueue, (queue) => ({
          ...queue,
          recordEnds: (holder, items) => Effect.zipRight(Deferred.await(gate), queue.recordEnds(holder, items))
        }))
      )
      const program = Workers.layer({ ...fastWorkers, concurrency: 10, prefetch: 100, prefetchWindow: Duration.infinity }).pipe(
        Layer.provide(gatedQueue),
        Layer.provideMerge(programOn({ tasks: [Counted], workers: false }))
      )
      const done = yield* Effect.gen(function*() {
        yield* Deferred.await(writerFull)
        yield* Deferred.succeed(gate, undefined)
        return yield* Effect.forEach(queued, ({ run }) => RunstreamTest.waitForRunCompletion(run.id, patience), { concurrency: 10 })
      }).pipe(Effect.provide(program))
      expect(done.filter((run) => run.status === "succeeded")).toHaveLength(runs)
      expect(bodies).toBe(runs)
    }).pipe(Effect.provide(TestDatabase.layerUrl)))
})

describe("the prefetch estimate", () => {
  const ends = (prefetch: Prefetch.Prefetch, n: number) => {
    for (let i = 0; i < n; i++) prefetch.ended()
  }

  it("is the runs the pool ends in the window, up to the maximum", () => {
    const prefetch = Prefetch.make({ max: 500, windowMs: 100 })
    expect(prefetch.size(0)).toBe(0)
    ends(prefetch, 30)
    expect(prefetch.size(10)).toBe(300)
    ends(prefetch, 80)
    expect(prefetch.size(20)).toBe(500)
    ends(prefetch, 1)
    // Less than the shortest span: the last estimate.
    expect(prefetch.size(25)).toBe(500)
    expect(prefetch.size(30)).toBe(10)
  })

  it("a span in which runners starved while the queue had more may raise it, never lower it", () => {
    const prefetch = Prefetch.make({ max: 1000, windowMs: 100 })
    prefetch.size(0)
    ends(prefetch, 30)
    expect(prefetch.size(10)).toBe(300)
    // The runners waited for a late claim: few ends, which say nothing of the runs.
    prefetch.starved()
    ends(prefetch, 1)
    expect(prefetch.size(20)).toBe(300)
    expect(prefetch.current()).toBe(300)
    prefetch.starved()
    ends(prefetch, 80)
    expect(prefetch.size(30)).toBe(800)
    // Not starved: the runs did slow down.
    ends(prefetch, 2)
    expect(prefetch.size(40)).toBe(20)
  })
})
