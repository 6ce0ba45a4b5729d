/**
 * Tasks: named, typed units of work, and the registry a program's workers run.
 * @since 0.1.0
 */
import { Context, DateTime, Duration, Effect, JSONSchema, Layer, Option, type Schedule, Schema } from "effect"
import type { SqlError } from "@effect/sql"
import type { ChildFailed } from "./domain/ChildFailed.ts"
import type {
  DuplicateStep,
  InvalidInput,
  LeaseLost,
  NonDeterministic,
  PayloadTooLarge,
  UnknownTask
} from "./domain/Errors.ts"
import * as LimitKey from "./domain/LimitKey.ts"
import { parseRetention, type RetentionInput, retentionMessage } from "./domain/RetentionPeriod.ts"
import type { RunId } from "./domain/Ids.ts"
import { SignalName, type SignalNotDeclared, type SignalTimeout } from "./domain/Signal.ts"
import type { StartOptions } from "./domain/StartOptions.ts"
import type { TaskInfo, TaskList } from "./domain/TaskInfo.ts"
import * as Limits from "./queue/Limits.ts"
import type { QueueLimits } from "./queue/QueueLimits.ts"

/** Why an `emit` can fail. */
export type EmitError = LeaseLost | PayloadTooLarge | InvalidInput | SqlError.SqlError

/**
 * Why a `step` can fail, beside its effect's own failures: its journal entry
 * could not be written (as `emit`), its output does not encode
 * (`InvalidInput`), its name was used before in the run (`DuplicateStep`), or
 * the run's replay does not match its journal (`NonDeterministic`).
 */
export type StepError = EmitError | NonDeterministic | DuplicateStep

/**
 * Why a `sleep` can fail: its journal entry could not be written (as
 * `emit`), its wake-up time is no date (`InvalidInput`), its name was used before in the run (`DuplicateStep`: steps and
 * sleeps share one set of names), or the replay does not match the journal
 * (`NonDeterministic`).
 */
export type SleepError = EmitError | NonDeterministic | DuplicateStep

/**
 * Why a `waitForSignal` can fail, beside its timeout (`SignalTimeout`): as a
 * sleep, and `SignalNotDeclared` when the task does not declare the signal,
 * `InvalidInput` when its data does not decode with the schema.
 */
export type SignalError = SleepError | SignalNotDeclared

/** The signals a task waits for, by name: the schema of each one's data (the encoded side is what is sent). */
export type Signals = { readonly [name: string]: Schema.Schema<any, any, never> }

/** How long `waitForSignal` waits. */
export interface WaitForSignalOptions {
  /** After it, the wait fails with `SignalTimeout` (counted from the first call, as a sleep); none: for ever. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Why a `start` can fail: as a step (its journal entry, its name, the
 * replay's match), its input does not encode or its options are bad
 * (`InvalidInput`, `PayloadTooLarge`), its task is not registered with the
 * program (`UnknownTask`).
 */
export type ChildStartError = StepError | UnknownTask

/**
 * Why an `await` or `all` can fail, beside the child's own failure
 * (`ChildFailed`): its journal entry could not be written, or the replay
 * does not match the journal (the recorded output no longer decodes).
 */
export type ChildAwaitError = EmitError | NonDeterministic

/**
 * A child run as its parent's body holds it (`ctx.start`): its id, its name
 * in the parent's journal, its task, and how its output decodes (`ctx.await`
 * returns an `O`).
 */
export interface Child<O> {
  readonly id: RunId
  readonly name: string
  readonly task: string
  readonly output: Schema.Schema<O, any>
}

/**
 * Options of a child's start: its name in the parent's journal (default
 * `#<position>`; unique among the run's steps, sleeps and children), and the
 * start options a child may take (its idempotency key is its parent's:
 * `<parent id>/child/<name>`).
 */
export interface ChildOptions
  extends Pick<StartOptions, "queue" | "priority" | "maxAttempts" | "timeoutMs" | "concurrencyKey">
{
  readonly name?: string | undefined
}

/** The outputs of children, in their order. */
export type OutputsOf<C extends ReadonlyArray<Child<any>>> = { -readonly [K in keyof C]: C[K] extends Child<infer O> ? O : never }

/** How a step's result is recorded, and how often it is tried in place. */
export interface StepOptions<A, I, E> {
  /** Encodes the result into the journal and decodes it back on a replay: it must round-trip. */
  readonly output: Schema.Schema<A, I>
  /**
   * Retries the step's effect in place before its failure reaches the body
   * (and the task's retry policy): a count of retries, or a schedule.
   */
  readonly retry?: number | Schedule.Schedule<unknown, NoInfer<E>> | undefined
}

/** What a task body can do while it runs. */
export interface TaskContext {
  readonly runId: RunId
  readonly attempt: number
  /**
   * Appends an event to the run's log and returns its seq. Fails with
   * `LeaseLost` when this attempt no longer owns the run (the body should stop),
   * `PayloadTooLarge` / `InvalidInput` for data the log cannot take, and
   * `SqlError` when the database cannot be reached.
   */
  readonly emit: (type: string, data?: unknown) => Effect.Effect<number, EmitError>
  /**
   * A journaled step: runs `effect` once per run and records its result in the
   * run's log (a `step.completed` event). When a later attempt replays the
   * body (after a failure, a crash, a hand-back), a step already completed
   * returns its recorded result, decoded with `output`, without running again.
   * Steps are matched by the order the body calls `step` and by name: names
   * are unique per run (`DuplicateStep`), and a replay that calls a step
   * where the journal records another fails the run for good
   * (`NonDeterministic`); a task with `journalMatch: "name"` matches them by
   * name alone. What the body does outside steps runs again on
   * every attempt. An effect whose journal entry is not committed (the worker
   * died just after it) runs again: make it idempotent.
   */
  readonly step: <A, I, E, R>(
    name: string,
    effect: Effect.Effect<NoInfer<A>, E, R>,
    options: StepOptions<A, I, E>
  ) => Effect.Effect<A, E | StepError, R>
  /**
   * A durable sleep: the wake-up time (now, by the program's `Clock`, plus
   * `duration`) is recorded in the run's log (`sleep.started`) at the first
   * call; until it comes, the attempt ends, the run is `waiting` and holds
   * no worker, and any worker claims it again at that time and replays the
   * body, where the sleep returns at once (steps before it return their
   * recorded results). Journaled like a step: named, in the body's order,
   * names unique among the run's steps and sleeps. A wait uses up no
   * attempt. Steps running beside a sleep that suspends are interrupted.
   */
  readonly sleep: (name: string, duration: Duration.DurationInput) => Effect.Effect<void, SleepError>
  /** `sleep` until a time rather than for a duration; returns at once when the time has passed. */
  readonly sleepUntil: (name: string, until: Date | DateTime.DateTime) => Effect.Effect<void, SleepError>
  /**
   * Waits durably for the signal `name` (sent with `Runs.signal` or `POST
   * /v1/runs/:id/signals/:name`) and returns its data, decoded with `schema`
   * (the schema the task declares for it in `signals`, which the server
   * validates what it is sent with). A signal sent before the wait is kept
   * and returned at once. Until it comes, the run is `waiting` and holds no
   * worker, as in a sleep; it is woken when it comes. Past `timeout` (from
   * the first call) the wait fails with `SignalTimeout`, which the body may
   * handle; a signal that comes after that is ignored, by every replay.
   * Journaled like a step (`signal.waiting`, `signal.received`,
   * `signal.timedOut`): named, in the body's order, names unique among the
   * run's steps, sleeps and waits.
   */
  readonly waitForSignal: <A, I>(
    name: string,
    schema: Schema.Schema<A, I, never>,
    options?: WaitForSignalOptions
  ) => Effect.Effect<A, SignalTimeout | SignalError>
  /**
   * Starts a child run of `task` (`parentId`: this run), journaled like a
   * step (`child.started`): a replay gets the same child back without
   * starting another, and a parent that died before its entry was written
   * gets the same child again (the start's idempotency key is
   * `<parent id>/child/<name>`). Cancelling the parent cancels its unfinished
   * children. The child runs on its own, as any run; await it with `await`.
   */
  readonly start: <T extends Any>(
    task: T,
    input: InputOf<T>,
    options?: ChildOptions
  ) => Effect.Effect<Child<OutputOf<T>>, ChildStartError>
  /**
   * The child's output, decoded with its task's output schema; `ChildFailed`
   * when it failed or was cancelled. Until it ends, the attempt ends and the
   * run is `waiting` (`children:<name>`), holding no worker; the child's end
   * wakes it. The result is journaled (`child.completed`) when first seen.
   */
  readonly await: <O>(child: Child<O>) => Effect.Effect<O, ChildFailed | ChildAwaitError>
  /**
   * `await` of many children with one wait: the run is woken once, when the
   * last of them ends. Their outputs in their order; `ChildFailed` of the
   * first (in that order) that failed, once all have ended.
   */
  readonly all: <const C extends ReadonlyArray<Child<any>>>(
    children: C
  ) => Effect.Effect<OutputsOf<C>, ChildFailed | ChildAwaitError>
}

/**
 * Fail a task body with this to end the run at once, without retries
 * (bad input that will never succeed, a refused authorization, ...).
 */
export class PermanentError extends Schema.TaggedError<PermanentError>()("PermanentError", {
  message: Schema.String
}) {}

/** Exponential backoff with full jitter between attempts. */
export interface RetryPolicy {
  readonly maxAttempts: number
  readonly initialDelay: Duration.Duration
  readonly maxDelay: Duration.Duration
  readonly factor: number
}

/** @category defaults */
export const defaultRetry: RetryPolicy = {
  maxAttempts: 3,
  initialDelay: Duration.seconds(1),
  maxDelay: Duration.minutes(5),
  factor: 2
}

/**
 * The delay before the attempt after `attempt` (1-based): `initial * factor^(attempt-1)`
 * capped at `maxDelay`, scaled by a jitter in [0.5, 1) so that runs failing together
 * do not retry together.
 */
export const backoffDelay = (policy: RetryPolicy, attempt: number, random01: number): Duration.Duration => {
  const base = Duration.toMillis(policy.initialDelay) * Math.pow(policy.factor, Math.max(0, attempt - 1))
  const capped = Math.min(base, Duration.toMillis(policy.maxDelay))
  return Duration.millis(Math.round(capped * (0.5 + random01 / 2)))
}

/** A task definition. `R` is what its body needs, provided when the registry is built. */
export interface Task<Name extends string, I, IE, O, OE, E, R> {
  readonly name: Name
  readonly input: Schema.Schema<I, IE>
  readonly output: Schema.Schema<O, OE>
  readonly retry: RetryPolicy
  readonly timeout: Option.Option<Duration.Duration>
  /**
   * How long its finished runs are kept, instead of `RUNSTREAM_RETENTION`;
   * `"off"`: for good. Checked when the registry is built.
   */
  readonly retention?: RetentionInput | undefined
  /** Its concurrency and rate limits per key (see `queue/Limits.ts`); checked when a registry is built. */
  readonly limits: Limits.Limits
  /**
   * The `key` its limits declare: the input field a start without a
   * `concurrencyKey` takes its key from (`domain/LimitKey.ts`); checked when a
   * registry is built. Absent: such starts share the key "".
   */
  readonly limitKey?: LimitKey.Declared | undefined
  /** The signals its body waits for (`ctx.waitForSignal`), by name; checked when a registry is built. */
  readonly signals?: Signals | undefined
  /**
   * The schema of the data of every signal whose name `signals` does not
   * declare: with it, the task takes signals of any valid name (its body
   * picks the names at run time). For adapters such as `runstream/workflow`.
   */
  readonly anySignal?: Schema.Schema<any, any, never> | undefined
  /**
   * How a replay finds its journaled calls (`ctx.step`, `ctx.sleep`, ...):
   * `"position"` (the default) by their order and name, `"name"` by name
   * alone (see `make`).
   */
  readonly journalMatch?: "position" | "name" | undefined
  readonly run: (input: I, ctx: TaskContext) => Effect.Effect<O, E, R>
}

/** Any task, for registries and lookups. */
export type Any = Task<string, any, any, any, any, any, any>

/** The input type a caller passes to start a run of this task. */
export type InputOf<T> = T extends Task<string, infer I, any, any, any, any, any> ? I : never
/** The output type of a task. */
export type OutputOf<T> = T extends Task<string, any, any, infer O, any, any, any> ? O : never
/** What a task's body requires. */
export type ContextOf<T> = T extends Task<string, any, any, any, any, any, infer R> ? R : never

/**
 * Defines a task.
 *
 * ```ts
 * const Count = Task.make("demo.count", {
 *   input: Schema.Struct({ to: Schema.Int }),
 *   output: Schema.Struct({ count: Schema.Int }),
 *   run: ({ to }, ctx) => Effect.as(Effect.forEach(range(1, to), (n) => ctx.emit("tick", { n })), { count: to })
 * })
 * ```
 */
export const make = <const Name extends string, I, IE, O, OE, E, R>(
  name: Name,
  options: {
    readonly input: Schema.Schema<I, IE>
    readonly output: Schema.Schema<O, OE>
    readonly run: (input: I, ctx: TaskContext) => Effect.Effect<O, E, R>
    readonly retry?: {
      readonly maxAttempts?: number | undefined
      readonly initialDelay?: Duration.DurationInput | undefined
      readonly maxDelay?: Duration.DurationInput | undefined
      readonly factor?: number | undefined
    } | undefined
    readonly timeout?: Duration.DurationInput | undefined
    /** How long finished runs of this task are kept (default: `RUNSTREAM_RETENTION`); `"off"`: for good. */
    readonly retention?: RetentionInput | undefined
    /**
     * At most `limit` runs with one `concurrencyKey` running at once, across
     * every worker (runs started without a key share the key ""). `key`: the
     * input field a start without a `concurrencyKey` takes its key from (a
     * string or an integer), for both limits.
     */
    readonly concurrency?: { readonly limit: number; readonly key?: string | undefined } | undefined
    /**
     * At most `limit` attempts with one `concurrencyKey` start per `period`,
     * across every worker; the others wait (`run.throttled`). `key`: as
     * `concurrency`'s (both limits count by one key: the same field, if both name one).
     */
    readonly rateLimit?: {
      readonly limit: number
      readonly period: Duration.DurationInput
      readonly key?: string | undefined
    } | undefined
    /**
     * The signals its body waits for (`ctx.waitForSignal`), by name: the
     * schema of each one's data. A server validates what it is sent with it
     * (400 for data that fails it, or for a name not declared here).
     */
    readonly signals?: Signals | undefined
    /**
     * The schema of the data of any signal `signals` does not name: the task
     * then takes signals of every name, its body choosing them at run time.
     */
    readonly anySignal?: Schema.Schema<any, any, never> | undefined
    /**
     * How a replay finds its journaled calls. `"position"` (the default): by
     * the order the body makes them and by name, so that a replay that
     * strays from its journal fails (`NonDeterministic`). `"name"`: by name
     * alone, for bodies whose concurrent calls come in an order that depends
     * on timing (which of two branches' steps ends first); a call's kind is
     * still checked, but a renamed or reordered body is not caught.
     */
    readonly journalMatch?: "position" | "name" | undefined
  }
): Task<Name, I, IE, O, OE, E, R> => ({
  name,
  input: options.input,
  output: options.output,
  retry: {
    maxAttempts: options.retry?.maxAttempts ?? defaultRetry.maxAttempts,
    initialDelay: Duration.decode(options.retry?.initialDelay ?? defaultRetry.initialDelay),
    maxDelay: Duration.decode(options.retry?.maxDelay ?? defaultRetry.maxDelay),
    factor: options.retry?.factor ?? defaultRetry.factor
  },
  timeout: Option.map(Option.fromNullable(options.timeout), Duration.decode),
  ...(options.retention === undefined ? {} : { retention: options.retention }),
  limits: Limits.fromDefinition(options),
  ...(options.concurrency?.key === undefined && options.rateLimit?.key === undefined
    ? {}
    : { limitKey: LimitKey.fromDefinition(options) }),
  ...(options.signals === undefined ? {} : { signals: options.signals }),
  ...(options.anySignal === undefined ? {} : { anySignal: options.anySignal }),
  ...(options.journalMatch === undefined ? {} : { journalMatch: options.journalMatch }),
  run: options.run
})

/** A registered task with the services its body needs already captured. */
export interface Registered {
  readonly task: Any
  readonly context: Context.Context<never>
}

/** The tasks a program knows: used to validate starts and by the workers. */
export class TaskRegistry extends Context.Tag("runstream/TaskRegistry")<TaskRegistry, {
  readonly get: (name: string) => Option.Option<Registered>
  readonly names: ReadonlyArray<string>
}>() {}

/**
 * A registry of the given tasks. Task names must be unique. The services the
 * bodies need are taken from the layer's context once, when it is built.
 */
export const layerRegistry = <const Tasks extends ReadonlyArray<Any>>(
  ...tasks: Tasks
): Layer.Layer<TaskRegistry, never, ContextOf<Tasks[number]>> =>
  Layer.effect(
    TaskRegistry,
    Effect.gen(function*() {
      const context = (yield* Effect.context<ContextOf<Tasks[number]>>()) as Context.Context<never>
      const byName = new Map<string, Registered>()
      for (const task of tasks) {
        if (byName.has(task.name)) {
          return yield* Effect.dieMessage(`task '${task.name}' is registered twice`)
        }
        if (task.retention !== undefined && parseRetention(task.retention) === undefined) {
          return yield* Effect.dieMessage(`task '${task.name}': retention ${retentionMessage}`)
        }
        // A bad limit stops the program at start-up, not the first run's claim.
        const refused = Limits.check(task.limits) ??
          (task.limitKey === undefined ? undefined : LimitKey.check(task.limitKey, task.input)) ??
          badSignalName(task)
        if (refused !== undefined) {
          return yield* Effect.dieMessage(`task '${task.name}': ${refused}`)
        }
        byName.set(task.name, { task, context })
      }
      return TaskRegistry.of({
        get: (name) => Option.fromNullable(byName.get(name)),
        names: [...byName.keys()]
      })
    })
  )

const isSignalName = Schema.is(SignalName)

/**
 * The schema of the data of a task's signal `name`: the one `signals`
 * declares, else its `anySignal` for a name a signal can carry, if any.
 */
export const signalSchema = (task: Any, name: string): Schema.Schema<any, any, never> | undefined =>
  task.signals !== undefined && Object.hasOwn(task.signals, name)
    ? task.signals[name]
    : isSignalName(name)
    ? task.anySignal
    : undefined

/** Why a task's declared signals cannot be sent to: a name the API cannot carry. */
const badSignalName = (task: Any): string | undefined => {
  const bad = Object.keys(task.signals ?? {}).find((name): boolean => !isSignalName(name))
  return bad === undefined
    ? undefined
    : `signal name '${bad.slice(0, 100)}' is not 1 to 100 letters, digits and _ . : -, starting with a letter or a digit`
}

/** A schema as JSON Schema; null when it has none (a declared type without a JSON Schema annotation). */
const jsonSchemaOf = (schema: Schema.Schema.Any): unknown => {
  try {
    return JSONSchema.make(schema)
  } catch {
    return null
  }
}

/** A task as `GET /v1/tasks` describes it. */
export const describe = (task: Any): TaskInfo => ({
  name: task.name,
  queue: "default",
  input: jsonSchemaOf(task.input),
  output: jsonSchemaOf(task.output),
  retry: {
    maxAttempts: task.retry.maxAttempts,
    initialDelayMs: Duration.toMillis(task.retry.initialDelay),
    maxDelayMs: Duration.toMillis(task.retry.maxDelay),
    factor: task.retry.factor
  },
  timeoutMs: Option.getOrNull(Option.map(task.timeout, Duration.toMillis)),
  concurrency: task.limits.concurrency === null ? null : { limit: task.limits.concurrency },
  rateLimit: task.limits.rateLimit,
  concurrencyKeyField: limitKeyField(task) ?? null,
  retention: retentionOf(task),
  signals: Object.fromEntries(Object.entries(task.signals ?? {}).map(([name, schema]) => [name, jsonSchemaOf(schema)]))
})

/** The input field a start of `task` without a `concurrencyKey` takes its key from, if its limits name one. */
export const limitKeyField = (task: Any): string | undefined =>
  task.limitKey === undefined ? undefined : LimitKey.fieldOf(task.limitKey)

/** A task's own retention as `TaskInfo` shows it (a registered task's parses: the registry checked it). */
const retentionOf = (task: Any): TaskInfo["retention"] => {
  const parsed = task.retention === undefined ? undefined : parseRetention(task.retention)
  return parsed === undefined
    ? null
    : Option.match(parsed, { onNone: () => "off" as const, onSome: (keep) => ({ keepMs: Duration.toMillis(keep) }) })
}

/** Every task of a registry, and every queue with limits, as `GET /v1/tasks` (and RPC `Tasks`) lists them. */
export const describeAll = (registry: TaskRegistry["Type"], queues: QueueLimits["Type"]): typeof TaskList.Type => ({
  tasks: registry.names.flatMap((name) => Option.toArray(Option.map(registry.get(name), ({ task }) => describe(task)))),
  queues: queues.limited.map((name) => {
    const limits = queues.of(name)
    return {
      name,
      concurrency: limits.concurrency === null ? null : { limit: limits.concurrency },
      rateLimit: limits.rateLimit
    }
  })
})
