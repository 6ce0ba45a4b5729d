/**
 * How a pool finds work: claims batches of waiting runs while it has places
 * free, and while it has none or the queue is empty, waits: for a freed
 * place, a wake-up (an enqueue here or elsewhere), the next due run or the
 * poll, whichever comes first.
 * @since 0.2.0
 */
import { Clock, Duration, Effect, Option, Queue } from "effect"
import { now } from "../internal/time.ts"
import { Outbox } from "../Outbox.ts"
import type { Claim } from "../queue/Claiming.ts"
import { RunQueue } from "../queue/RunQueue.ts"
import { batchThreshold, type PoolState } from "./InFlight.ts"

export interface ClaimLoop {
  /** Claims until the pool stops accepting; retries a failed claim after the poll interval. */
  readonly run: Effect.Effect<never>
  /**
   * Pokes the loop when it would act on a freed place, or for the shutdown's
   * drain. Not while it waits for work: a place freed then changes nothing,
   * and the poke would cost it a wake-up per run. Synchronous: called for
   * every run that ends.
   */
  readonly placeFreed: () => void
}

export const make = (options: {
  readonly pool: PoolState
  readonly workerId: string
  readonly queues: ReadonlyArray<string>
  readonly tasks: ReadonlyArray<string>
  /** The scopes of limits per key whose runs it claims too (see `queue/Limits.ts`). */
  readonly limitScopes: ReadonlyArray<string>
  readonly leaseMs: number
  readonly pollInterval: Duration.Duration
  /** Tracing is on: claims return each run's traceparent (see `Claiming.ClaimOptions`). */
  readonly traced: boolean
  /** Makes claimed runs the pool's (see `Pool.ts`). */
  readonly register: (claims: ReadonlyArray<Claim>) => Effect.Effect<void>
}) =>
  Effect.gen(function*() {
    const queue = yield* RunQueue
    const outbox = yield* Outbox
    const { pool } = options
    const signal = pool.signal

    const wakeups = yield* queue.wakeups
    yield* Queue.take(wakeups).pipe(
      Effect.zipRight(Effect.suspend(() => {
        pool.woken = true
        return Queue.offer(signal, undefined)
      })),
      Effect.forever,
      Effect.forkScoped
    )

    const placeFreed = () => {
      const capacity = pool.concurrency + pool.prefetch.current()
      if (!pool.accepting || pool.woken || (!pool.idle && capacity - pool.taking() >= batchThreshold(capacity))) {
        // A sliding queue of one: already full, the loop is poked already.
        signal.unsafeOffer(undefined)
      }
    }

    /** Until a wake-up, the next due run or the poll interval, whichever comes first. */
    const waitForWork = Effect.gen(function*() {
      const due = yield* queue.nextDue(options.queues, options.limitScopes)
      const pollMs = Duration.toMillis(options.pollInterval)
      const start = (yield* now).getTime()
      const deadline = start + Option.match(due, { onNone: () => pollMs, onSome: (date) => Math.min(pollMs, date.getTime() - start) })
      while (!pool.woken) {
        const left = deadline - (yield* now).getTime()
        if (left <= 0) return
        yield* Queue.take(signal).pipe(Effect.timeoutOption(Duration.millis(left)))
      }
    })

    /**
     * Claims and registers a batch. Uninterruptible: a claim committed by the
     * database is always registered here, so a shutdown hands it back instead of
     * leaving it leased until its lease expires.
     */
    const claimBatch = (limit: number) =>
      Effect.gen(function*() {
        const claims = yield* queue.claim({
          workerId: options.workerId,
          queues: options.queues,
          tasks: options.tasks,
          limitScopes: options.limitScopes,
          limit,
          leaseMs: options.leaseMs,
          traced: options.traced
        })
        if (claims.length > 0) yield* outbox.written
        yield* options.register(claims)
        return claims
      }).pipe(Effect.uninterruptible)

    const run = Effect.gen(function*() {
      while (pool.accepting) {
        const capacity = pool.concurrency + pool.prefetch.size(yield* Clock.currentTimeMillis)
        const free = capacity - pool.taking()
        // While runs flow, claim when half the capacity is free: fewer, larger
        // claims. Woken (by an enqueue, or the poll): whatever is free, however little.
        if (free < batchThreshold(capacity) && !(pool.woken && free > 0)) {
          yield* Queue.take(signal)
          continue
        }
        pool.woken = false
        const claims = yield* claimBatch(free)
        if (claims.length < free) {
          pool.idle = true
          yield* waitForWork.pipe(Effect.ensuring(Effect.sync(() => {
            pool.idle = false
          })))
          // The poll claims whatever is free, as a wake-up does.
          pool.woken = true
        }
      }
    }).pipe(
      Effect.catchAllCause((cause) => Effect.zipRight(Effect.logWarning("claim failed; retrying", cause), Effect.sleep(options.pollInterval))),
      Effect.forever
    )

    return { run, placeFreed } satisfies ClaimLoop
  })
