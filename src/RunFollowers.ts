/**
 * Following a run: its log after a cursor, then its live events, each exactly
 * once and in order, ending after the terminal event.
 *
 * A followed run has one reader in this program, shared by all its followers:
 * one bus subscription, one log read per gap, and each batch of events built
 * once, so that a consumer can encode it once (`FeedBatch` is the key an SSE
 * response caches its frame under) and hand the same bytes to every socket.
 * The reader offers each batch to its followers without waiting; a follower
 * whose buffer is full leaves the live feed and reads the log from its own
 * cursor until it has caught up, then joins again: a slow client never holds
 * the others back, and never loses an event.
 * @since 0.1.0
 */
import type { SqlError } from "@effect/sql"
import { type Cause, Channel, Chunk, Config, Context, Deferred, Effect, Exit, Fiber, FiberId, Layer, Mailbox, type Scope, Stream } from "effect"
import { InvalidInput, type RunNotFound } from "./domain/Errors.ts"
import type { RunId } from "./domain/Ids.ts"
import { isFinished } from "./domain/Run.ts"
import { isTerminalType, maxSeq, type RunEvent } from "./domain/RunEvent.ts"
import { EventBus } from "./bus/EventBus.ts"
import { EventLog } from "./EventLog.ts"
import * as FairSemaphore from "./internal/FairSemaphore.ts"
import { RunStore } from "./RunStore.ts"

export type FollowError = RunNotFound | InvalidInput | SqlError.SqlError

/**
 * Consecutive events of one run, in order; a terminal event is always the
 * last. A batch of the shared feed is the same object for every follower.
 */
export class FeedBatch {
  constructor(readonly events: ReadonlyArray<RunEvent>) {}
  get first(): number {
    return this.events[0]!.seq
  }
  get last(): number {
    return this.events[this.events.length - 1]!.seq
  }
  get terminal(): boolean {
    return isTerminalType(this.events[this.events.length - 1]!.type)
  }
  /** The events after `seq` (a follower that is ahead of the feed). */
  after(seq: number): FeedBatch {
    return new FeedBatch(this.events.filter((event) => event.seq > seq))
  }
}

/** Where a follower's events go. */
export interface FollowSink {
  /**
   * A batch of the live feed, from the run's reader: must not wait. `false`
   * when there is no room; the follower then reads what it missed from the log.
   */
  readonly offer: (batch: FeedBatch) => boolean
  /** A batch the follower read from the log itself: may wait for room. */
  readonly write: (batch: FeedBatch) => Effect.Effect<void>
}

/** A run's log ends at `lastSeq` or later; `finished`: it ends there. */
export interface Position {
  readonly lastSeq: number
  readonly finished: boolean
}

/** What this program follows now (tests and diagnostics). */
export interface FollowStats {
  /** Runs with a reader. */
  readonly readers: number
  /** Bus subscriptions held by readers. */
  readonly subscriptions: number
  /** Followers attached to a reader (live or catching up). */
  readonly followers: number
  /** Since the start: log reads by readers (gaps, resyncs), shared by their followers. */
  readonly readerLogReads: number
  /** Since the start: log reads by followers behind the feed (resumes, overflows). */
  readonly followerLogReads: number
  /** Since the start: followers that fell out of the live feed because their buffer was full. */
  readonly overflows: number
}

export class RunFollowers extends Context.Tag("runstream/RunFollowers")<RunFollowers, {
  /**
   * Delivers the run's events after `after` (default 0) to `sink`: the log,
   * then live events, each exactly once and in order. Completes after the
   * terminal event is delivered.
   */
  readonly follow: (
    runId: RunId,
    options: {
      readonly after?: number | undefined
      /** The run's position as the caller just got it from `position`: saves asking again. */
      readonly position?: Position | undefined
    },
    sink: FollowSink
  ) => Effect.Effect<void, FollowError>
  /**
   * Where the run's log ends, as far as a follower from `after` needs to know:
   * from the run's reader in this program when it has one at or past `after`
   * (no database read: a thousand clients resuming a run cost nothing here),
   * else read in line with the followers' other reads (at most
   * `RUNSTREAM_STREAM_READS` at once), so that clients connecting all at once
   * wait their turn instead of draining the connection pool.
   */
  readonly position: (runId: RunId, after: number) => Effect.Effect<Position, RunNotFound | SqlError.SqlError>
  /** `follow` as a stream, with a bounded buffer (`RUNSTREAM_FOLLOWER_BUFFER` batches). */
  readonly events: (runId: RunId, options?: { readonly after?: number | undefined }) => Stream.Stream<RunEvent, FollowError>
  readonly stats: Effect.Effect<FollowStats>
}>() {}

/**
 * Events per chunk of `events` at most. A page of the log went on as one
 * chunk of up to `RUNSTREAM_EVENT_PAGE_SIZE` (2,000): an RPC answer encoded
 * and framed it in one step (10-20 ms of the event loop) and held its
 * frames of 400 KB in its answer buffer, four of them for a caller that
 * does not read (fault scenario 6's never-reading callers).
 */
const maxChunk = 256

/** @category config */
export const FollowConfig = Config.all({
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
  ),
  /**
   * Batches of the live feed a follower may have unsent. Beyond it the
   * follower leaves the feed and reads the log itself, so memory per follower
   * stays bounded and the feed never waits for a slow client.
   */
  followerBuffer: Config.integer("RUNSTREAM_FOLLOWER_BUFFER").pipe(
    Config.validate({ message: "must be between 1 and 100000", validation: (n) => n >= 1 && n <= 100_000 }),
    Config.withDefault(64)
  )
})

/** A cursor into a run's log: an integer from 0 to the largest seq a log holds (`maxSeq`). */
export const isSeq = (n: number) => Number.isInteger(n) && n >= 0 && n <= maxSeq
export const afterMessage = `after must be an integer from 0 to ${maxSeq}`

interface Follower {
  /** The last seq this follower was given. */
  cursor: number
  readonly sink: FollowSink
  done: boolean
  /** Completed by the reader when the follower must act: it overflowed, ended, or the reader failed. */
  wake: Deferred.Deferred<void>
}

interface Reader {
  readonly runId: RunId
  /** Followers holding this reader. */
  refs: number
  /** The last seq of the feed: every event up to it is committed. */
  cursor: number
  done: boolean
  /** Followers fed live; each has `cursor >= reader.cursor`. */
  readonly live: Set<Follower>
  /** Completed once the reader knows its cursor (or failed). */
  readonly ready: Deferred.Deferred<void, FollowError>
  seeded: boolean
  failure: Cause.Cause<FollowError> | undefined
  fiber: Fiber.RuntimeFiber<void, FollowError> | undefined
}

/** Cuts a page at its terminal event (nothing follows one). */
const untilTerminal = (events: ReadonlyArray<RunEvent>): ReadonlyArray<RunEvent> => {
  const end = events.findIndex((event) => isTerminalType(event.type))
  return end < 0 || end === events.length - 1 ? events : events.slice(0, end + 1)
}

export const make = Effect.gen(function*() {
  const bus = yield* EventBus
  const log = yield* EventLog
  const store = yield* RunStore
  const config = yield* FollowConfig
  const scope = yield* Effect.scope
  // FIFO, one waiter woken per read: see FairSemaphore.
  const streamRead = (yield* FairSemaphore.make(config.streamReads)).withPermit

  const readers = new Map<RunId, Reader>()
  let subscriptions = 0
  let readerLogReads = 0
  let followerLogReads = 0
  let overflows = 0

  const wake = (follower: Follower) => Deferred.unsafeDone(follower.wake, Exit.void)

  /** Hands a batch of the feed to every live follower, without waiting for any. */
  const publish = (reader: Reader, events: ReadonlyArray<RunEvent>) => {
    const batch = new FeedBatch(untilTerminal(events))
    reader.cursor = batch.last
    reader.done = batch.terminal
    for (const follower of reader.live) {
      if (batch.last <= follower.cursor) continue
      const own = batch.first > follower.cursor ? batch : batch.after(follower.cursor)
      if (follower.sink.offer(own)) {
        follower.cursor = own.last
        if (own.terminal) {
          follower.done = true
          reader.live.delete(follower)
          wake(follower)
        }
      } else {
        // Full: it reads from its cursor what it missed, then joins again.
        overflows++
        reader.live.delete(follower)
        wake(follower)
      }
    }
  }

  /** The log after the feed's cursor, read once for all followers: a gap or a resync. */
  const catchUp = (reader: Reader): Effect.Effect<void, SqlError.SqlError> =>
    Effect.suspend(() => {
      readerLogReads++
      return streamRead(log.read(reader.runId, { after: reader.cursor, limit: config.pageSize }))
    }).pipe(
      Effect.flatMap((rows) => {
        if (rows.length > 0) publish(reader, rows)
        return rows.length < config.pageSize || reader.done ? Effect.void : catchUp(reader)
      })
    )

  const runReader = (reader: Reader) =>
    Effect.gen(function*() {
      // Subscribe first: whatever is published from now on is in the
      // subscription, and whatever was committed before is in the log.
      const subscription = yield* bus.subscribe({ runId: reader.runId })
      subscriptions++
      yield* Effect.addFinalizer(() => Effect.sync(() => subscriptions--))
      const run = yield* streamRead(store.get(reader.runId))
      reader.cursor = run.lastSeq
      reader.done = isFinished(run.status)
      reader.seeded = true
      yield* Deferred.succeed(reader.ready, undefined)
      // No timeout on the wait: the bus sends a Resync to idle subscriptions
      // (RUNSTREAM_STREAM_IDLE_CHECK), and the reader then reads the log.
      while (!reader.done) {
        const [messages, closed] = yield* subscription.takeAll
        // Only its scope shuts a subscription down, and that scope is this reader's.
        if (closed) return yield* Effect.interrupt
        let behind = false
        const next: Array<RunEvent> = []
        for (const message of messages) {
          if (message._tag === "Resync") {
            behind = true
            continue
          }
          const seq = message.event.seq
          const expected = reader.cursor + next.length + 1
          if (seq < expected) continue
          if (seq > expected) {
            // A message lost or out of order: the log has it.
            behind = true
            break
          }
          next.push(message.event)
          if (isTerminalType(message.event.type)) break
        }
        if (next.length > 0) publish(reader, next)
        if (behind && !reader.done) yield* catchUp(reader)
      }
      for (const follower of reader.live) wake(follower)
    }).pipe(
      Effect.scoped,
      Effect.onExit((exit) =>
        Effect.sync(() => {
          if (Exit.isSuccess(exit)) return
          // The followers fail with it (a stream's client resumes), or are
          // interrupted with it (the program is stopping; after its last
          // follower left there is none); the next one gets a new reader.
          reader.failure = exit.cause
          Deferred.unsafeDone(reader.ready, exit)
          if (readers.get(reader.runId) === reader) readers.delete(reader.runId)
          for (const follower of reader.live) wake(follower)
          reader.live.clear()
        })
      )
    )

  /** This program's reader of the run, started by its first follower and stopped after its last. */
  const acquireReader = (runId: RunId): Effect.Effect<Reader, never, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.suspend(() => {
        const existing = readers.get(runId)
        if (existing !== undefined) {
          existing.refs++
          return Effect.succeed(existing)
        }
        const reader: Reader = {
          runId,
          refs: 1,
          cursor: 0,
          done: false,
          live: new Set(),
          ready: Deferred.unsafeMake(FiberId.none),
          seeded: false,
          failure: undefined,
          fiber: undefined
        }
        readers.set(runId, reader)
        // Interruptible, though forked where it is not (an acquire): its last follower interrupts it.
        return Effect.map(Effect.forkIn(Effect.interruptible(runReader(reader)), scope), (fiber) => {
          reader.fiber = fiber
          return reader
        })
      }),
      (reader) =>
        Effect.suspend(() => {
          reader.refs--
          if (reader.refs > 0) return Effect.void
          if (readers.get(runId) === reader) readers.delete(runId)
          return reader.fiber === undefined ? Effect.void : Fiber.interrupt(reader.fiber)
        })
    )

  /** One page of the log after the follower's cursor, read by the follower itself. */
  const readPage = (runId: RunId, follower: Follower) =>
    Effect.suspend(() => {
      followerLogReads++
      return streamRead(log.read(runId, { after: follower.cursor, limit: config.pageSize }))
    }).pipe(
      Effect.flatMap((rows) => {
        if (rows.length === 0) return Effect.succeed(false)
        const batch = new FeedBatch(untilTerminal(rows))
        return Effect.as(
          Effect.tap(follower.sink.write(batch), () =>
            Effect.sync(() => {
              follower.cursor = batch.last
              follower.done = batch.terminal
            })),
          true
        )
      })
    )

  const position: RunFollowers["Type"]["position"] = (runId, after) =>
    Effect.suspend(() => {
      const reader = readers.get(runId)
      // The feed's cursor is committed: a snapshot of the log's end no newer than now.
      if (reader !== undefined && reader.seeded && reader.failure === undefined && after <= reader.cursor) {
        return Effect.succeed<Position>({ lastSeq: reader.cursor, finished: reader.done })
      }
      return Effect.map(streamRead(store.get(runId)), (run): Position => ({ lastSeq: run.lastSeq, finished: isFinished(run.status) }))
    })

  const follow: RunFollowers["Type"]["follow"] = (runId, options, sink) =>
    Effect.gen(function*() {
      const after = options.after ?? 0
      const run = options.position ?? (yield* position(runId, isSeq(after) ? after : 0))
      if (!isSeq(after)) {
        return yield* new InvalidInput({ message: afterMessage })
      }
      // Seqs only grow and are committed before they are published: a cursor
      // past the log's end was not produced by this run (and would never end).
      if (after > run.lastSeq && !run.finished) {
        return yield* new InvalidInput({ message: `after ${after} is beyond the last event (${run.lastSeq}) of run ${runId}` })
      }
      const follower: Follower = {
        cursor: after,
        sink,
        done: run.finished && after >= run.lastSeq,
        wake: Deferred.unsafeMake(FiberId.none)
      }
      // A finished run's log is all there is: no reader.
      if (run.finished) {
        while (!follower.done) {
          if (!(yield* readPage(runId, follower))) break
        }
        return
      }
      const reader = yield* acquireReader(runId)
      yield* Effect.addFinalizer(() => Effect.sync(() => reader.live.delete(follower)))
      yield* Deferred.await(reader.ready)
      while (!follower.done) {
        if (reader.failure !== undefined) return yield* Effect.failCause(reader.failure)
        // Joins the feed only at (or past) its cursor: nothing between is skipped.
        const joined = yield* Effect.sync(() => {
          if (follower.cursor < reader.cursor) return false
          if (reader.done) {
            follower.done = true
            return true
          }
          follower.wake = Deferred.unsafeMake(FiberId.none)
          reader.live.add(follower)
          return true
        })
        if (joined) {
          if (!follower.done) yield* Deferred.await(follower.wake)
        } else if (!(yield* readPage(runId, follower))) {
          // The feed's events are committed, so the log has them.
          return yield* Effect.dieMessage(`the log of ${runId} ends before the feed's cursor ${reader.cursor}`)
        }
      }
    }).pipe(Effect.scoped)

  const events: RunFollowers["Type"]["events"] = (runId, options) =>
    Stream.unwrapScoped(Effect.gen(function*() {
      const mailbox = yield* Mailbox.make<FeedBatch, FollowError>(config.followerBuffer)
      // A page read from the log waits until the consumer has taken what came
      // before it: one that does not keep up holds one page here, not
      // `followerBuffer` of them (64 pages of 2,000 events: a whole large log
      // per never-reading RPC caller). The live feed's batches are small.
      let taken: Deferred.Deferred<void> | undefined
      yield* follow(runId, options ?? {}, {
        offer: (batch) => mailbox.unsafeOffer(batch),
        write: (batch) =>
          Effect.suspend(() => {
            const page = Deferred.unsafeMake<void>(FiberId.none)
            taken = page
            return Effect.zipRight(mailbox.offer(batch), Deferred.await(page))
          })
      }).pipe(Mailbox.into(mailbox), Effect.forkScoped)
      // A channel loop rather than `Mailbox.toStream` and a map: one step per
      // wake-up, which a run pays once per follower for each event.
      const loop: Channel.Channel<Chunk.Chunk<RunEvent>, unknown, FollowError, unknown, void, unknown> = Channel.flatMap(
        Channel.fromEffect(mailbox.takeAll),
        ([batches, done]) => {
          if (taken !== undefined) {
            Deferred.unsafeDone(taken, Exit.void)
            taken = undefined
          }
          const events = batches.length === 1
            ? Chunk.unsafeHead(batches).events
            : Chunk.toReadonlyArray(batches).flatMap((batch) => batch.events)
          const next = done ? Channel.void : loop
          if (events.length === 0) return next
          if (events.length <= maxChunk) return Channel.zipRight(Channel.write(Chunk.unsafeFromArray(events)), next)
          const pieces: Array<Chunk.Chunk<RunEvent>> = []
          for (let at = 0; at < events.length; at += maxChunk) pieces.push(Chunk.unsafeFromArray(events.slice(at, at + maxChunk)))
          return Channel.zipRight(Channel.writeAll(...pieces), next)
        }
      )
      return Stream.fromChannel(loop)
    }))

  const stats = Effect.sync((): FollowStats => {
    let followers = 0
    for (const reader of readers.values()) followers += reader.refs
    return { readers: readers.size, subscriptions, followers, readerLogReads, followerLogReads, overflows }
  })

  return RunFollowers.of({ follow, position, events, stats })
})

export const layer = Layer.scoped(RunFollowers, make)
