/**
 * `@effect/workflow`'s `WorkflowEngine` on Runstream (issue 20): workflows
 * written with Effect's own `Workflow`, `Activity`, `DurableClock` and
 * `DurableDeferred` run as Runstream runs, with their logs and streams.
 *
 * - A workflow is a task (`taskOf`): its name, its payload schema as input,
 *   its success schema as output. An execution is a run whose idempotency key
 *   is the execution id (`execute` starts it, or finds it, and awaits it).
 * - An activity is a journaled step named `<activity>/<attempt>`; its Exit
 *   (success or typed failure, encoded with the activity's schemas) is
 *   recorded, so a replay returns it without running it again.
 * - `DurableClock.sleep` is a durable sleep (`ctx.sleep`) named after the
 *   clock's deferred; `DurableDeferred.await` a wait for a signal
 *   (`ctx.waitForSignal`), and `DurableDeferred.done` (from outside) sends
 *   that signal (`Runs.signal`) with the encoded Exit. While it waits, the
 *   run is `waiting` and holds no worker.
 * - A workflow's typed failure is recorded in its log (`workflow.failed`,
 *   the encoded Exit) and fails the run for good; `execute` and `poll`
 *   decode it back.
 * - A workflow executed inside a workflow is a child run of the parent's
 *   run (keyed by its execution id), awaited as `ctx.await` awaits children:
 *   the parent is `waiting` until the child's end wakes it.
 *
 * Registration: the tasks must be in the program's `TaskRegistry` when the
 * workers start (`layerRegistry`, or `taskOf` with one's own tasks); each
 * `Workflow.toLayer(handler)` then binds its handler (`register`). A run
 * claimed before its handler is bound waits for it (`WorkflowNotRegistered`
 * after 30 seconds, retried as any failure).
 *
 * Not supported (see docs/decisions.md): `DurableDeferred.raceAll` and
 * `Activity.raceAll`, `DurableQueue`, `DurableRateLimiter`, `resume` (the
 * runs' waits wake them), compensation on `interrupt` (a cancel).
 * @since 0.6.0
 */
import * as Workflow from "@effect/workflow/Workflow"
import { makeUnsafe, WorkflowEngine, WorkflowInstance } from "@effect/workflow/WorkflowEngine"
import type { DurableClock } from "@effect/workflow/DurableClock"
import { createHash } from "node:crypto"
import { Cause, Context, Deferred, Duration, Effect, Exit, FiberId, Layer, Option, Schema } from "effect"
import type { Run } from "../domain/Run.ts"
import { isFinished } from "../domain/Run.ts"
import { EventLog } from "../EventLog.ts"
import { Runs } from "../Runs.ts"
import * as Task from "../Task.ts"

/** The event a failed workflow's run records its Exit in (`{ exit }`, encoded with the workflow's schemas). */
export const workflowFailedType = "workflow.failed"

/**
 * The data of every signal of a workflow's run: a deferred's Exit, its
 * values as their schemas encode them (decoded by the deferred's own
 * schemas when the workflow reads it).
 */
export const DeferredExit = Schema.Exit({ success: Schema.Unknown, failure: Schema.Unknown, defect: Schema.Defect })

/** A workflow's run was claimed and no handler came for it (`Workflow.toLayer` not in this program). Retried. */
export class WorkflowNotRegistered extends Schema.TaggedError<WorkflowNotRegistered>()("WorkflowNotRegistered", {
  workflow: Schema.String
}) {
  override get message() {
    return `workflow '${this.workflow}' has a task but no handler in this program (provide its Workflow.toLayer)`
  }
}

/**
 * The workflow suspended without a durable wait of Runstream's (e.g. the
 * `SuspendOnFailure` annotation): the attempt fails and the run is retried
 * after its task's backoff, as `resume` would.
 */
export class WorkflowSuspended extends Schema.TaggedError<WorkflowSuspended>()("WorkflowSuspended", {
  workflow: Schema.String,
  message: Schema.String
}) {}

/** A workflow's run failed without a workflow Exit (a broken journal, its attempts used up, ...): a defect for `execute`. */
export class WorkflowRunFailed extends Schema.TaggedError<WorkflowRunFailed>()("WorkflowRunFailed", {
  runId: Schema.String,
  tag: Schema.String,
  message: Schema.String
}) {}

/** What `register` binds: the workflow's handler, and the engine it runs with. */
interface Handler {
  readonly execute: (payload: object, executionId: string) => Effect.Effect<unknown, unknown, WorkflowInstance | WorkflowEngine>
  readonly engine: WorkflowEngine["Type"]
  /** The execution id of a run: its idempotency key (null for a run started without one). */
  readonly executionIdOf: (run: Run["id"]) => Effect.Effect<string | null>
}

/** The handlers `Workflow.toLayer` binds, by workflow name; the workflows' task bodies wait for theirs. */
export class WorkflowHandlers extends Context.Tag("runstream/workflow/WorkflowHandlers")<WorkflowHandlers, {
  readonly bind: (name: string, handler: Handler) => Effect.Effect<void>
  readonly get: (name: string) => Effect.Effect<Handler, WorkflowNotRegistered>
}>() {}

/** How long a claimed run waits for its workflow's handler. */
const handlerPatience = Duration.seconds(30)

export const layerHandlers: Layer.Layer<WorkflowHandlers> = Layer.sync(WorkflowHandlers, () => {
  const handlers = new Map<string, Deferred.Deferred<Handler>>()
  const of = (name: string) => {
    let handler = handlers.get(name)
    if (handler === undefined) {
      handler = Deferred.unsafeMake<Handler>(FiberId.none)
      handlers.set(name, handler)
    }
    return handler
  }
  return WorkflowHandlers.of({
    bind: (name, handler) => Effect.asVoid(Deferred.succeed(of(name), handler)),
    get: (name) =>
      Deferred.await(of(name)).pipe(
        Effect.timeoutFail({ duration: handlerPatience, onTimeout: () => new WorkflowNotRegistered({ workflow: name }) })
      )
  })
})

/** What a workflow's run holds while its body runs: its `TaskContext`, and what the engine learns of it. */
interface RunState {
  readonly ctx: Task.TaskContext
  /** The clocks `DurableClock.sleep` scheduled, by the name of their deferred. */
  readonly clocks: Map<string, DurableClock>
  /** The activities of this attempt, by journal name: a second call of one gets the first's result. */
  readonly activities: Map<string, Deferred.Deferred<Workflow.Result<unknown, unknown>>>
  /** The deferreds this attempt read, by name: a second read of one (or of a clock) gets the first's result. */
  readonly deferreds: Map<string, Exit.Exit<unknown, unknown>>
  /** A durable wait suspended the attempt: it ends `waiting`. */
  waiting: boolean
  /** The journal failed (a lost lease, the database, a replay that does not match): the attempt fails with it. */
  failure: unknown
}

class CurrentRun extends Context.Tag("runstream/workflow/CurrentRun")<CurrentRun, RunState>() {}

const currentRun = Effect.flatMap(
  Effect.serviceOption(CurrentRun),
  Option.match({
    onNone: () => Effect.dieMessage("runstream/workflow: a workflow's activity, clock or deferred ran outside its run"),
    onSome: Effect.succeed
  })
)

/** Marks the tasks `taskOf` makes: `register` refuses a workflow whose name has another task. */
const WorkflowTaskId: unique symbol = Symbol.for("runstream/workflow/WorkflowTask")

const isWorkflowTask = (task: Task.Any): boolean => WorkflowTaskId in task

/** Options of a workflow's task. */
export interface TaskOptions {
  /** Attempts after a failure of the run's infrastructure (a lost lease, the database), not of the workflow. */
  readonly retry?: Parameters<typeof Task.make>[1]["retry"]
  readonly timeout?: Duration.DurationInput | undefined
  readonly retention?: Task.Any["retention"]
}

/** The encoded Exit of a workflow, as `workflow.failed` holds it. */
const exitSchemaOf = (workflow: Workflow.Any) =>
  Schema.Exit({ success: workflow.successSchema, failure: workflow.errorSchema, defect: Schema.Defect }) as unknown as Schema.Schema<
    Exit.Exit<unknown, unknown>,
    unknown
  >

/**
 * The Runstream task of a workflow: named as it, its payload as input, its
 * success as output, taking signals of any name (its deferreds). Register it
 * with the program's tasks (`layerRegistry`, or `Task.layerRegistry`).
 */
export const taskOf = <const Name extends string, Payload extends Workflow.AnyStructSchema, Success extends Schema.Schema.Any, Error extends Schema.Schema.All>(
  workflow: Workflow.Workflow<Name, Payload, Success, Error>,
  options: TaskOptions = {}
): Task.Task<Name, Payload["Type"], Payload["Encoded"], Success["Type"], Success["Encoded"], unknown, WorkflowHandlers> => {
  const task = Task.make(workflow.name, {
    input: workflow.payloadSchema as unknown as Schema.Schema<Payload["Type"], Payload["Encoded"]>,
    output: workflow.successSchema as unknown as Schema.Schema<Success["Type"], Success["Encoded"]>,
    anySignal: DeferredExit,
    // `@effect/workflow` keys activities and deferreds by name: concurrent branches call them in any order.
    journalMatch: "name",
    retry: options.retry,
    timeout: options.timeout,
    retention: options.retention,
    run: (payload, ctx) => runWorkflow(workflow, payload as object, ctx) as Effect.Effect<Success["Type"], unknown, WorkflowHandlers>
  })
  return Object.assign(task, { [WorkflowTaskId]: true as const })
}

/** The body of a workflow's run: its handler run as `@effect/workflow` runs it, on this run's journal. */
const runWorkflow = (workflow: Workflow.Any, payload: object, ctx: Task.TaskContext) =>
  Effect.gen(function*() {
    const handler = yield* Effect.flatMap(WorkflowHandlers, (handlers) => handlers.get(workflow.name))
    const executionId = (yield* handler.executionIdOf(ctx.runId)) ?? (yield* workflow.executionId(payload))
    const state: RunState = { ctx, clocks: new Map(), activities: new Map(), deferreds: new Map(), waiting: false, failure: undefined }
    const instance = WorkflowInstance.initial(workflow, executionId)
    const result = yield* handler.execute(payload, executionId).pipe(
      // Interrupted from outside (a stop, a cancel, a durable wait): suspended, not failed,
      // so that its compensations do not run (the run goes on elsewhere, or ends cancelled).
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          instance.suspended = true
        })
      ),
      Workflow.intoResult,
      Effect.provideService(WorkflowInstance, instance),
      Effect.provideService(WorkflowEngine, handler.engine),
      Effect.provideService(CurrentRun, state)
    )
    if (state.failure !== undefined) return yield* Effect.fail(state.failure)
    if (result._tag === "Suspended") {
      // The attempt ends `waiting` (the journal's suspension), whatever the body returns.
      if (state.waiting) return yield* Effect.interrupt
      return yield* new WorkflowSuspended({
        workflow: workflow.name,
        message: `workflow '${workflow.name}' suspended without a durable wait${
          result.cause === undefined ? "" : `: ${Cause.pretty(result.cause).slice(0, 1000)}`
        }`
      })
    }
    const exit = result.exit
    if (Exit.isSuccess(exit)) return exit.value
    const encoded = yield* Effect.orDie(Schema.encode(exitSchemaOf(workflow))(exit))
    yield* ctx.emit(workflowFailedType, { exit: encoded })
    return yield* new Task.PermanentError({ message: `workflow '${workflow.name}' failed: ${Cause.pretty(exit.cause).slice(0, 1500)}` })
  })

/** The journal's errors (typed failures of `ctx.step`, `ctx.sleep`, `ctx.waitForSignal`). */
const isJournalError = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "_tag" in error &&
  ["LeaseLost", "PayloadTooLarge", "InvalidInput", "SqlError", "NonDeterministic", "DuplicateStep", "SignalNotDeclared"]
    .includes(String(error._tag))

const suspended = new Workflow.Suspended({})

/**
 * What a durable call's failure means: a suspension of the journal (the
 * attempt ends waiting), a failure of the journal (the attempt fails with
 * it, after the workflow suspends), or a defect of the workflow's own.
 */
const onJournalCause = <A>(state: RunState, cause: Cause.Cause<unknown>, onSuspend: A): Effect.Effect<A> => {
  if (Cause.isInterruptedOnly(cause)) {
    state.waiting = true
    return Effect.succeed(onSuspend)
  }
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure) && isJournalError(failure.value)) {
    state.failure ??= failure.value
    return Effect.succeed(onSuspend)
  }
  return Effect.failCause(cause as Cause.Cause<never>)
}

/** An activity suspended inside its step: the step records nothing. */
class ActivitySuspended {
  readonly _tag = "ActivitySuspended"
}
const activitySuspended = new ActivitySuspended()

/** How an activity's Exit is journaled: its values as its schemas encode them. */
const activityExitSchema = (activity: { readonly successSchema: Schema.Schema.Any; readonly errorSchema: Schema.Schema.All }) =>
  Schema.Exit({
    success: Schema.encodedSchema(activity.successSchema),
    failure: Schema.encodedSchema(activity.errorSchema as Schema.Schema.Any),
    defect: Schema.Defect
  }) as unknown as Schema.Schema<Exit.Exit<unknown, unknown>, unknown>

const plainSignalName = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/

/**
 * The signal (and journal name) of a deferred: its own name when a signal
 * can carry it (so `POST /v1/runs/:id/signals/<name>` reaches it), else its
 * name's safe characters and a digest of it.
 */
export const signalNameOf = (deferredName: string): string =>
  deferredName.length <= 100 && plainSignalName.test(deferredName)
    ? deferredName
    : `${deferredName.replace(/[^A-Za-z0-9_.:-]/g, "_").replace(/^[_.:-]+/, "").slice(0, 60) || "deferred"}.${
      createHash("sha256").update(deferredName).digest("hex").slice(0, 32)
    }`

/**
 * The engine: needs the program's `Runs`, `TaskRegistry` (with the
 * workflows' tasks), `EventLog`, and the `WorkflowHandlers` the tasks were
 * registered with.
 */
export const layer: Layer.Layer<WorkflowEngine, never, Runs | Task.TaskRegistry | EventLog | WorkflowHandlers> = Layer.effect(
  WorkflowEngine,
  Effect.gen(function*() {
    const runs = yield* Runs
    const registry = yield* Task.TaskRegistry
    const log = yield* EventLog
    const handlers = yield* WorkflowHandlers

    /** The run of an execution id (its idempotency key), if any. */
    const runOf = (executionId: string) =>
      Effect.map(Effect.orDie(runs.list({ idempotencyKey: executionId, limit: 1 })), ({ runs }) => runs[0])

    /** A finished run as the workflow's result. */
    const completeOf = (workflow: Workflow.Any, run: Run): Effect.Effect<Workflow.Result<unknown, unknown>> =>
      Effect.gen(function*() {
        if (run.status === "succeeded") {
          const value = yield* Effect.orDie(Schema.decodeUnknown(workflow.successSchema as Schema.Schema<unknown, unknown>)(run.output))
          return new Workflow.Complete({ exit: Exit.succeed(value) })
        }
        if (run.status === "cancelled") return new Workflow.Complete({ exit: Exit.interrupt(FiberId.none) })
        const recorded = yield* Effect.orDie(log.readOfTypes(run.id, [workflowFailedType]))
        const last = recorded.at(-1)
        const data = last?.data as { readonly exit?: unknown } | undefined
        if (data?.exit !== undefined) {
          return new Workflow.Complete({ exit: yield* Effect.orDie(Schema.decodeUnknown(exitSchemaOf(workflow))(data.exit)) })
        }
        return new Workflow.Complete({
          exit: Exit.die(
            new WorkflowRunFailed({ runId: run.id, tag: run.error?.tag ?? "Error", message: run.error?.message ?? "the run failed" })
          )
        })
      })

    /**
     * A workflow executed inside a workflow: a child run of the parent's run
     * (so that its end wakes the parent, and a cancel of the parent cancels
     * it), keyed by its execution id, awaited as the parent's children are
     * (`ctx.await`: the parent is `waiting` meanwhile, the result journaled).
     */
    const executeChild = (
      workflow: Workflow.Any,
      options: { readonly executionId: string; readonly payload: object; readonly discard: boolean }
    ): Effect.Effect<Workflow.Result<unknown, unknown> | undefined> =>
      Effect.gen(function*() {
        const state = yield* currentRun
        if (state.waiting || state.failure !== undefined) return suspended
        const started = yield* Schema.encode(workflow.payloadSchema as unknown as Schema.Schema<object, unknown>)(options.payload).pipe(
          Effect.orDie,
          Effect.flatMap((input) =>
            runs.startMany([{
              task: workflow.name,
              input,
              options: { idempotencyKey: options.executionId },
              parentId: state.ctx.runId
            }])
          ),
          Effect.map((created) => created[0]!.run),
          Effect.catchTag("IdempotencyConflict", (conflict): Effect.Effect<Run, unknown> =>
            conflict.runId === undefined ? Effect.fail(conflict) : runs.get(conflict.runId as Run["id"])),
          Effect.either
        )
        if (started._tag === "Left") {
          // As a journal's failure: the workflow suspends, the attempt fails with it and is retried.
          state.failure ??= started.left
          return suspended
        }
        const run = started.right
        if (run.parentId !== state.ctx.runId) {
          return yield* Effect.dieMessage(
            `runstream/workflow: execution ${options.executionId} of '${workflow.name}' is run ${run.id}, which is not a child of run ${state.ctx.runId}: its end would not wake this one`
          )
        }
        if (options.discard) return undefined
        const child: Task.Child<unknown> = {
          id: run.id,
          name: `workflow:${workflow.name}/${options.executionId}`,
          task: workflow.name,
          output: workflow.successSchema as Schema.Schema<unknown, unknown>
        }
        return yield* state.ctx.await(child).pipe(
          Effect.map((value): Workflow.Result<unknown, unknown> => new Workflow.Complete({ exit: Exit.succeed(value) })),
          Effect.catchAllCause((cause) => {
            const failure = Cause.failureOption(cause)
            // Its Exit is in its own log (`workflow.failed`), or its end says what became of it.
            return Option.isSome(failure) && failure.value._tag === "ChildFailed"
              ? Effect.flatMap(Effect.orDie(runs.get(run.id)), (ended) => completeOf(workflow, ended))
              : onJournalCause(state, cause, suspended)
          })
        )
      })

    const engine: WorkflowEngine["Type"] = makeUnsafe({
      register: (workflow, execute) =>
        Effect.gen(function*() {
          const registered = registry.get(workflow.name)
          if (Option.isNone(registered) || !isWorkflowTask(registered.value.task)) {
            return yield* Effect.dieMessage(
              `workflow '${workflow.name}' has no task in this program's registry: add RunstreamWorkflow.taskOf(${workflow.name}) (or use RunstreamWorkflow.layerRegistry)`
            )
          }
          yield* handlers.bind(workflow.name, {
            execute,
            engine,
            executionIdOf: (runId) => Effect.map(Effect.orDie(runs.get(runId)), (run) => run.idempotencyKey ?? null)
          })
        }),

      execute: (workflow, options) =>
        Effect.gen(function*() {
          const registered = registry.get(workflow.name)
          if (Option.isNone(registered)) {
            return yield* Effect.dieMessage(`workflow '${workflow.name}' has no task in this program's registry`)
          }
          if (options.parent !== undefined) return yield* executeChild(workflow, options)
          // A repeated execution id with another payload (the same idempotency key) is the same execution.
          const run = yield* runs.start(registered.value.task, options.payload, { idempotencyKey: options.executionId }).pipe(
            Effect.catchTag("IdempotencyConflict", (conflict): Effect.Effect<Run, unknown> =>
              conflict.runId === undefined ? Effect.fail(conflict) : runs.get(conflict.runId as Run["id"])),
            Effect.orDie
          )
          if (options.discard) return undefined
          const done = yield* Effect.orDie(runs.awaitCompletion(run.id))
          return yield* completeOf(workflow, done)
        }) as any,

      poll: (workflow, executionId) =>
        Effect.flatMap(runOf(executionId), (run): Effect.Effect<Workflow.Result<unknown, unknown> | undefined> =>
          run === undefined
            ? Effect.succeed(undefined)
            : isFinished(run.status)
            ? completeOf(workflow, run)
            : Effect.succeed(run.status === "waiting" ? suspended : undefined)),

      interrupt: (_workflow, executionId) =>
        Effect.flatMap(runOf(executionId), (run) =>
          run === undefined ? Effect.void : runs.cancel(run.id).pipe(
            Effect.catchTags({ RunNotFound: () => Effect.void, RunAlreadyFinished: () => Effect.void }),
            Effect.orDie,
            Effect.asVoid
          )),

      // A run's durable waits wake it, and a failed attempt is retried on its own: nothing to resume.
      resume: () => Effect.void,

      activityExecute: (activity, attempt) =>
        Effect.gen(function*() {
          const state = yield* currentRun
          const instance = yield* WorkflowInstance
          // The journal takes no more calls once the attempt suspends (or broke).
          if (state.waiting || state.failure !== undefined) return suspended
          const name = `${activity.name}/${attempt}`
          const earlier = state.activities.get(name)
          if (earlier !== undefined) return yield* Deferred.await(earlier)
          const done = Deferred.unsafeMake<Workflow.Result<unknown, unknown>>(FiberId.none)
          state.activities.set(name, done)
          const activityInstance = WorkflowInstance.initial(instance.workflow, instance.executionId)
          activityInstance.interrupted = instance.interrupted
          const run = activity.executeEncoded.pipe(
            Workflow.intoResult,
            Effect.provideService(WorkflowInstance, activityInstance),
            Effect.flatMap((result) => result._tag === "Complete" ? Effect.succeed(result.exit) : Effect.fail(activitySuspended))
          ) as Effect.Effect<Exit.Exit<unknown, unknown>, ActivitySuspended>
          return yield* state.ctx.step(name, run, { output: activityExitSchema(activity) }).pipe(
            Effect.map((exit): Workflow.Result<unknown, unknown> => new Workflow.Complete({ exit })),
            Effect.catchAllCause((cause) => {
              const failure = Cause.failureOption(cause)
              return Option.isSome(failure) && failure.value === activitySuspended
                ? Effect.succeed(suspended)
                : onJournalCause(state, cause, suspended)
            }),
            Effect.exit,
            Effect.tap((exit) => Deferred.done(done, exit)),
            Effect.flatten
          )
        }),

      deferredResult: (deferred) =>
        Effect.gen(function*() {
          const state = yield* currentRun
          if (state.failure !== undefined) return undefined
          if (deferred.name.startsWith("raceAll/")) {
            return yield* Effect.dieMessage(
              `runstream/workflow: '${deferred.name}': DurableDeferred.raceAll and Activity.raceAll are not supported`
            )
          }
          const read = state.deferreds.get(deferred.name)
          if (read !== undefined) return read
          const clock = state.clocks.get(deferred.name)
          const wait: Effect.Effect<Exit.Exit<unknown, unknown>, unknown> = clock !== undefined
            ? Effect.as(state.ctx.sleep(deferred.name, clock.duration), Exit.void)
            : state.ctx.waitForSignal(signalNameOf(deferred.name), DeferredExit)
          return yield* wait.pipe(
            Effect.tap((exit) => state.deferreds.set(deferred.name, exit)),
            Effect.catchAllCause((cause) => onJournalCause(state, cause, undefined))
          )
        }),

      deferredDone: (options) =>
        Effect.gen(function*() {
          const run = yield* runOf(options.executionId)
          if (run === undefined) {
            return yield* Effect.logWarning(
              `runstream/workflow: deferred '${options.deferredName}' done for execution ${options.executionId} of '${options.workflowName}', which has no run: ignored`
            )
          }
          const data = yield* Effect.orDie(Schema.encode(DeferredExit)(options.exit))
          yield* runs.signal(run.id, signalNameOf(options.deferredName), data).pipe(
            // A finished run needs it no more (as a second `done`, which the first signal of a name wins).
            Effect.catchTags({ RunAlreadyFinished: () => Effect.void, RunNotFound: () => Effect.void }),
            Effect.orDie
          )
        }),

      scheduleClock: (_workflow, options) =>
        Effect.map(currentRun, (state) => {
          state.clocks.set(options.clock.deferred.name, options.clock)
        })
    })
    return engine
  })
)

/**
 * The program's `TaskRegistry`, with a task for each workflow (`taskOf`)
 * beside its other tasks, and the `WorkflowHandlers` those tasks and the
 * engine (`layer`) share: provide both to the runtime and to `layer`.
 */
export const layerRegistry = <const Tasks extends ReadonlyArray<Task.Any>>(
  workflows: ReadonlyArray<Workflow.Any>,
  ...tasks: Tasks
): Layer.Layer<Task.TaskRegistry | WorkflowHandlers, never, Task.ContextOf<Tasks[number]>> =>
  Task.layerRegistry(...tasks, ...workflows.map((workflow) => taskOf(workflow as Workflow.Workflow<string, any, any, any>))).pipe(
    Layer.provideMerge(layerHandlers)
  ) as Layer.Layer<Task.TaskRegistry | WorkflowHandlers, never, Task.ContextOf<Tasks[number]>>
