/**
 * The public service: start, get, list, cancel, signal, follow and await runs.
 * @since 0.1.0
 */
import type { SqlError } from "@effect/sql"
import { Config, Context, type Duration, Effect, Layer, Mailbox, Schema, type Scope, Stream } from "effect"
import { AwaitTimeout, InvalidInput, type RunAlreadyFinished, type InvalidCursor, type RunNotFound } from "./domain/Errors.ts"
import type { RunId } from "./domain/Ids.ts"
import { isFinished, type Run } from "./domain/Run.ts"
import type { RunEvent } from "./domain/RunEvent.ts"
import type { SignalSent } from "./domain/Signal.ts"
import { RunFilter } from "./domain/RunFilter.ts"
import type { StartOptions } from "./domain/StartOptions.ts"
import { EventBus } from "./bus/EventBus.ts"
import { FanoutConfig } from "./bus/Fanout.ts"
import { EventLog } from "./EventLog.ts"
import * as Metrics from "./metrics/Metrics.ts"
import { Outbox } from "./Outbox.ts"
import { afterMessage, type FollowSink, isSeq, RunFollowers } from "./RunFollowers.ts"
import * as Signal from "./runs/Signal.ts"
import * as Start from "./runs/Start.ts"
import type { StartError, StartRequest } from "./runs/Start.ts"
import { type Created, RunStore } from "./RunStore.ts"
import type * as Task from "./Task.ts"

export { StartOptions } from "./domain/StartOptions.ts"

export type { SignalError } from "./runs/Signal.ts"
export type { StartError, StartRequest } from "./runs/Start.ts"

export interface AllEventsFilter {
  readonly task?: string | undefined
  readonly runId?: RunId | undefined
}

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
  /** Newest first, every filter given applied. */
  readonly list: (options: RunFilter & {
    readonly limit?: number | undefined
    readonly cursor?: string | undefined
  }) => Effect.Effect<{ readonly runs: ReadonlyArray<Run>; readonly nextCursor: string | null }, InvalidCursor | InvalidInput | SqlError.SqlError>
  readonly cancel: (runId: RunId) => Effect.Effect<Run, RunNotFound | RunAlreadyFinished | SqlError.SqlError>
  /**
   * Sends the signal `name` to a run, with `data` as JSON carries it (the
   * encoded side of the schema the run's task declares for the name, in
   * `signals`: refused with `InvalidInput` when it fails it or the task
   * declares no such signal, `UnknownTask` when this program does not have
   * the task). The first signal of a name is kept, until the run's body
   * waits for it (`ctx.waitForSignal`) or at once when it waits already;
   * `created` is false for a later one, which changes nothing. A finished
   * run refuses it (`RunAlreadyFinished`).
   */
  readonly signal: (runId: RunId, name: string, data: unknown) => Effect.Effect<SignalSent, Signal.SignalError>
  /**
   * Starts a new run of the run's task with its input, `replayOf` it: with
   * its queue, priority, maxAttempts, timeoutMs and concurrencyKey unless `options` says
   * otherwise, and with no idempotency key or `runAt` unless `options` gives one.
   */
  readonly replay: (runId: RunId, options?: StartOptions) => Effect.Effect<Created, RunNotFound | StartError>
  /** A page of the log after `after` (for JSON clients). */
  readonly readEvents: (runId: RunId, options: { readonly after: number; readonly limit?: number | undefined }) => Effect.Effect<ReadonlyArray<RunEvent>, RunNotFound | InvalidInput | SqlError.SqlError>
  /**
   * The run's events after `after` (default 0): the log, then live events,
   * each exactly once and in order; ends after the terminal event.
   */
  readonly events: (runId: RunId, options?: { readonly after?: number | undefined }) => Stream.Stream<RunEvent, RunNotFound | InvalidInput | SqlError.SqlError>
  /** Live events of every run (debug), optionally of one task or run. Not replayed. */
  readonly allEvents: (filter?: AllEventsFilter) => Stream.Stream<RunEvent>
  /**
   * Like `allEvents`, but subscribed when this returns (for callers that must
   * not miss the next event), as a mailbox the caller may end (with an `E` of
   * its choice). Bounded like a bus subscription: a consumer that falls
   * behind loses the oldest events (`RUNSTREAM_SUBSCRIBER_BUFFER`).
   */
  readonly subscribeAll: <E = never>(filter?: AllEventsFilter) => Effect.Effect<Mailbox.Mailbox<RunEvent, E>, never, Scope.Scope>
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

/** Pages of `list` and `readEvents` are bounded. */
export const maxPageSize = 1000

/** `awaitCompletion` follows a run only to know when it ends. */
const ignoreEvents: FollowSink = { offer: () => true, write: () => Effect.void }

// Typed callers can still pass a bad prefix, queue name, or a task Postgres cannot hold in a
// parameter (bad input, not a database error); built once (see runs/Start.ts).
const validateFilter = Schema.validate(RunFilter, { errors: "all" })

/** What a replay keeps of its original: the options a start could have given it (within their bounds). */
const optionsOf = (run: Run): StartOptions => {
  const within = (n: number, min: number, max: number) => Number.isInteger(n) && n >= min && n <= max
  return {
    queue: run.queue,
    priority: run.priority,
    ...(within(run.maxAttempts, 1, 100) ? { maxAttempts: run.maxAttempts } : {}),
    ...(run.timeoutMs !== null && within(run.timeoutMs, 1, 24 * 60 * 60 * 1000) ? { timeoutMs: run.timeoutMs } : {}),
    ...(run.concurrencyKey === undefined ? {} : { concurrencyKey: run.concurrencyKey })
  }
}

export const make = Effect.gen(function*() {
  const store = yield* RunStore
  const metrics = yield* Metrics.option
  const log = yield* EventLog
  const bus = yield* EventBus
  const outbox = yield* Outbox
  const config = yield* RunsConfig
  const { start, startMany } = yield* Start.make(config)
  const { signal } = yield* Signal.make
  const followers = yield* RunFollowers
  const { subscriberBuffer } = yield* FanoutConfig

  const list: Runs["Type"]["list"] = (options) => {
    const limit = options.limit ?? 50
    if (!Number.isInteger(limit) || limit < 1 || limit > maxPageSize) {
      return Effect.fail(new InvalidInput({ message: `limit must be an integer from 1 to ${maxPageSize}` }))
    }
    return validateFilter(options).pipe(
      Effect.mapError((error) => InvalidInput.fromParseError("the list's filter", error)),
      Effect.zipRight(store.list({ ...options, limit }))
    )
  }

  const replay: Runs["Type"]["replay"] = (runId, options) =>
    Effect.flatMap(store.get(runId), (original) =>
      Effect.map(
        startMany([{ task: original.task, input: original.input, options: { ...optionsOf(original), ...options }, replayOf: original.id }]),
        (created) => created[0]!
      ))

  // A waiting run cancelled here (the run, or one of its descendants) finishes here: no worker counts it.
  const cancel = (runId: RunId) =>
    Effect.flatMap(store.cancel(runId), ({ ended, run }) =>
      Effect.as(
        Effect.zipRight(
          Effect.sync(() => {
            for (const task of ended) metrics?.waitingCancelled(task)
          }),
          outbox.written
        ),
        run
      ))

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

  // One fiber moves the subscription's events into the caller's mailbox: an
  // RPC stream returns that mailbox as it is, without a chain of stream stages.
  const subscribeAll = <E = never>(filter?: AllEventsFilter) =>
    Effect.gen(function*() {
      const subscription = yield* bus.subscribe({ task: filter?.task, runId: filter?.runId })
      const events = yield* Mailbox.make<RunEvent, E>({ capacity: subscriberBuffer, strategy: "sliding" })
      yield* Effect.forkScoped(Effect.gen(function*() {
        while (true) {
          const [messages, done] = yield* subscription.takeAll
          for (const message of messages) {
            // A run's subscription is not filtered by task on the bus; a Resync needs no answer here (nothing is replayed).
            if (message._tag === "Event" && (filter?.task === undefined || filter.task === message.task)) {
              events.unsafeOffer(message.event)
            }
          }
          if (done) return yield* events.end
        }
      }))
      return events
    })

  const allEvents: Runs["Type"]["allEvents"] = (filter) =>
    Stream.unwrapScoped(Effect.map(subscribeAll(filter), (events) => Mailbox.toStream(events)))

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
    // With its children (bounded): what `GET /v1/runs/:id` and RPC `Get` answer.
    get: store.getWithChildren,
    list,
    cancel,
    signal,
    replay,
    readEvents,
    events,
    allEvents,
    subscribeAll,
    awaitCompletion
  })
})

export const layer = Layer.effect(Runs, make)
