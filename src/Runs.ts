/**
 * The public service: start, get, list, cancel, follow and await runs.
 * @since 0.1.0
 */
import type { SqlError } from "@effect/sql"
import { Channel, Chunk, Config, Context, type Duration, Effect, Layer, Mailbox, Option, type Scope, Stream } from "effect"
import { AwaitTimeout, InvalidInput, type RunAlreadyFinished, type InvalidCursor, type RunNotFound } from "./domain/Errors.ts"
import type { RunId } from "./domain/Ids.ts"
import { isFinished, type Run, type RunStatus } from "./domain/Run.ts"
import { isTerminalType, type RunEvent } from "./domain/RunEvent.ts"
import type { StartOptions } from "./domain/StartOptions.ts"
import { type BusMessage, EventBus } from "./bus/EventBus.ts"
import * as FairSemaphore from "./internal/FairSemaphore.ts"
import { unstorableInJsonb } from "./internal/jsonb.ts"
import { EventLog } from "./EventLog.ts"
import { Outbox } from "./Outbox.ts"
import * as Start from "./runs/Start.ts"
import type { StartError, StartRequest } from "./runs/Start.ts"
import { type Created, RunStore } from "./RunStore.ts"
import type * as Task from "./Task.ts"

export { StartOptions } from "./domain/StartOptions.ts"

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
  ),
  pageSize: Config.integer("RUNSTREAM_EVENT_PAGE_SIZE").pipe(Config.withDefault(2000)),
  /**
   * How many followed streams may read the database at once in this program.
   * Each read holds a pool connection: a thousand clients resuming together
   * wait here, in order and without a deadline, instead of draining the pool
   * (whose waiters fail after the connect timeout) under everything else.
   */
  streamReads: Config.integer("RUNSTREAM_STREAM_READS").pipe(
    Config.validate({ message: "must be between 1 and 1000", validation: (n) => n >= 1 && n <= 1000 }),
    Config.withDefault(4)
  )
})

/** Pages of `list` and `readEvents` are bounded. */
export const maxPageSize = 1000

/**
 * A cursor into a run's log: a seq is a Postgres `bigint`, but one past 2^53
 * cannot be a real seq and would not even survive JSON, so none is accepted.
 */
const isSeq = (n: number) => Number.isSafeInteger(n) && n >= 0
const afterMessage = `after must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}`

const isStorable = (text: string) => !unstorableInJsonb(JSON.stringify(text))

export const make = Effect.gen(function*() {
  const store = yield* RunStore
  const log = yield* EventLog
  const bus = yield* EventBus
  const outbox = yield* Outbox
  const config = yield* RunsConfig
  const { start, startMany } = yield* Start.make(config)
  // FIFO, one waiter woken per read: see FairSemaphore.
  const streamRead = (yield* FairSemaphore.make(config.streamReads)).withPermit

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

  const events = (runId: RunId, options?: { readonly after?: number | undefined }) =>
    Stream.unwrapScoped(Effect.gen(function*() {
      // Subscribe first: whatever is published from now on is in the
      // subscription, and whatever was committed before is in the log.
      const subscription = yield* bus.subscribe({ runId })
      const run = yield* streamRead(store.get(runId))
      const after = options?.after ?? 0
      if (!isSeq(after)) {
        return yield* new InvalidInput({ message: afterMessage })
      }
      // Seqs only grow and are committed before they are published: a cursor
      // past the log's end was not produced by this run (and would never end).
      if (after > run.lastSeq && !isFinished(run.status)) {
        return yield* new InvalidInput({ message: `after ${after} is beyond the last event (${run.lastSeq}) of run ${runId}` })
      }
      let cursor = after
      let done = isFinished(run.status) && cursor >= run.lastSeq
      let caughtUp = false

      const emit = (batch: ReadonlyArray<RunEvent>) => {
        const out: Array<RunEvent> = []
        for (const event of batch) {
          if (event.seq !== cursor + 1) continue
          out.push(event)
          cursor = event.seq
          if (isTerminalType(event.type)) {
            done = true
            break
          }
        }
        return Chunk.unsafeFromArray(out)
      }

      // Suspended: each read starts after the cursor as it is now, not as it was.
      const readLog = Effect.suspend(() =>
        Effect.map(streamRead(log.read(runId, { after: cursor, limit: config.pageSize })), (rows) => {
          caughtUp = rows.length < config.pageSize
          return emit(rows)
        })
      )

      const onLive = ([batch, closed]: readonly [Chunk.Chunk<BusMessage>, boolean]) => {
        // Only its scope shuts a subscription down, and that scope is this stream's.
        if (closed) return Effect.interrupt
        const live: Array<RunEvent> = []
        for (const message of batch) {
          if (message._tag === "Resync") {
            caughtUp = false
          } else if (message.event.seq > cursor) {
            live.push(message.event)
          }
        }
        // A gap (a message lost or out of order) or a resync: the log has it.
        if (!caughtUp || (live.length > 0 && live[0]!.seq !== cursor + 1)) return readLog
        const chunk = emit(live)
        if (!done && chunk.length < live.length) caughtUp = false
        return Effect.succeed(chunk)
      }
      // No timeout on the wait (one per take is costly): the bus sends a Resync
      // to idle subscriptions (RUNSTREAM_STREAM_IDLE_CHECK).
      const waitLive = Effect.flatMap(subscription.takeAll, onLive)

      // A channel loop, not `Stream.repeatEffectChunkOption`: fewer steps per
      // chunk, which a run pays once per subscriber for each event.
      const loop: Channel.Channel<Chunk.Chunk<RunEvent>, unknown, SqlError.SqlError, unknown, void, unknown> = Channel
        .suspend(() =>
          done ? Channel.void : Channel.flatMap(
            Channel.fromEffect(caughtUp ? waitLive : readLog),
            (chunk) => chunk.length === 0 ? loop : Channel.zipRight(Channel.write(chunk), loop)
          )
        )
      return Stream.fromChannel(loop)
    }))

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
      // From its current end: a valid cursor, so `events` cannot refuse it.
      yield* Stream.runDrain(events(runId, { after: run.lastSeq })).pipe(Effect.catchTag("InvalidInput", Effect.die))
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
