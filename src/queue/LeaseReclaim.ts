/**
 * The database-wide lease reclaim: every `RUNSTREAM_RECLAIM_INTERVAL`, ends
 * the attempts whose worker stopped renewing its lease (it crashed, froze or
 * lost the database), so their runs are retried, failed or cancelled. It runs
 * in every program, beside the outbox relay, workers or not: a fleet whose
 * only live process is a server still moves the runs of a dead worker on.
 * Several programs reclaiming at once is safe: the end is recorded under the
 * row locks, for leases still expired.
 * @since 0.2.0
 */
import { Config, Context, Duration, Effect, Layer, Schedule } from "effect"
import { Outbox } from "../Outbox.ts"
import { RunQueue } from "./RunQueue.ts"

/** @category config */
export const LeaseReclaimConfig = Config.all({
  interval: Config.duration("RUNSTREAM_RECLAIM_INTERVAL").pipe(Config.withDefault(Duration.seconds(1)))
})

/** The most expired leases one pass ends. */
const batchSize = 500

export class LeaseReclaim extends Context.Tag("runstream/LeaseReclaim")<LeaseReclaim, {
  /** One pass now, as the schedule runs it. */
  readonly reclaimNow: Effect.Effect<void>
}>() {}

export const make = (options: { readonly interval: Duration.Duration }) =>
  Effect.gen(function*() {
    const queue = yield* RunQueue
    const outbox = yield* Outbox
    const reclaimNow = queue.reclaimExpired(batchSize).pipe(
      Effect.tap((queues) =>
        queues.size > 0
          // Retried runs are due now: workers here and elsewhere take them at once.
          ? Effect.zipRight(outbox.written, Effect.forEach(queues, queue.wake, { discard: true }))
          : Effect.void
      ),
      Effect.asVoid,
      Effect.catchAllCause((cause) => Effect.logWarning("reclaim failed", cause))
    )
    yield* reclaimNow.pipe(
      Effect.repeat(Schedule.spaced(options.interval)),
      Effect.annotateLogs({ component: "LeaseReclaim" }),
      Effect.forkScoped
    )
    return LeaseReclaim.of({ reclaimNow })
  })

/** The reclaim, every `interval` (default: `RUNSTREAM_RECLAIM_INTERVAL`, 1 second). */
export const layer = (options: { readonly interval?: Duration.DurationInput | undefined } = {}) =>
  Layer.scoped(
    LeaseReclaim,
    Effect.flatMap(LeaseReclaimConfig, (config) =>
      make({ interval: options.interval === undefined ? config.interval : Duration.decode(options.interval) }))
  )
