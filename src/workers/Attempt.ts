/**
 * One attempt of a claimed run: its input decoded, its body run with its
 * timeout and its `TaskContext`, its output encoded and checked; then how it
 * ended, as recorded (`outcomeOf`): succeeded, failed, retrying after a
 * backoff, cancelled, or released (handed back). What a failure records
 * (`runErrorOf`) and which failures no retry can cure (`isPermanent`) are
 * decided here.
 * @since 0.2.0
 */
import { SqlClient } from "@effect/sql"
import {
  Cause,
  Context,
  DateTime,
  Duration,
  Effect,
  Either,
  Exit,
  FiberRef,
  FiberRefs,
  HashMap,
  Option,
  type ParseResult,
  Random,
  Runtime,
  RuntimeFlags,
  Schema
} from "effect"
import { InvalidInput, LeaseLost } from "../domain/Errors.ts"
import type { RunId } from "../domain/Ids.ts"
import type { RunError } from "../domain/Run.ts"
import {
  childCompletedType,
  childStartedType,
  journalTypes,
  signalReceivedType,
  signalTimedOutType,
  signalWaitingType,
  sleepStartedType,
  stepCompletedType,
  TaskEventType
} from "../domain/RunEvent.ts"
import { SignalNotDeclared } from "../domain/Signal.ts"
import { EventLog } from "../EventLog.ts"
import { interruptWithin } from "../internal/interruptWithin.ts"
import { storableJson, storableText } from "../internal/jsonb.ts"
import type { Claim } from "../queue/Claiming.ts"
import type { Outcome } from "../queue/RunQueue.ts"
import * as Signal from "../runs/Signal.ts"
import * as Task from "../Task.ts"
import * as Children from "./Children.ts"
import type { StopReason } from "./InFlight.ts"
import * as Journal from "./Journal.ts"
import type { Writer } from "./Writer.ts"

/** A body's attempt ran out of time. */
export class TaskTimeout extends Schema.TaggedError<TaskTimeout>()("TaskTimeout", {
  timeoutMs: Schema.Number
}) {
  override get message() {
    return `the attempt took longer than ${this.timeoutMs} ms`
  }
}

/**
 * The attempt ended by a durable wait that is not over (a sleep whose time
 * has not come, a signal not sent, children not done: see `Journal`):
 * recorded as a `waiting` end, never seen by a task's code.
 */
export class Suspended extends Schema.TaggedError<Suspended>()("Suspended", {
  until: Schema.Number,
  waitingFor: Schema.String,
  children: Schema.optional(Schema.Array(Schema.String))
}) {}

/** The claimed run's input does not decode with its task's schema (the task changed since the start). */
export class InputInvalid extends Schema.TaggedError<InputInvalid>()("InputInvalid", {
  message: Schema.String
}) {}

/** The body's output does not encode with its task's schema, or cannot be stored. */
export class OutputInvalid extends Schema.TaggedError<OutputInvalid>()("OutputInvalid", {
  message: Schema.String
}) {}

/**
 * A run of a task this worker does not have (a claim takes only runs of its
 * tasks; a run handed over or claimed by an older pool may not). Recorded
 * under the tag a start gives the same fault, `UnknownTask`.
 */
export class TaskNotRegistered extends Schema.TaggedError<TaskNotRegistered>()("UnknownTask", {
  task: Schema.String
}) {
  override get message() {
    return `task '${this.task}' is not registered with this worker`
  }
}

const maxMessage = 2000

/**
 * Errors that no retry can cure. An output that fails its schema or cannot be
 * stored is one: the same input gives the same output again. So is a replay
 * that does not match its journal, or a step name used twice: the same code
 * does the same again.
 */
export const isPermanent = (tag: string) =>
  tag === "PermanentError" || tag === "InputInvalid" || tag === "OutputInvalid" || tag === "UnknownTask" ||
  tag === "NonDeterministic" || tag === "DuplicateStep" || tag === "SignalNotDeclared" || tag === "ChildFailed"

/**
 * What is recorded of a failed attempt: the error's tag and message, bounded,
 * and storable (it goes into a batch with other runs' ends: text Postgres
 * cannot store would fail them all).
 */
export const runErrorOf = (cause: Cause.Cause<unknown>): RunError => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value as { readonly _tag?: unknown; readonly message?: unknown } | null
    const tag = typeof error?._tag === "string" ? error._tag : "Error"
    const message = typeof error?.message === "string" && error.message.length > 0 ? error.message : String(error)
    return { tag: storableText(tag.slice(0, 100)), message: storableText(message.slice(0, maxMessage)), retryable: !isPermanent(tag) }
  }
  const defect = Cause.squash(cause)
  const message = defect instanceof Error ? `${defect.name}: ${defect.message}` : String(defect)
  return { tag: "Defect", message: storableText(message.slice(0, maxMessage)), retryable: true }
}

const inputInvalid = (error: ParseResult.ParseError) => new InputInvalid({ message: error.message })
const outputInvalid = (error: ParseResult.ParseError) => new OutputInvalid({ message: error.message })

/**
 * Goes on with a decoding's result: at once when it is already there (a
 * schema without asynchronous parts decodes to an `Either`), else once it is.
 * Runs of quick tasks spend a fair share of their cost in such steps.
 */
const afterDecoding = <A, B, E, R>(
  decoded: Effect.Effect<A, ParseResult.ParseError>,
  onFailure: (error: ParseResult.ParseError) => unknown,
  f: (a: A) => Effect.Effect<B, E, R>
): Effect.Effect<B, unknown, R> => {
  if (!Either.isEither(decoded)) return Effect.flatMap(Effect.mapError(decoded, onFailure), f)
  const result = decoded as Either.Either<A, ParseResult.ParseError>
  return Either.isRight(result) ? f(result.right) : Effect.fail(onFailure(result.left))
}

/**
 * Says that a body did not end within the grace after its interruption: it is
 * abandoned (left running detached) and its run moves on.
 */
export const logAbandoned = (claim: Claim, reason: string, grace: Duration.Duration) =>
  Effect.logWarning(
    `attempt ${claim.attempt} of ${claim.runId} did not end within ${
      Duration.format(grace)
    } of its interruption (${reason}); abandoned, it still runs detached`
  )

export interface Attempts {
  /**
   * The attempt itself: decode, run with its timeout, encode. Fails with what
   * is recorded. Runs in the run's own fiber, which starts from `runtimeOf`
   * its task with the run's log annotations (`annotationsOf`) instead of
   * wrapping the body in `provide` and `annotateLogs` (which restore them
   * afterwards): about a tenth of a run's cost on the throughput bench.
   */
  readonly run: (claim: Claim) => Effect.Effect<unknown, unknown>
  /**
   * How the attempt ended, as recorded; undefined when its lease was lost.
   * Plain code: it runs when the run's fiber ends, for every run.
   */
  readonly outcomeOf: (
    claim: Claim,
    exit: Exit.Exit<unknown, unknown>,
    stop: StopReason | undefined
  ) => Outcome | undefined
  /** The runtime a run's fiber starts from: the pool's, with the services its task was registered with. */
  readonly runtimeOf: (task: string) => Runtime.Runtime<never>
  /** The log annotations of a run's fiber. */
  readonly annotationsOf: (claim: Claim) => HashMap.HashMap<string, unknown>
}

/**
 * Each task as its attempts need it, prepared once: its decoder and encoder,
 * and the runtime its runs' fibers start from (`poolRuntime`'s fiber refs
 * and context, with the services the task was registered with).
 */
export const make = (options: {
  readonly poolRuntime: Runtime.Runtime<never>
  readonly writer: Writer
  /** How long an interrupted body may take to end before it is abandoned. */
  readonly shutdownGrace: Duration.Duration
}) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const sql = yield* SqlClient.SqlClient
    const registry = yield* Task.TaskRegistry
    const children = yield* Children.make
    const { poolRuntime, shutdownGrace, writer } = options
    // Bodies must be interruptible (stops interrupt them), whatever the flags of the fiber that built the pool.
    const runtimeWith = (context: Context.Context<never>) =>
      Runtime.make({
        context,
        fiberRefs: poolRuntime.fiberRefs,
        runtimeFlags: RuntimeFlags.enable(poolRuntime.runtimeFlags, RuntimeFlags.Interruption)
      })
    const prepared = new Map(registry.names.map((name) => {
      const { context, task } = Option.getOrThrow(registry.get(name))
      return [name, {
        task,
        decode: Schema.decodeUnknown(task.input),
        encode: Schema.encodeUnknown(task.output),
        runtime: runtimeWith(Context.merge(poolRuntime.context, context)),
        timeoutMs: Option.getOrUndefined(Option.map(task.timeout, Duration.toMillis))
      }]
    }))
    // A run of a task this pool lacks fails at once with TaskNotRegistered (see `run`).
    const unknownTaskRuntime = runtimeWith(poolRuntime.context)
    const baseAnnotations = FiberRefs.getOrDefault(poolRuntime.fiberRefs, FiberRef.currentLogAnnotations)
    // The pool's annotations with each attempt number, made once: a run's own
    // adds its id alone (a persistent map's insertion costs as much as the fork).
    const byAttempt: Array<HashMap.HashMap<string, unknown>> = []
    const withAttempt = (attempt: number) =>
      attempt < 16 ? (byAttempt[attempt] ??= HashMap.set(baseAnnotations, "attempt", attempt)) : HashMap.set(baseAnnotations, "attempt", attempt)

    /** Appends an event of `claim`'s attempt: stored only while the attempt holds its run. */
    const append = (claim: Claim, type: string, data: unknown) =>
      Effect.gen(function*() {
        yield* log.checkSize(yield* storableJson("event data", data))
        const seq = yield* writer.emit({ runId: claim.runId, attempt: claim.attempt, type, data: data ?? null })
        if (typeof seq !== "number") {
          return yield* new LeaseLost({ runId: claim.runId, attempt: claim.attempt })
        }
        return seq
      })

    const emit = (claim: Claim, type: string, data: unknown) =>
      Schema.is(TaskEventType)(type)
        ? append(claim, type, data)
        : Effect.fail(
          new InvalidInput({
            message: `event type '${String(type).slice(0, 100)}' is empty, too long or reserved (run.*, ${
              journalTypes.join(", ")
            })`
          })
        )

    /** A wait's entry as the event it is written as: its deadline, or how it ended. */
    const appendSignal = (claim: Claim, entry: Journal.SignalEntry) => {
      const { name, position } = entry
      const outcome = entry.outcome
      return outcome === undefined
        ? append(claim, signalWaitingType, {
          name,
          position,
          until: entry.until === undefined || entry.until === null ? null : new Date(entry.until).toISOString()
        })
        : outcome._tag === "received"
        ? append(claim, signalReceivedType, { name, position, data: outcome.data })
        : append(claim, signalTimedOutType, { name, position })
    }

    /** The attempt's journal, made at its body's first `ctx.step`, `ctx.sleep` or `ctx.waitForSignal`. */
    const journalOf = (claim: Claim) =>
      Journal.make({
        runId: claim.runId,
        byName: prepared.get(claim.task)?.task.journalMatch === "name",
        load: log.readOfTypes(claim.runId, journalTypes),
        readSignal: (name) => Signal.read(sql, claim.runId, name),
        record: (entry) =>
          entry._tag === "step"
            ? append(claim, stepCompletedType, { name: entry.name, position: entry.position, output: entry.output })
            : entry._tag === "signal"
            ? appendSignal(claim, entry)
            : entry._tag === "child"
            ? append(claim, childStartedType, {
              name: entry.name,
              position: entry.position,
              childId: entry.childId,
              task: entry.task
            })
            : append(claim, sleepStartedType, {
              name: entry.name,
              position: entry.position,
              until: new Date(entry.until).toISOString()
            }),
        recordResult: (result) =>
          append(claim, childCompletedType, {
            name: result.name,
            childId: result.childId,
            ...(result.result._tag === "output"
              ? { output: result.result.output }
              : { error: { ...result.result.error, status: result.result.status } })
          }),
        startChild: (start) => children.start(claim.runId, start),
        childStates: children.states
      })

    /**
     * The output is written in the run and its run.succeeded event: refused
     * here, it fails this run alone instead of the group commit it would join.
     */
    const storableOutput = (encoded: unknown) => {
      const json = storableJson("output", encoded)
      if (Either.isLeft(json)) return Effect.fail(new OutputInvalid({ message: json.left.message }))
      const size = log.checkSize(json.right)
      if (Either.isLeft(size)) return Effect.fail(new OutputInvalid({ message: `output: ${size.left.message}` }))
      return Effect.succeed(encoded)
    }

    const run = (claim: Claim): Effect.Effect<unknown, unknown> => {
      const entry = prepared.get(claim.task)
      if (entry === undefined) return Effect.fail(new TaskNotRegistered({ task: claim.task }))
      const { decode, encode, task } = entry
      return afterDecoding(decode(claim.input), inputInvalid, (input) => {
        const timeoutMs = claim.timeoutMs ?? entry.timeoutMs
        let journal: Journal.Journal | undefined
        const context: Task.TaskContext = {
          runId: claim.runId,
          attempt: claim.attempt,
          emit: (type, data) => emit(claim, type, data),
          step: (name, effect, options) => (journal ??= journalOf(claim)).step(name, effect, options),
          sleep: (name, duration) =>
            (journal ??= journalOf(claim)).sleep(name, (now) => now + Duration.toMillis(Duration.decode(duration))),
          sleepUntil: (name, until) =>
            (journal ??= journalOf(claim)).sleep(name, () => until instanceof Date ? until.getTime() : DateTime.toEpochMillis(until)),
          waitForSignal: (name, schema, options) => {
            // A signal the task does not declare could never be sent (the server validates by the declaration).
            if (Task.signalSchema(task, name) === undefined) {
              return Effect.fail(new SignalNotDeclared({ task: task.name, name }))
            }
            const timeout = options?.timeout === undefined ? undefined : Duration.decode(options.timeout)
            const timeoutMs = timeout === undefined || !Duration.isFinite(timeout) ? undefined : Duration.toMillis(timeout)
            return (journal ??= journalOf(claim)).waitForSignal(name, schema, timeoutMs)
          },
          start: (task, input, options) => (journal ??= journalOf(claim)).start(task, input, options),
          await: (child) => Effect.map((journal ??= journalOf(claim)).awaitAll([child]), ([output]) => output),
          all: (handles) => (journal ??= journalOf(claim)).awaitAll(handles)
        }
        const body = task.run(input, context)
        // A replay that broke its journal fails the attempt (and, permanent,
        // the run) whatever the body did with the error: one continuation
        // either way, as the `flatMap` it replaces, for runs without steps.
        // Else a durable wait that suspended the attempt ends it `waiting`,
        // whatever the body made of its interruption.
        return Effect.matchCauseEffect(
          timeoutMs === undefined ? body : body.pipe(
            // The attempt ends at its timeout even if the body's finalizers hang.
            interruptWithin(shutdownGrace, logAbandoned(claim, "timeout", shutdownGrace)),
            Effect.timeoutFail({ duration: Duration.millis(timeoutMs), onTimeout: () => new TaskTimeout({ timeoutMs }) })
          ),
          {
            onFailure: (cause) => {
              if (journal === undefined) return Effect.failCause(cause)
              const broken = journal.broken()
              if (broken !== undefined) return Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : Effect.fail(broken)
              const suspended = journal.suspended()
              return suspended === undefined ? Effect.failCause(cause) : Effect.fail(new Suspended(suspended))
            },
            onSuccess: (output) => {
              if (journal === undefined) return afterDecoding(encode(output), outputInvalid, storableOutput)
              const broken = journal.broken()
              if (broken !== undefined) return Effect.fail(broken)
              const suspended = journal.suspended()
              return suspended === undefined
                ? afterDecoding(encode(output), outputInvalid, storableOutput)
                : Effect.fail(new Suspended(suspended))
            }
          }
        )
      }) as Effect.Effect<unknown, unknown>
    }

    const runtimeOf = (task: string) => prepared.get(task)?.runtime ?? unknownTaskRuntime

    const outcomeOf: Attempts["outcomeOf"] = (claim, exit, stop) => {
      if (stop === "cancel") return { _tag: "cancelled" }
      if (stop === "shutdown") return { _tag: "released", reason: "worker shutdown" }
      if (stop === "leaseLost") return undefined
      if (Exit.isSuccess(exit)) return { _tag: "succeeded", output: exit.value ?? null }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) {
        if (failure.value instanceof LeaseLost) return undefined
        if (failure.value instanceof Suspended) {
          const { children, until, waitingFor } = failure.value
          // A wait without a time (a signal without a timeout, children) is woken by what it waits for.
          return {
            _tag: "waiting",
            until: Number.isFinite(until) ? new Date(until) : null,
            waitingFor,
            ...(children === undefined ? {} : { children: children as ReadonlyArray<RunId> })
          }
        }
      }
      if (Cause.isInterruptedOnly(exit.cause)) return { _tag: "released", reason: "interrupted" }
      const error = runErrorOf(exit.cause)
      if (!error.retryable || claim.attempt >= claim.maxAttempts) return { _tag: "failed", error }
      const policy = prepared.get(claim.task)?.task.retry ?? Task.defaultRetry
      // The `Random` of the run's fiber as it began (a body's own `withRandom` ended with it).
      const random = Runtime.runSync(runtimeOf(claim.task), Random.next)
      return { _tag: "retrying", error, delayMs: Duration.toMillis(Task.backoffDelay(policy, claim.attempt, random)) }
    }

    return {
      run,
      outcomeOf,
      runtimeOf,
      annotationsOf: (claim) => HashMap.set(withAttempt(claim.attempt), "runId", claim.runId)
    } satisfies Attempts
  })
