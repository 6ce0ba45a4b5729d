/**
 * Child runs (`ctx.start`, `ctx.await`, `ctx.all`, issue 20): a parent
 * starts children (journaled, `child.started`), waits for them without a
 * worker (`waiting`, `children:<name>`), and is woken once, by the last
 * child's end; a child's failure is a typed `ChildFailed` in the parent;
 * cancelling a parent cancels its tree; a replay does not start children
 * again. Children that must not end yet wait on a gate opened by the test
 * (in memory, outside the database).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, DateTime, Deferred, Effect, Exit, Layer, type MetricState, Option, Schema, Scope } from "effect"
import type { RunId } from "../../src/domain/Ids.ts"
import { childCompletedType, childStartedType, type RunEvent } from "../../src/domain/RunEvent.ts"
import * as Metrics from "../../src/metrics/Metrics.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import { Effects, fastWorkers, jobOf, logOf, patience, programOn, sideEffect, typesOf, waitForEvent } from "./support.ts"
import { whenSettled } from "../metrics/settled.ts"

/** Opened by the test: children that wait on it end only then. */
class Gate extends Context.Tag("test/queue/children/Gate")<Gate, Deferred.Deferred<void>>() {}

/** Doubles its input, once the gate opens; counts its runs. */
const Double = Task.make("test.children.double", {
  input: Schema.Struct({ n: Schema.Int, gated: Schema.Boolean }),
  output: Schema.Struct({ doubled: Schema.Int }),
  run: ({ gated, n }, ctx) =>
    Effect.gen(function*() {
      yield* sideEffect(ctx.runId, "body")
      if (gated) yield* Deferred.await(yield* Gate)
      return { doubled: n * 2 }
    })
})

/** Starts `count` children and awaits them all with one `ctx.all`. */
const FanOut = Task.make("test.children.fan-out", {
  input: Schema.Struct({ count: Schema.Int, gated: Schema.Boolean }),
  output: Schema.Array(Schema.Int),
  retry: { maxAttempts: 1 },
  run: ({ count, gated }, ctx) =>
    Effect.gen(function*() {
      const children = yield* Effect.forEach(
        Array.from({ length: count }, (_, n) => n),
        (n) => ctx.start(Double, { n, gated })
      )
      const outputs = yield* ctx.all(children)
      return outputs.map((output) => output.doubled)
    })
})

/** Fails for good. */
const Fails = Task.make("test.children.fails", {
  input: Schema.Null,
  output: Schema.Null,
  run: () => Effect.fail(new Task.PermanentError({ message: "no way" }))
})

/** Awaits a child that fails, and handles its failure. */
const Handles = Task.make("test.children.handles", {
  input: Schema.Null,
  output: Schema.Struct({ tag: Schema.String, childId: Schema.String, status: Schema.String, error: Schema.String }),
  retry: { maxAttempts: 1 },
  run: (_, ctx) =>
    Effect.gen(function*() {
      const child = yield* ctx.start(Fails, null, { name: "doomed" })
      return yield* ctx.await(child).pipe(
        Effect.as({ tag: "none", childId: "", status: "", error: "" }),
        Effect.catchTag("ChildFailed", (failed) =>
          Effect.succeed({
            tag: failed._tag,
            childId: failed.childId,
            status: failed.status,
            error: `${failed.error.tag}: ${failed.error.message}`
          }))
      )
    })
})

/** Sleeps for an hour: a child that waits. */
const Sleeper = Task.make("test.children.sleeper", {
  input: Schema.Null,
  output: Schema.Null,
  run: (_, ctx) => Effect.as(ctx.sleep("long", "1 hour"), null)
})

/** Runs until the gate opens: a child that holds a worker. */
const Blocked = Task.make("test.children.blocked", {
  input: Schema.Null,
  output: Schema.Null,
  run: () => Effect.as(Effect.flatMap(Gate, Deferred.await), null)
})

/** A child with a child of its own (a sleeper), which it awaits. */
const Middle = Task.make("test.children.middle", {
  input: Schema.Null,
  output: Schema.Null,
  run: (_, ctx) => Effect.flatMap(ctx.start(Sleeper, null, { name: "grandchild" }), ctx.await)
})

/** A tree to cancel: a sleeping child, a running one, and one with a sleeping child of its own. */
const Tree = Task.make("test.children.tree", {
  input: Schema.Null,
  output: Schema.Null,
  run: (_, ctx) =>
    Effect.gen(function*() {
      const children = [
        yield* ctx.start(Sleeper, null, { name: "sleeper" }),
        yield* ctx.start(Blocked, null, { name: "blocked" }),
        yield* ctx.start(Middle, null, { name: "middle" })
      ]
      yield* ctx.all(children)
      return null
    })
})

/** Awaits a sleeping child; its cancel is a `ChildFailed` the body turns into its output. */
const AwaitsSleeper = Task.make("test.children.awaits-sleeper", {
  input: Schema.Null,
  output: Schema.String,
  run: (_, ctx) =>
    Effect.flatMap(ctx.start(Sleeper, null, { name: "nap" }), (child) =>
      ctx.await(child).pipe(
        Effect.as("slept"),
        Effect.catchTag("ChildFailed", (failed) => Effect.succeed(`${failed.status}: ${failed.error.tag}`))
      ))
})

/** `runstream_runs_finished_total{task, outcome="cancelled"}` in the program's metrics. */
const finishedCancelled = (task: string) =>
  Effect.map(Effect.flatMap(Metrics.Metrics, (metrics) => metrics.snapshot), (pairs) => {
    const pair = pairs.find((p) =>
      p.metricKey.name === Metrics.names.runsFinished &&
      p.metricKey.tags.some((tag) => tag.key === "task" && tag.value === task) &&
      p.metricKey.tags.some((tag) => tag.key === "outcome" && tag.value === "cancelled")
    )
    return pair === undefined ? 0 : (pair.metricState as MetricState.MetricState.Counter<number>).count
  })

/** A task no program registers. */
const Unregistered = Task.make("test.children.unregistered", {
  input: Schema.Null,
  output: Schema.Null,
  run: () => Effect.succeed(null)
})

/** Bad starts: each refused with a typed error, and nothing started or journaled. */
const BadStarts = Task.make("test.children.bad-starts", {
  input: Schema.Null,
  output: Schema.Array(Schema.String),
  run: (_, ctx) =>
    Effect.all([
      Effect.flip(ctx.start(Double, { n: 1, gated: false }, { name: "x".repeat(101) })),
      Effect.flip(ctx.start(Double, { n: 1, gated: false }, { name: "bad-priority", priority: 1.5 })),
      Effect.flip(ctx.start(Double, { n: 1.5, gated: false }, { name: "bad-input" })),
      Effect.flip(ctx.start(Unregistered, null, { name: "unknown" })),
      // Over the bound of one wait: refused before anything is read.
      Effect.flip(ctx.all(Array.from({ length: 1001 }, (_, i) => ({
        id: `00000000-0000-7000-8000-${String(i).padStart(12, "0")}` as RunId,
        name: `c${i}`,
        task: Double.name,
        output: Schema.Null
      }))))
    ]).pipe(Effect.map((errors) => errors.map((error) => error._tag)))
})

/** Starts three children, then fails its first attempt: the retry replays the starts. */
const Flaky = Task.make("test.children.flaky", {
  input: Schema.Null,
  output: Schema.Array(Schema.Int),
  retry: { maxAttempts: 2, initialDelay: "10 millis", factor: 1 },
  run: (_, ctx) =>
    Effect.gen(function*() {
      const children = yield* Effect.forEach([1, 2, 3], (n) => ctx.start(Double, { n, gated: false }))
      if (ctx.attempt === 1) return yield* Effect.fail(new Flake())
      const outputs = yield* ctx.all(children)
      return outputs.map((output) => output.doubled)
    })
})

class Flake extends Schema.TaggedError<Flake>()("Flake", {}) {}

const tasks = [Double, FanOut, Fails, Handles, Sleeper, Blocked, Middle, Tree, Flaky, AwaitsSleeper, BadStarts] as const

const program = (workers: Parameters<typeof RunstreamTest.layer>[0]["workers"] = fastWorkers) =>
  RunstreamTest.layer({ tasks, workers, reclaimInterval: "1 minute" }).pipe(
    Layer.provideMerge(Layer.sync(Effects, () => new Map())),
    Layer.provideMerge(Layer.effect(Gate, Deferred.make<void>()))
  )

const ofType = (log: ReadonlyArray<RunEvent>, type: string) => log.filter((event) => event.type === type)

/** The child runs of a run, by its index, as stored. */
const childrenOf = (runId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ id: RunId; status: string }>`SELECT id, status FROM runstream_runs WHERE parent_id = ${runId} ORDER BY id`)

describe("child runs", () => {
  it.live("a parent starts 100 children and awaits them all: outputs in order, one wait, one wake-up", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const effects = yield* Effects
      // Before its children in the queue: woken early, it would be claimed at once, not after them.
      const parent = yield* runs.start(FanOut, { count: 100, gated: true }, { priority: 10 })
      yield* waitForEvent(parent.id, "run.waiting")
      // Waiting: no worker, its job due at no time, waiting on its unfinished children.
      const waiting = yield* runs.get(parent.id)
      expect(waiting.status).toBe("waiting")
      expect(Option.getOrThrow(yield* jobOf(parent.id)).locked_by).toBeNull()
      // GET lists its children: all 100 (the bound), no more.
      expect(waiting.children).toHaveLength(100)
      expect(waiting.moreChildren).toBe(false)
      expect(new Set(waiting.children!.map((child) => child.task))).toEqual(new Set([Double.name]))
      const child = yield* runs.get(waiting.children![0]!.id)
      expect(child.parentId).toBe(parent.id)
      expect(child.children).toBeUndefined()

      yield* Deferred.succeed(yield* Gate, undefined)
      const done = yield* RunstreamTest.waitForRunCompletion(parent.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.output).toEqual(Array.from({ length: 100 }, (_, n) => n * 2))

      const log = yield* logOf(parent.id)
      expect(log.map((event) => event.seq)).toEqual(log.map((_, i) => i + 1))
      // One wait and one wake-up for the 100, not one per child.
      expect(ofType(log, "run.waiting")).toHaveLength(1)
      expect(ofType(log, "run.started")).toHaveLength(2)
      expect(ofType(log, "run.waiting")[0]!.data).toMatchObject({ until: null, waitingFor: "children:#0" })
      expect(ofType(log, childStartedType)).toHaveLength(100)
      expect(ofType(log, childStartedType)[7]!.data).toMatchObject({ name: "#7", position: 7, task: Double.name })
      expect(ofType(log, childCompletedType)).toHaveLength(100)
      // Each child ran once, and is no one else's.
      const stored = yield* childrenOf(parent.id)
      expect(stored).toHaveLength(100)
      expect(stored.every((row) => effects.get(`${row.id}/body`) === 1)).toBe(true)
      expect(yield* jobOf(parent.id)).toEqual(Option.none())
    }).pipe(Effect.provide(program({ ...fastWorkers, concurrency: 8 }))), 120_000)

  it.live("quick children ending while their parents suspend: every parent is woken (20 parents of 5)", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const parents = yield* Effect.forEach(
        Array.from({ length: 20 }),
        () => runs.start(FanOut, { count: 5, gated: false }),
        { concurrency: 4 }
      )
      const done = yield* Effect.forEach(parents, (run) => RunstreamTest.waitForRunCompletion(run.id, patience), {
        concurrency: 20
      })
      expect(done.map((run) => run.output)).toEqual(parents.map(() => [0, 2, 4, 6, 8]))
      for (const run of parents) {
        // At most one wake-up each (none when the children had all ended before the wait).
        expect(ofType(yield* logOf(run.id), "run.started").length).toBeLessThanOrEqual(2)
      }
    }).pipe(Effect.provide(program({ ...fastWorkers, concurrency: 8 }))), 120_000)

  it.live("three programs on one database: parents and children ending in different transactions at once, every parent woken", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const services = Layer.mergeAll(Layer.sync(Effects, () => new Map()), Layer.effect(Gate, Deferred.make<void>()))
      const programs = yield* Effect.forEach([1, 2, 3], () =>
        Layer.buildWithScope(
          programOn({ tasks, workers: { ...fastWorkers, concurrency: 6 } }).pipe(Layer.provideMerge(services)),
          scope
        ))
      // Started from all three: parents and children land on every program's workers (and its group commit).
      const parents = yield* Effect.forEach(Array.from({ length: 30 }, (_, i) => i), (i) =>
        Effect.flatMap(Runs, (runs) => runs.start(FanOut, { count: 4, gated: false })).pipe(
          Effect.provide(programs[i % 3]!)
        ), { concurrency: 6 })
      const done = yield* Effect.forEach(parents, (run) =>
        RunstreamTest.waitForRunCompletion(run.id, patience).pipe(Effect.provide(programs[0]!)), { concurrency: 30 })
      expect(done.map((run) => run.output)).toEqual(parents.map(() => [0, 2, 4, 6]))
      for (const run of parents) {
        expect(ofType(yield* logOf(run.id).pipe(Effect.provide(programs[0]!)), "run.started").length).toBeLessThanOrEqual(2)
      }
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(TestDatabase.layerUrl)), 120_000)

  it.live("a child's failure is a typed ChildFailed in the parent, which handles it", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const parent = yield* runs.start(Handles, null)
      const done = yield* RunstreamTest.waitForRunCompletion(parent.id, patience)
      expect(done.status).toBe("succeeded")
      const [child] = yield* childrenOf(parent.id)
      expect(child!.status).toBe("failed")
      expect(done.output).toEqual({
        tag: "ChildFailed",
        childId: child!.id,
        status: "failed",
        error: "PermanentError: no way"
      })
      const completed = ofType(yield* logOf(parent.id), childCompletedType)
      expect(completed.map((event) => event.data)).toEqual([{
        name: "doomed",
        childId: child!.id,
        error: { tag: "PermanentError", message: "no way", status: "failed" }
      }])
    }).pipe(Effect.provide(program())))

  it.live("cancelling a parent cancels its unfinished children, and theirs", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const parent = yield* runs.start(Tree, null)
      yield* waitForEvent(parent.id, "run.waiting")
      const children = yield* childrenOf(parent.id)
      expect(children).toHaveLength(3)
      // The list by parent: its children, newest first, not its grandchildren.
      const listed = yield* runs.list({ parentId: parent.id })
      expect(listed.runs.map((run) => run.id)).toEqual([...children].reverse().map((child) => child.id))
      const middle = (yield* runs.get(parent.id)).children!.find((child) => child.task === Middle.name)!
      const blocked = (yield* runs.get(parent.id)).children!.find((child) => child.task === Blocked.name)!
      yield* waitForEvent(middle.id, "run.waiting")
      yield* waitForEvent(blocked.id, "run.started")
      const [grandchild] = yield* childrenOf(middle.id)
      yield* waitForEvent(grandchild!.id, "run.waiting")

      const cancelled = yield* runs.cancel(parent.id)
      expect(cancelled.status).toBe("cancelled")
      // The waiting ones at once, in the cancel's transaction; the running one by its worker.
      for (const id of [...children.map((child) => child.id), grandchild!.id]) {
        expect((yield* RunstreamTest.waitForRunCompletion(id, patience)).status).toBe("cancelled")
      }
      expect(typesOf(yield* logOf(grandchild!.id))).toEqual([
        "run.queued",
        "run.started",
        "sleep.started",
        "run.waiting",
        "run.cancelled"
      ])
      // Each counted once as finished, cancelled: those waiting by the cancel, the running one by
      // its worker (once its end is written: just after the commit its completion was seen by).
      const counts = Effect.all([Tree, Middle, Sleeper, Blocked].map((task) => finishedCancelled(task.name)))
      expect(yield* whenSettled(counts, ([, , , blocked]) => blocked >= 1)).toEqual([1, 1, 2, 1])
    }).pipe(Effect.provide(program({ ...fastWorkers, concurrency: 8 }))))

  it.live("cancelling a child its parent waits for wakes the parent, which sees it cancelled", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const parent = yield* runs.start(AwaitsSleeper, null)
      yield* waitForEvent(parent.id, "run.waiting")
      const [child] = yield* childrenOf(parent.id)
      yield* waitForEvent(child!.id, "run.waiting")
      expect((yield* runs.cancel(child!.id)).status).toBe("cancelled")
      const done = yield* RunstreamTest.waitForRunCompletion(parent.id, patience)
      expect(done.output).toBe("cancelled: Cancelled")
      expect(ofType(yield* logOf(parent.id), "run.started")).toHaveLength(2)
    }).pipe(Effect.provide(program())))

  it.live("a parent retried after starting children starts none again: the replay gets the same children", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const effects = yield* Effects
      const parent = yield* runs.start(Flaky, null)
      const done = yield* RunstreamTest.waitForRunCompletion(parent.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(2)
      expect(done.output).toEqual([2, 4, 6])
      const stored = yield* childrenOf(parent.id)
      expect(stored).toHaveLength(3)
      expect(stored.map((row) => effects.get(`${row.id}/body`))).toEqual([1, 1, 1])
      const log = yield* logOf(parent.id)
      expect(ofType(log, childStartedType)).toHaveLength(3)
      expect(ofType(log, "run.retrying")).toHaveLength(1)
    }).pipe(Effect.provide(program())))

  it.live("a child started by an attempt that died before journaling it is the child the replay gets (its idempotency key)", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const effects = yield* Effects
      // The parent starts soon; meanwhile its first child is started as a dead attempt would have left it.
      const parent = yield* runs.start(FanOut, { count: 1, gated: false }, { runAt: DateTime.unsafeMake(Date.now() + 1500) })
      const [orphan] = yield* runs.startMany([{
        task: Double.name,
        input: { n: 0, gated: false },
        options: { idempotencyKey: `${parent.id}/child/#0` },
        parentId: parent.id
      }])
      const done = yield* RunstreamTest.waitForRunCompletion(parent.id, patience)
      expect(done.output).toEqual([0])
      expect(ofType(yield* logOf(parent.id), childStartedType).map((event) => event.data)).toEqual([
        { name: "#0", position: 0, childId: orphan!.run.id, task: Double.name }
      ])
      expect((yield* childrenOf(parent.id)).map((row) => row.id)).toEqual([orphan!.run.id])
      expect(effects.get(`${orphan!.run.id}/body`)).toBe(1)
    }).pipe(Effect.provide(program())))

  it.live("bad starts fail with typed errors the body can handle; nothing is started or journaled", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const parent = yield* runs.start(BadStarts, null)
      const done = yield* RunstreamTest.waitForRunCompletion(parent.id, patience)
      expect(done.output).toEqual(["InvalidInput", "InvalidInput", "InvalidInput", "UnknownTask", "InvalidInput"])
      expect(yield* childrenOf(parent.id)).toHaveLength(0)
      expect(typesOf(yield* logOf(parent.id))).toEqual(["run.queued", "run.started", "run.succeeded"])
    }).pipe(Effect.provide(program())))

  it.live("GET lists at most 100 children and says there are more", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const parent = yield* runs.start(FanOut, { count: 101, gated: false })
      yield* RunstreamTest.waitForRunCompletion(parent.id, patience)
      const got = yield* runs.get(parent.id)
      expect(got.children).toHaveLength(100)
      expect(got.moreChildren).toBe(true)
      // The oldest first: the children in their start's order.
      const stored = yield* childrenOf(parent.id)
      expect(got.children!.map((child) => child.id)).toEqual(stored.slice(0, 100).map((row) => row.id))
      // A list leaves them out.
      const listed = yield* runs.list({ task: FanOut.name })
      expect(listed.runs[0]!.children).toBeUndefined()
    }).pipe(Effect.provide(program({ ...fastWorkers, concurrency: 8 }))), 120_000)
})
