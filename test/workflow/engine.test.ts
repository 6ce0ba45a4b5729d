/**
 * `@effect/workflow` on Runstream (`runstream/workflow`, issue 20): workflows
 * written with Effect's `Workflow`, `Activity`, `DurableClock` and
 * `DurableDeferred` run as Runstream runs. Side effects are counted in
 * memory, outside the database.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Activity from "@effect/workflow/Activity"
import * as DurableClock from "@effect/workflow/DurableClock"
import * as DurableDeferred from "@effect/workflow/DurableDeferred"
import * as Workflow from "@effect/workflow/Workflow"
import { Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Schema, Stream, TestClock } from "effect"
import type { Run } from "../../src/domain/Run.ts"
import type { RunEvent } from "../../src/domain/RunEvent.ts"
import { Echo } from "../../src/demo/tasks.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { RunstreamWorkflow } from "../../src/workflow.ts"
import { Effects, fastWorkers, jobOf, logOf, patience, slowTimers, typesOf, waitForEvent } from "../queue/support.ts"

/** Counts one more run of `key`'s side effect; returns the count. */
const count = (key: string) =>
  Effect.flatMap(Effects, (effects) =>
    Effect.sync(() => {
      const n = (effects.get(key) ?? 0) + 1
      effects.set(key, n)
      return n
    }))

const ran = (key: string) => Effect.map(Effects, (effects) => effects.get(key) ?? 0)

/** Charge, a durable hour, ship. */
const Order = Workflow.make({
  name: "test.wf.order",
  payload: { id: Schema.String },
  success: Schema.Struct({ charged: Schema.Number, shipment: Schema.String }),
  idempotencyKey: ({ id }) => id
})

const OrderLayer = Order.toLayer(({ id }) =>
  Effect.gen(function*() {
    const charged = yield* Activity.make({
      name: "charge",
      success: Schema.Number,
      execute: Effect.as(count(`${id}/charge`), 42)
    })
    yield* count(`${id}/outside`)
    yield* DurableClock.sleep({ name: "cool-off", duration: "1 hour" })
    const shipment = yield* Activity.make({
      name: "ship",
      success: Schema.String,
      execute: Effect.map(count(`${id}/ship`), (n) => `parcel ${n}`)
    })
    return { charged, shipment }
  })
)

/** An activity, then a crash outside any activity on the first attempt (a defect the workflow does not capture). */
const Crashy = Workflow.make({
  name: "test.wf.crashy",
  payload: { id: Schema.String },
  success: Schema.Number,
  idempotencyKey: ({ id }) => id
}).annotate(Workflow.CaptureDefects, false)

const CrashyLayer = Crashy.toLayer(({ id }) =>
  Effect.gen(function*() {
    const first = yield* Activity.make({ name: "first", success: Schema.Number, execute: count(`${id}/first`) })
    if ((yield* count(`${id}/body`)) === 1) return yield* Effect.die("crash after the first activity")
    const second = yield* Activity.make({ name: "second", success: Schema.Number, execute: count(`${id}/second`) })
    return first * 10 + second
  })
)

const Approved = DurableDeferred.make("approved", { success: Schema.Struct({ by: Schema.String }) })
/** A name no signal can carry as it is. */
const Stamp = DurableDeferred.make("stamp/of approval", { success: Schema.Number })

/** Prepares, waits for `approved` and `stamp/of approval` (sent from outside), finishes. */
const Approval = Workflow.make({
  name: "test.wf.approval",
  payload: { id: Schema.String },
  success: Schema.String,
  idempotencyKey: ({ id }) => id
})

const ApprovalLayer = Approval.toLayer(({ id }) =>
  Effect.gen(function*() {
    yield* Activity.make({ name: "prepare", execute: Effect.asVoid(count(`${id}/prepare`)) })
    const { by } = yield* DurableDeferred.await(Approved)
    const stamp = yield* DurableDeferred.await(Stamp)
    return yield* Activity.make({
      name: "finish",
      success: Schema.String,
      execute: Effect.as(count(`${id}/finish`), `approved by ${by}, stamp ${stamp}`)
    })
  })
)

/** A gate C opens: A ends after C on the first attempt (and on a replay, neither runs). */
class Gate extends Context.Tag("test/workflow/Gate")<Gate, Deferred.Deferred<void>>() {}

/**
 * Two branches at once, A then B, and C then D, where C ends before A: the
 * journal holds D's call before B's. A crash after them makes a replay, in
 * which A and C come back from the journal at once, and B is called first.
 */
const Branches = Workflow.make({
  name: "test.wf.branches",
  payload: { id: Schema.String },
  success: Schema.String,
  idempotencyKey: ({ id }) => id
}).annotate(Workflow.CaptureDefects, false)

const BranchesLayer = Branches.toLayer(({ id }) =>
  Effect.gen(function*() {
    const gate = yield* Gate
    const activity = (name: string, execute: Effect.Effect<void>) =>
      Activity.make({ name, success: Schema.String, execute: Effect.as(Effect.zipRight(count(`${id}/${name}`), execute), name) })
    const [[a, b], [c, d]] = yield* Effect.all([
      Effect.all([activity("A", Deferred.await(gate)), activity("B", Effect.void)]),
      Effect.all([activity("C", Deferred.done(gate, Exit.void)), activity("D", Effect.void)])
    ], { concurrency: "unbounded" })
    if ((yield* count(`${id}/body`)) === 1) return yield* Effect.die("crash after the branches")
    return `${a}${b}${c}${d}`
  })
)

/** Reserves (compensated by a release), then pays, which is refused: the release runs, once, journaled. */
const Saga = Workflow.make({
  name: "test.wf.saga",
  payload: { id: Schema.String },
  success: Schema.String,
  error: Schema.String,
  idempotencyKey: ({ id }) => id
})

const SagaLayer = Saga.toLayer(({ id }) =>
  Effect.gen(function*() {
    yield* Activity.make({ name: "reserve", execute: Effect.asVoid(count(`${id}/reserve`)) }).pipe(
      Saga.withCompensation(() => Activity.make({ name: "release", execute: Effect.asVoid(count(`${id}/release`)) }))
    )
    return yield* Activity.make({
      name: "pay",
      success: Schema.String,
      error: Schema.String,
      execute: Effect.zipRight(count(`${id}/pay`), Effect.fail("card declined"))
    })
  })
)

/** Reserves (compensated by a release), then hangs in an activity: cancelled there, it runs no compensation. */
const Hang = Workflow.make({
  name: "test.wf.hang",
  payload: { id: Schema.String },
  idempotencyKey: ({ id }) => id
})

const HangLayer = Hang.toLayer(({ id }) =>
  Effect.gen(function*() {
    yield* Activity.make({ name: "reserve", execute: Effect.asVoid(count(`${id}/reserve`)) }).pipe(
      Hang.withCompensation(() => Activity.make({ name: "release", execute: Effect.asVoid(count(`${id}/release`)) }))
    )
    yield* Activity.make({ name: "hang", execute: Effect.zipRight(count(`${id}/hang`), Effect.never) })
  })
)

/** Suspends on its first failure (`SuspendOnFailure`): Runstream retries the attempt, and the second one succeeds. */
const Suspends = Workflow.make({
  name: "test.wf.suspends",
  payload: { id: Schema.String },
  success: Schema.String,
  idempotencyKey: ({ id }) => id
}).annotate(Workflow.SuspendOnFailure, true)

const SuspendsLayer = Suspends.toLayer(({ id }) =>
  Effect.flatMap(count(`${id}/body`), (n) => n === 1 ? Effect.die("not yet") : Effect.succeed(`ok after ${n}`))
)

/** One activity called twice, one clock slept twice: as `@effect/workflow` keys them, by name, the second gets the first's result. */
const Twice = Workflow.make({
  name: "test.wf.twice",
  payload: { id: Schema.String },
  success: Schema.Number,
  idempotencyKey: ({ id }) => id
})

const TwiceLayer = Twice.toLayer(({ id }) =>
  Effect.gen(function*() {
    const once = Activity.make({ name: "once", success: Schema.Number, execute: count(`${id}/once`) })
    const first = yield* once
    const second = yield* once
    // Durable though short (no in-memory threshold): the run waits 10 ms.
    const nap = { name: "nap", duration: "10 millis", inMemoryThreshold: Duration.zero } as const
    yield* DurableClock.sleep(nap)
    yield* DurableClock.sleep(nap)
    return first + second
  })
)

class Refused extends Schema.TaggedError<Refused>()("Refused", { reason: Schema.String, limit: Schema.Number }) {}

/** An activity that fails with the workflow's typed error. */
const Refuse = Workflow.make({
  name: "test.wf.refuse",
  payload: { id: Schema.String },
  success: Schema.String,
  error: Refused,
  idempotencyKey: ({ id }) => id
})

const RefuseLayer = Refuse.toLayer(({ id }) =>
  Activity.make({
    name: "check",
    success: Schema.String,
    error: Refused,
    execute: Effect.zipRight(count(`${id}/check`), Effect.fail(new Refused({ reason: "over the limit", limit: 100 })))
  })
)

/** Executes another workflow from inside: Approval's (which waits), or Refuse's (which fails). */
const Parent = Workflow.make({
  name: "test.wf.parent",
  payload: { id: Schema.String, fail: Schema.Boolean },
  success: Schema.String,
  error: Refused,
  idempotencyKey: ({ id }) => id
})

const ParentLayer = Parent.toLayer(({ fail, id }) =>
  Effect.map(fail ? Refuse.execute({ id: `${id}-child` }) : Approval.execute({ id: `${id}-child` }), (said) => `child said: ${said}`)
)

/** A task of its own that takes signals of any name: the core's `anySignal`. */
const AnyName = Task.make("test.wf.any-signal", {
  input: Schema.String,
  output: Schema.Number,
  retry: { maxAttempts: 1 },
  anySignal: Schema.Number,
  run: (name, ctx) => ctx.waitForSignal(name, Schema.Number)
})

/** Journal matched by name: the first attempt calls a then b, the replay b then a; "s" is a step, then a sleep. */
const ByName = Task.make("test.wf.by-name", {
  input: Schema.Boolean,
  output: Schema.String,
  retry: { maxAttempts: 2, initialDelay: "20 millis", factor: 1 },
  journalMatch: "name",
  run: (changeKind, ctx) =>
    Effect.gen(function*() {
      const step = (name: string) => ctx.step(name, Effect.succeed(`${name}@${ctx.attempt}`), { output: Schema.String })
      if (ctx.attempt === 1) {
        const [a, b] = [yield* step("a"), yield* step("b")]
        yield* step("s")
        return yield* Effect.die(`crash after ${a} ${b}`)
      }
      const [b, a] = [yield* step("b"), yield* step("a")]
      if (changeKind) yield* ctx.sleep("s", Duration.zero)
      return `${a} ${b}`
    })
})

const program = (workers: Parameters<typeof RunstreamTest.layer>[0]["workers"] = fastWorkers) =>
  Layer.mergeAll(OrderLayer, CrashyLayer, ApprovalLayer, RefuseLayer, BranchesLayer, TwiceLayer, SagaLayer, ParentLayer, HangLayer, SuspendsLayer).pipe(
    Layer.provideMerge(RunstreamWorkflow.layer),
    Layer.provideMerge(
      RunstreamTest.layer({
        tasks: [
          RunstreamWorkflow.taskOf(Order),
          RunstreamWorkflow.taskOf(Crashy, { retry: { maxAttempts: 3, initialDelay: "20 millis", factor: 1 } }),
          RunstreamWorkflow.taskOf(Approval),
          RunstreamWorkflow.taskOf(Refuse),
          RunstreamWorkflow.taskOf(Twice),
          RunstreamWorkflow.taskOf(Saga),
          RunstreamWorkflow.taskOf(Parent),
          RunstreamWorkflow.taskOf(Hang),
          RunstreamWorkflow.taskOf(Suspends, { retry: { maxAttempts: 3, initialDelay: "20 millis", factor: 1 } }),
          ByName,
          RunstreamWorkflow.taskOf(Branches, { retry: { maxAttempts: 3, initialDelay: "20 millis", factor: 1 } }),
          AnyName,
          Echo
        ],
        workers,
        reclaimInterval: "1 minute"
      })
    ),
    Layer.provideMerge(RunstreamWorkflow.layerHandlers),
    Layer.provideMerge(Layer.sync(Effects, () => new Map())),
    Layer.provideMerge(Layer.effect(Gate, Deferred.make<void>()))
  )

/** The run of an execution (its idempotency key). */
const runOf = (executionId: string) =>
  Effect.flatMap(Runs, (runs) =>
    Effect.map(runs.list({ idempotencyKey: executionId, limit: 1 }), ({ runs }) => {
      expect(runs).toHaveLength(1)
      return runs[0]!
    }))

/** Waits, on the run's stream, for its `n`th event of `type`. */
const nthEvent = (runId: Run["id"], type: string, n: number) =>
  Effect.flatMap(Runs, (runs) =>
    runs.events(runId).pipe(
      Stream.filter((event) => event.type === type),
      Stream.take(n),
      Stream.runCount,
      Effect.flatMap((seen) => seen === n ? Effect.void : Effect.dieMessage(`run ${runId} ended after ${seen} ${type} events`)),
      Effect.timeoutFail({ duration: patience, onTimeout: () => new Error(`no ${n} ${type} events on ${runId} in time`) }),
      Effect.orDie
    ))

const stepNames = (log: ReadonlyArray<RunEvent>) =>
  log.filter((event) => event.type === "step.completed").map((event) => (event.data as { name: string }).name)

describe("runstream/workflow", () => {
  it.effect("under TestClock, a workflow of two activities and a durable hour runs to its result; the run waits without a worker; its log shows it all", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const startedAt = yield* TestClock.currentTimeMillis
      // Started without waiting (its execution id back), then found as a run by its key.
      const executionId = yield* Order.execute({ id: "o1" }, { discard: true })
      expect(executionId).toBe(yield* Order.executionId({ id: "o1" }))
      const run = yield* runOf(executionId)
      expect(run.task).toBe("test.wf.order")
      expect(run.input).toEqual({ id: "o1" })
      yield* waitForEvent(run.id, "run.waiting")

      const waiting = yield* runs.get(run.id)
      expect(waiting.status).toBe("waiting")
      const job = Option.getOrThrow(yield* jobOf(run.id))
      expect(job.locked_by).toBeNull()
      expect(job.run_at.getTime()).toBe(startedAt + 3_600_000)
      expect(yield* Order.poll(executionId)).toBeInstanceOf(Workflow.Suspended)

      // `execute` of the same payload is the same execution: it awaits the run.
      const result = yield* Effect.fork(Order.execute({ id: "o1" }))
      yield* TestClock.adjust("1 hour")
      expect(yield* Fiber.join(result)).toEqual({ charged: 42, shipment: "parcel 1" })

      const done = yield* runs.get(run.id)
      expect(done.status).toBe("succeeded")
      expect(done.output).toEqual({ charged: 42, shipment: "parcel 1" })
      expect([yield* ran("o1/charge"), yield* ran("o1/ship"), yield* ran("o1/outside")]).toEqual([1, 1, 2])
      const log = yield* logOf(run.id)
      expect(typesOf(log)).toEqual([
        "run.queued",
        "run.started",
        "step.completed",
        "sleep.started",
        "run.waiting",
        "run.started",
        "step.completed",
        "run.succeeded"
      ])
      expect(stepNames(log)).toEqual(["charge/1", "ship/1"])
      expect(log[2]!.data).toEqual({ name: "charge/1", position: 0, output: { _tag: "Success", value: 42 } })
      expect(log[3]!.data).toMatchObject({ name: "DurableClock/cool-off", until: new Date(startedAt + 3_600_000).toISOString() })
      const polled = yield* Order.poll(executionId)
      expect(polled?._tag === "Complete" && polled.exit).toEqual(Exit.succeed({ charged: 42, shipment: "parcel 1" }))
    }).pipe(Effect.provide(program({ concurrency: 4, pollInterval: "1 minute", lease: "1 minute" }).pipe(Layer.provide(slowTimers)))), 150_000)

  it.live("an activity completed before a retried attempt is not run again: the replay returns its journaled result", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      expect(yield* Crashy.execute({ id: "c1" })).toBe(11)
      const run = yield* runOf(yield* Crashy.executionId({ id: "c1" }))
      expect([yield* ran("c1/first"), yield* ran("c1/body"), yield* ran("c1/second")]).toEqual([1, 2, 1])
      const log = yield* logOf(run.id)
      expect(typesOf(log)).toContain("run.retrying")
      expect(stepNames(log)).toEqual(["first/1", "second/1"])
      expect((yield* runs.get(run.id)).attempt).toBe(2)
    }).pipe(Effect.provide(program())))

  it.live("activities of concurrent branches are matched by name: a replay that calls them in another order than the first attempt returns their results", () =>
    Effect.gen(function*() {
      expect(yield* Branches.execute({ id: "b1" })).toBe("ABCD")
      const run = yield* runOf(yield* Branches.executionId({ id: "b1" }))
      const log = yield* logOf(run.id)
      expect([...stepNames(log)].sort()).toEqual(["A/1", "B/1", "C/1", "D/1"])
      // Called in the first attempt as A, C, D, B (D's call before B's): the replay's order was A, C, B, D.
      const positions = Object.fromEntries(
        log.filter((event) => event.type === "step.completed").map((event) => {
          const { name, position } = event.data as { name: string; position: number }
          return [name, position]
        })
      )
      expect(positions).toEqual({ "A/1": 0, "C/1": 1, "D/1": 2, "B/1": 3 })
      expect(typesOf(log)).toContain("run.retrying")
      expect(yield* Effect.forEach(["A", "B", "C", "D", "body"], (name) => ran(`b1/${name}`))).toEqual([1, 1, 1, 1, 2])
    }).pipe(Effect.provide(program())))

  it.live("an activity called twice and a clock slept twice by one name: the second call gets the first's result", () =>
    Effect.gen(function*() {
      expect(yield* Twice.execute({ id: "t1" })).toBe(2)
      const log = yield* logOf(yield* Effect.map(runOf(yield* Twice.executionId({ id: "t1" })), (run) => run.id))
      expect(stepNames(log)).toEqual(["once/1"])
      expect(typesOf(log).filter((type) => type === "sleep.started" || type === "run.waiting")).toEqual(["sleep.started", "run.waiting"])
      expect(yield* ran("t1/once")).toBe(1)
    }).pipe(Effect.provide(program())))

  it.live("a DurableDeferred completed from outside resumes the waiting run; while it waits the run is `waiting` and holds no worker", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const payload = { id: "a1" }
      const executionId = yield* Approval.executionId(payload)
      yield* Approval.execute(payload, { discard: true })
      const run = yield* runOf(executionId)
      const result = yield* Effect.fork(Approval.execute(payload))
      yield* waitForEvent(run.id, "run.waiting")
      expect((yield* runs.get(run.id)).status).toBe("waiting")
      expect(Option.getOrThrow(yield* jobOf(run.id)).locked_by).toBeNull()
      // The pool's one worker place is free while the run waits: another run takes it and ends.
      const other = yield* runs.start(Echo, "meanwhile")
      expect((yield* RunstreamTest.waitForRunCompletion(other.id, patience)).status).toBe("succeeded")
      expect((yield* runs.get(run.id)).status).toBe("waiting")

      const token = yield* DurableDeferred.tokenFromPayload(Approved, { workflow: Approval, payload })
      yield* DurableDeferred.succeed(Approved, { token, value: { by: "ann" } })
      // The next wait: a deferred whose name a signal cannot carry as it is.
      yield* nthEvent(run.id, "run.waiting", 2)
      yield* DurableDeferred.succeed(Stamp, { token: DurableDeferred.tokenFromExecutionId(Stamp, { workflow: Approval, executionId }), value: 7 })
      expect(yield* Fiber.join(result)).toBe("approved by ann, stamp 7")

      expect([yield* ran("a1/prepare"), yield* ran("a1/finish")]).toEqual([1, 1])
      const log = yield* logOf(run.id)
      const signals = log.filter((event) => event.type.startsWith("signal."))
      expect(signals.map((event) => [event.type, (event.data as { name: string }).name])).toEqual([
        ["signal.waiting", "approved"],
        ["signal.received", "approved"],
        ["signal.waiting", RunstreamWorkflow.signalNameOf("stamp/of approval")],
        ["signal.received", RunstreamWorkflow.signalNameOf("stamp/of approval")]
      ])
      expect(signals[1]!.data).toMatchObject({ data: { _tag: "Success", value: { by: "ann" } } })
      expect(typesOf(log).filter((type) => type === "run.waiting")).toHaveLength(2)
      expect(typesOf(log).at(-1)).toBe("run.succeeded")
      // A second `done` of a deferred: ignored (the first signal of a name wins; the run has finished).
      yield* DurableDeferred.succeed(Approved, { token, value: { by: "bob" } })
    }).pipe(Effect.provide(program({ ...fastWorkers, concurrency: 1 }))))

  it.live("a failing workflow's typed error comes back from execute and poll; the run fails for good with its Exit in the log", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const error = yield* Effect.flip(Refuse.execute({ id: "r1" }))
      expect(error).toBeInstanceOf(Refused)
      expect(error).toMatchObject({ reason: "over the limit", limit: 100 })
      const executionId = yield* Refuse.executionId({ id: "r1" })
      const run = yield* runOf(executionId)
      const failed = yield* runs.get(run.id)
      expect(failed.status).toBe("failed")
      expect(failed.attempt).toBe(1)
      expect(failed.error).toMatchObject({ tag: "PermanentError", retryable: false })
      expect(yield* ran("r1/check")).toBe(1)
      const log = yield* logOf(run.id)
      expect(typesOf(log)).toEqual(["run.queued", "run.started", "step.completed", "workflow.failed", "run.failed"])
      expect(log[3]!.data).toMatchObject({ exit: { _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "Refused", limit: 100 } } } })
      const polled = yield* Refuse.poll(executionId)
      expect(polled?._tag === "Complete" && polled.exit).toEqual(Exit.fail(new Refused({ reason: "over the limit", limit: 100 })))
      // Executed again: the same execution, the same error, nothing run again.
      expect(yield* Effect.flip(Refuse.execute({ id: "r1" }))).toBeInstanceOf(Refused)
      expect(yield* ran("r1/check")).toBe(1)
    }).pipe(Effect.provide(program())))

  it.live("a workflow that fails runs its compensations (activities, journaled) before its run fails", () =>
    Effect.gen(function*() {
      expect(yield* Effect.flip(Saga.execute({ id: "s1" }))).toBe("card declined")
      const run = yield* runOf(yield* Saga.executionId({ id: "s1" }))
      expect(stepNames(yield* logOf(run.id))).toEqual(["reserve/1", "pay/1", "release/1"])
      expect(yield* Effect.forEach(["reserve", "pay", "release"], (name) => ran(`s1/${name}`))).toEqual([1, 1, 1])
    }).pipe(Effect.provide(program())))

  it.live("a run cancelled while an activity runs ends cancelled: the body is stopped as a suspension, its compensations do not run", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const executionId = yield* Hang.execute({ id: "h1" }, { discard: true })
      const run = yield* runOf(executionId)
      yield* waitForEvent(run.id, "step.completed")
      yield* Hang.interrupt(executionId)
      expect((yield* RunstreamTest.waitForRunCompletion(run.id, patience)).status).toBe("cancelled")
      expect(stepNames(yield* logOf(run.id))).toEqual(["reserve/1"])
      expect(yield* ran("h1/release")).toBe(0)
      const polled = yield* Hang.poll(executionId)
      expect(polled?._tag === "Complete" && Exit.isInterrupted(polled.exit)).toBe(true)
      expect((yield* runs.get(run.id)).status).toBe("cancelled")
    }).pipe(Effect.provide(program())))

  it.live("a workflow executed inside a workflow is a child run: the parent waits without a worker, the child's end wakes it; its result or typed error comes back", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const parentId = yield* Parent.execute({ id: "p1", fail: false }, { discard: true })
      const parent = yield* runOf(parentId)
      const result = yield* Effect.fork(Parent.execute({ id: "p1", fail: false }))
      yield* waitForEvent(parent.id, "run.waiting")
      const childId = yield* Approval.executionId({ id: "p1-child" })
      const child = yield* runOf(childId)
      expect(child.parentId).toBe(parent.id)
      const waiting = yield* runs.get(parent.id)
      expect(waiting.status).toBe("waiting")
      expect(waiting.children?.map((run) => run.id)).toEqual([child.id])

      yield* DurableDeferred.succeed(Approved, { token: DurableDeferred.tokenFromExecutionId(Approved, { workflow: Approval, executionId: childId }), value: { by: "cy" } })
      yield* DurableDeferred.succeed(Stamp, { token: DurableDeferred.tokenFromExecutionId(Stamp, { workflow: Approval, executionId: childId }), value: 3 })
      expect(yield* Fiber.join(result)).toBe("child said: approved by cy, stamp 3")
      const log = yield* logOf(parent.id)
      expect(typesOf(log)).toEqual(["run.queued", "run.started", "run.waiting", "run.started", "child.completed", "run.succeeded"])
      expect(log.find((event) => event.type === "run.waiting")!.data).toMatchObject({ waitingFor: `children:workflow:test.wf.approval/${childId}` })

      // A child that fails with its typed error: the parent's execute fails with it.
      expect(yield* Effect.flip(Parent.execute({ id: "p2", fail: true }))).toEqual(new Refused({ reason: "over the limit", limit: 100 }))
      expect(yield* ran("p2-child/check")).toBe(1)
    }).pipe(Effect.provide(program())))

  it.live("a workflow that suspends without a durable wait (SuspendOnFailure) fails its attempt with WorkflowSuspended, and the retry resumes it", () =>
    Effect.gen(function*() {
      expect(yield* Suspends.execute({ id: "w1" })).toBe("ok after 2")
      const run = yield* runOf(yield* Suspends.executionId({ id: "w1" }))
      const retrying = (yield* logOf(run.id)).find((event) => event.type === "run.retrying")
      expect(retrying?.data).toMatchObject({ error: { tag: "WorkflowSuspended", retryable: true } })
    }).pipe(Effect.provide(program())))

  it.live("interrupt cancels the run; poll says so", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const executionId = yield* Approval.execute({ id: "i1" }, { discard: true })
      const run = yield* runOf(executionId)
      yield* waitForEvent(run.id, "run.waiting")
      yield* Approval.interrupt(executionId)
      expect((yield* runs.get(run.id)).status).toBe("cancelled")
      const polled = yield* Approval.poll(executionId)
      expect(polled?._tag === "Complete" && Exit.isInterrupted(polled.exit)).toBe(true)
      expect(yield* Approval.poll("no such execution")).toBeUndefined()
    }).pipe(Effect.provide(program())))
})

describe("the core's extensions for the adapter: Task anySignal, journalMatch", () => {
  it.live("a task with anySignal takes a signal of any name, checked with that schema; its body waits for a name chosen at run time", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(AnyName, "picked.at-run:time")
      yield* waitForEvent(run.id, "run.waiting")
      const bad = yield* Effect.flip(runs.signal(run.id, "picked.at-run:time", "not a number"))
      expect(bad._tag).toBe("InvalidInput")
      expect((yield* runs.signal(run.id, "another", 1)).created).toBe(true)
      expect((yield* runs.signal(run.id, "picked.at-run:time", 5)).created).toBe(true)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.output).toBe(5)
      // A name no signal can carry: it could never come.
      const never = yield* RunstreamTest.waitForRunCompletion((yield* runs.start(AnyName, "no/slash")).id, patience)
      expect(never.error).toMatchObject({ tag: "SignalNotDeclared" })
    }).pipe(Effect.provide(program())))

  it.live("a task with journalMatch \"name\" replays its steps in another order; a name of another kind still breaks it", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const reordered = yield* RunstreamTest.waitForRunCompletion((yield* runs.start(ByName, false)).id, patience)
      expect(reordered.status).toBe("succeeded")
      expect(reordered.output).toBe("a@1 b@1")
      const changed = yield* RunstreamTest.waitForRunCompletion((yield* runs.start(ByName, true)).id, patience)
      expect(changed.status).toBe("failed")
      expect(changed.error).toMatchObject({ tag: "NonDeterministic", message: "'s' is a step in the journal, a sleep in this replay" })
    }).pipe(Effect.provide(program())))

  it("signal names of deferreds: a name a signal carries stays as it is; another is made safe and unique", () => {
    expect(RunstreamWorkflow.signalNameOf("approved")).toBe("approved")
    const odd = RunstreamWorkflow.signalNameOf("stamp/of approval")
    expect(odd).toMatch(/^stamp_of_approval\.[0-9a-f]{32}$/)
    expect(RunstreamWorkflow.signalNameOf("stamp of/approval")).not.toBe(odd)
    expect(RunstreamWorkflow.signalNameOf("/".repeat(200))).toMatch(/^deferred\.[0-9a-f]{32}$/)
  })
})
