/**
 * Keeps a pool's leases: every third of the lease, extends those of its runs
 * in flight, and stops the attempts whose lease it lost or whose cancellation
 * was asked. A cancellation's NOTIFY stops its attempt at once; the listener
 * reconnecting (notifications may have been missed) brings the heartbeat forward.
 * @since 0.2.0
 */
import { Duration, Effect, Queue, Schedule } from "effect"
import type { RunId } from "../domain/Ids.ts"
import { NotifyChannel, PgListener } from "../PgListener.ts"
import { RunQueue } from "../queue/RunQueue.ts"
import type { InFlight, PoolState, StopReason } from "./InFlight.ts"

export const make = (options: {
  readonly pool: PoolState
  readonly workerId: string
  readonly leaseMs: number
  /** Stops an attempt (see `Pool.ts`). */
  readonly stop: (entry: InFlight, reason: StopReason) => Effect.Effect<void>
  /** Runs in the pool's log annotations. */
  readonly annotate: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}) =>
  Effect.gen(function*() {
    const queue = yield* RunQueue
    const listener = yield* PgListener
    const { pool } = options

    const heartbeat = Effect.gen(function*() {
      const entries = [...pool.inFlight.values()]
      const runs = entries.map((entry) => ({ runId: entry.claim.runId, attempt: entry.claim.attempt }))
      const result = yield* queue.heartbeat({ workerId: options.workerId, runs, leaseMs: options.leaseMs })
      // Stop the very attempts asked about: the run may have been claimed again meanwhile.
      for (const entry of entries) {
        if (!result.held.has(entry.claim.runId)) yield* options.stop(entry, "leaseLost")
        else if (result.cancelRequested.has(entry.claim.runId)) yield* options.stop(entry, "cancel")
      }
    }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("heartbeat failed", cause)))

    const cancelled = (runId: RunId) =>
      Effect.suspend(() => {
        const entry = pool.inFlight.get(runId)
        return entry === undefined ? Effect.void : options.stop(entry, "cancel")
      })

    const cancellations = yield* listener.subscribe(NotifyChannel.cancel)
    yield* Queue.take(cancellations).pipe(
      Effect.flatMap((message) => message._tag === "Notification" ? cancelled(message.payload as RunId) : heartbeat),
      Effect.forever,
      options.annotate,
      Effect.forkScoped
    )

    yield* heartbeat.pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(options.leaseMs / 3))),
      options.annotate,
      Effect.forkScoped
    )
  })
