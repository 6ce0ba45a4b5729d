/**
 * The public service: start, get, list, cancel, follow and await runs.
 * @since 0.1.0
 */
import type { SqlError } from "@effect/sql"
import { Config, Context, DateTime, Duration, Effect, Layer, Mailbox, Option, Schema, type Scope, Stream } from "effect"
import { AwaitTimeout, type IdempotencyConflict, InvalidInput, PayloadTooLarge, type RunAlreadyFinished, type InvalidCursor, type RunNotFound, UnknownTask } from "./domain/Errors.ts"
import { makeRunId, type RunId } from "./domain/Ids.ts"
import { isFinished, type Run, type RunStatus } from "./domain/Run.ts"
import type { RunEvent } from "./domain/RunEvent.ts"
import { EventBus } from "./EventBus.ts"
import type * as Handoff from "./internal/Handoff.ts"
import { storableJson, unstorableInJsonb } from "./internal/jsonb.ts"
import { StartOptions } from "./domain/StartOptions.ts"
import { EventLog } from "./EventLog.ts"
import { Outbox } from "./Outbox.ts"
import { afterMessage, type FollowSink, isSeq, RunFollowers } from "./RunFollowers.ts"
import { Queue as RunQueue } from "./Queue.ts"
import { type Created, type NewRun, RunStore } from "./RunStore.ts"
import * as Task from "./Task.ts"

export { StartOptions } from "./domain/StartOptions.ts"

/** One run to start by task name, as the API receives it. */
export interface StartRequest {
  readonly task: string
  readonly input: unknown
  readonly options?: StartOptions | undefined
}

export interface AllEventsFilter {
  readonly task?: string | undefined
  readonly runId?: RunId | undefined
}

export type StartError = UnknownTask | InvalidInput | PayloadTooLarge | IdempotencyConflict | SqlError.SqlError

export class Runs extends Context.Tag("runstream/Runs")<Runs, {
  /** Starts a run of a task with a typed input. */
  readonly start: <T extends Task.Any>(
    task: T,
    input: Task.InputOf<T>,
    options?: StartOptions
  ) => Effect.Effect<Run, StartError>
  /**
   * Starts runs by task name with unchecked inputs, all in one transaction, or
   * none when any is refused. `created` is false for a repeated idempotency key
   * (same task and input); another task or input with it is `IdempotencyConflict`.
   */
  readonly startMany: (requests: ReadonlyArray<StartRequest>) => Effect.Effect<ReadonlyArray<Created>, StartError>
  readonly get: (runId: RunId) => Effect.Effect<Run, RunNotFound | SqlError.SqlError>
  readonly list: (options: {
    readonly status?: RunStatus | undefined
    readonly task?: string | undefined
    readonly limit?: number | undefined
    readonly cursor?: string | undefined
  }) => Effect.Effect<{ readonly runs: ReadonlyArray<Run>; readonly nextCursor: string | null }, InvalidCursor | InvalidInput | SqlError.SqlError>
  readonly cancel: (runId: RunId) => Effect.Effect<Run, RunNotFound | RunAlreadyFinished | SqlError.SqlError>
  /** A page of the log after `after` (for JSON clients). */
  readonly readEvents: (runId: RunId, options: { readonly after: number; readonly limit?: number | undefined }) => Effect.Effect<ReadonlyArray<RunEvent>, RunNotFound | InvalidInput | SqlError.SqlError>
  /**
   * The run's events after `after` (default 0): the log, then live events,
   * each exactly once and in order; ends after the terminal event.
   */
  readonly events: (runId: RunId, options?: { readonly after?: number | undefined }) => Stream.Stream<RunEvent, RunNotFound | InvalidInput | SqlError.SqlError>
  /** Live events of every run (debug), optionally of one task or run. Not replayed. */
  readonly allEvents: (filter?: AllEventsFilter) => Stream.Stream<RunEvent>
  /** Like `allEvents`, but subscribed when this returns (for callers that must not miss the next event). */
  readonly subscribeAll: (filter?: AllEventsFilter) => Effect.Effect<Stream.Stream<RunEvent>, never, Scope.Scope>
  /** Waits, on the run's stream, until the run is finished; returns it. */
  readonly awaitCompletion: (runId: RunId, options?: { readonly timeout?: Duration.DurationInput | undefined }) => Effect.Effect<Run, RunNotFound | AwaitTimeout | SqlError.SqlError>
}>() {}

/** @category config */
export const RunsConfig = Config.all({
  maxInputBytes: Config.integer("RUNSTREAM_MAX_INPUT_BYTES").pipe(
    Config.validate({ message: "must be between 1 KiB and 64 MiB", validation: (n) => n >= 1024 && n <= 64 * 1024 * 1024 }),
    Config.withDefault(1024 * 1024)
  )
})

const allErrors = { errors: "all" } as const

// Built once: `Schema.validate(schema)` derives the type schema and its parser on each call.
const validateOptions = Schema.validate(StartOptions, allErrors)

/** Pages of `list` and `readEvents` are bounded. */
export const maxPageSize = 1000

/** `awaitCompletion` follows a run only to know when it ends. */
const ignoreEvents: FollowSink = { offer: () => true, write: () => Effect.void }

const isStorable = (text: string) => !unstorableInJsonb(JSON.stringify(text))

export const make = Effect.gen(function*() {
  const store = yield* RunStore
  const log = yield* EventLog
  const bus = yield* EventBus
  const outbox = yield* Outbox
  const queue = yield* RunQueue
  const registry = yield* Task.TaskRegistry
  const config = yield* RunsConfig
  const followers = yield* RunFollowers

  const encodeInput = (task: Task.Any, input: unknown, typed: boolean) =>
    Effect.gen(function*() {
      // Every fault of a refused input is reported (bounded), not only the first.
      const encoded = typed
        ? yield* Schema.encodeUnknown(task.input, allErrors)(input)
        : yield* Schema.encodeUnknown(task.input, allErrors)(yield* Schema.decodeUnknown(task.input, allErrors)(input))
      const json = yield* storableJson("input", encoded)
      const bytes = Buffer.byteLength(json)
      if (bytes > config.maxInputBytes) {
        return yield* new PayloadTooLarge({ what: "input", bytes, limit: config.maxInputBytes })
      }
      return encoded
    }).pipe(
      Effect.catchTag("ParseError", (error) =>
        Effect.fail(InvalidInput.fromParseError(`input of task '${task.name}'`, error)))
    )

  const prepare = (request: StartRequest, typed: boolean) =>
    Effect.gen(function*() {
      const registered = yield* Option.match(registry.get(request.task), {
        onNone: () => Effect.fail(new UnknownTask({ task: request.task })),
        onSome: Effect.succeed
      })
      const task = registered.task
      // Typed callers cannot pass bad options, but JSON and RPC callers can.
      const options = request.options === undefined ? {} : yield* validateOptions(request.options).pipe(
        Effect.mapError((error) => InvalidInput.fromParseError("options", error))
      )
      const input = yield* encodeInput(task, request.input, typed)
      return {
        id: yield* makeRunId,
        task: task.name,
        queue: options.queue ?? "default",
        input,
        maxAttempts: options.maxAttempts ?? task.retry.maxAttempts,
        priority: options.priority ?? 0,
        timeoutMs: options.timeoutMs ?? Option.getOrNull(Option.map(task.timeout, Duration.toMillis)),
        idempotencyKey: options.idempotencyKey ?? null,
        runAt: options.runAt === undefined ? null : DateTime.toDate(options.runAt)
      }
    })

  /**
   * Creates the runs; a run due now whose task an idle worker of this program
   * runs is created leased to it and handed over after the commit (see
   * `internal/Handoff.ts`). The statement stays interruptible (its
   * reservations are then given back; should it have committed, the run's
   * lease expires and it is retried); what follows it is not, so a run created
   * leased reaches its worker.
   */
  const insert = (requests: ReadonlyArray<StartRequest>, typed: boolean) =>
    Effect.gen(function*() {
      const prepared = yield* Effect.forEach(requests, (request) => prepare(request, typed))
      return yield* Effect.uninterruptibleMask((restore) => {
        const takers = prepared.map((run) => run.runAt === null ? queue.handoff.reserve(run.queue, run.task) : undefined)
        const runs = prepared.map((run, i) => {
          const taker = takers[i]
          return taker === undefined ? run : { ...run, takenBy: { workerId: taker.workerId, leaseMs: taker.leaseMs } }
        })
        const cancelAll = Effect.sync(() => takers.forEach((taker) => taker?.cancel()))
        return restore(store.create(runs)).pipe(
          Effect.onError(() => cancelAll),
          Effect.tap((created) => handOver(runs, takers, created))
        )
      })
    })

  /**
   * After the commit: the taken runs to their workers, a wake-up for the
   * others' queues, then the relay's hint. In that order: the fibers woken
   * run in the order they were woken, and a body should not wait behind the
   * relay's statement.
   */
  const handOver = (
    runs: ReadonlyArray<NewRun>,
    takers: ReadonlyArray<Handoff.Taker | undefined>,
    created: ReadonlyArray<Created>
  ) =>
    Effect.gen(function*() {
      const toWake = new Set<string>()
      for (let i = 0; i < runs.length; i++) {
        const run = runs[i]!
        const taker = takers[i]
        const isNew = created[i]!.created
        if (taker === undefined) {
          if (isNew) toWake.add(run.queue)
        } else if (!isNew) {
          // A repeated idempotency key: the existing run was returned, nothing to hand over.
          taker.cancel()
        } else {
          yield* taker.take({
            runId: run.id,
            task: run.task,
            queue: run.queue,
            input: run.input,
            attempt: 1,
            maxAttempts: run.maxAttempts,
            timeoutMs: run.timeoutMs,
            priority: run.priority,
            runAt: DateTime.toDate(created[i]!.run.runAt)
          })
        }
      }
      for (const queueName of toWake) yield* queue.wake(queueName)
      yield* outbox.written
    })

  const start = <T extends Task.Any>(task: T, input: Task.InputOf<T>, options?: StartOptions) =>
    Effect.map(insert([{ task: task.name, input, options }], true), (created) => created[0]!.run)

  const startMany = (requests: ReadonlyArray<StartRequest>) => insert(requests, false)

  const list: Runs["Type"]["list"] = (options) => {
    const limit = options.limit ?? 50
    if (!Number.isInteger(limit) || limit < 1 || limit > maxPageSize) {
      return Effect.fail(new InvalidInput({ message: `limit must be an integer from 1 to ${maxPageSize}` }))
    }
    // A name Postgres cannot hold in a parameter is bad input, not a database error.
    if (options.task !== undefined && !isStorable(options.task)) {
      return Effect.fail(new InvalidInput({ message: "task may not contain U+0000 or unpaired surrogates" }))
    }
    return store.list({ ...options, limit })
  }

  const cancel = (runId: RunId) => Effect.tap(store.cancel(runId), () => outbox.written)

  const readEvents: Runs["Type"]["readEvents"] = (runId, options) => {
    const limit = options.limit ?? maxPageSize
    if (!Number.isInteger(limit) || limit < 1 || limit > maxPageSize) {
      return Effect.fail(new InvalidInput({ message: `limit must be an integer from 1 to ${maxPageSize}` }))
    }
    if (!isSeq(options.after)) {
      return Effect.fail(new InvalidInput({ message: afterMessage }))
    }
    return Effect.zipRight(store.get(runId), log.read(runId, { after: options.after, limit }))
  }

  // The follow-a-run stream is RunFollowers': one reader per run shared by its followers.
  const events: Runs["Type"]["events"] = (runId, options) => followers.events(runId, options)

  const subscribeAll: Runs["Type"]["subscribeAll"] = (filter) =>
    Effect.map(
      bus.subscribe({ task: filter?.task, runId: filter?.runId }),
      (subscription) =>
        Mailbox.toStream(subscription).pipe(
          Stream.filterMap((message) =>
            message._tag === "Event" && (filter?.task === undefined || filter.task === message.task)
              ? Option.some(message.event)
              : Option.none()
          )
        )
    )

  const allEvents: Runs["Type"]["allEvents"] = (filter) => Stream.unwrapScoped(subscribeAll(filter))

  const awaitCompletion: Runs["Type"]["awaitCompletion"] = (runId, options) =>
    Effect.gen(function*() {
      const run = yield* store.get(runId)
      if (isFinished(run.status)) return run
      // From its current end: a valid cursor, so `follow` cannot refuse it.
      yield* followers.follow(runId, { after: run.lastSeq }, ignoreEvents).pipe(Effect.catchTag("InvalidInput", Effect.die))
      return yield* store.get(runId)
    }).pipe(
      options?.timeout === undefined ? (self) => self : Effect.timeoutFail({
        duration: options.timeout,
        onTimeout: () => new AwaitTimeout({ runId })
      })
    )

  return Runs.of({
    start,
    startMany,
    get: store.get,
    list,
    cancel,
    readEvents,
    events,
    allEvents,
    subscribeAll,
    awaitCompletion
  })
})

export const layer = Layer.effect(Runs, make)
