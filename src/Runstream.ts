/**
 * Composition: the layer graph of one Runstream program on a database.
 * @since 0.1.0
 */
import { type Duration, Layer } from "effect"
import type { EventBus } from "./bus/EventBus.ts"
import * as MemoryBus from "./bus/MemoryBus.ts"
import * as EventLog from "./EventLog.ts"
import * as Outbox from "./Outbox.ts"
import * as OutboxRelay from "./OutboxRelay.ts"
import * as PgListener from "./PgListener.ts"
import * as Retention from "./Retention.ts"
import * as Metrics from "./metrics/Metrics.ts"
import * as LeaseReclaim from "./queue/LeaseReclaim.ts"
import * as QueueLimits from "./queue/QueueLimits.ts"
import type { QueueDefinition } from "./queue/QueueLimits.ts"
import * as RunQueue from "./queue/RunQueue.ts"
import * as RunFollowers from "./RunFollowers.ts"
import * as Runs from "./Runs.ts"
import * as RunStore from "./RunStore.ts"
import type { RunSchedule } from "./schedules/RunSchedule.ts"
import * as Schedules from "./schedules/Schedules.ts"
import * as Workers from "./Workers.ts"

export interface RuntimeOptions<BusError = never, BusRequires = never> {
  /**
   * The event bus, as a layer: `EventBus.layerMemory` for a single process
   * (the default), `EventBus.layerPostgres` when several processes share the
   * database, `NatsBus.layer` (`runstream/nats`) for a fleet on NATS, or any
   * other layer of `EventBus`. It may need the database (`SqlClient`) and the
   * program's `PgListener`.
   */
  readonly bus?: Layer.Layer<EventBus, BusError, BusRequires> | undefined
  /** How often expired leases are reclaimed (default: `RUNSTREAM_RECLAIM_INTERVAL`, 1 second). */
  readonly reclaimInterval?: Duration.DurationInput | undefined
  /**
   * The schedules this program declares (`RunSchedule.cron` / `.every`):
   * checked and written when it starts. Every program ticks every schedule
   * of its tasks, declared here or created over the API.
   */
  readonly schedules?: ReadonlyArray<RunSchedule> | undefined
  /** The longest the schedule ticker sleeps between passes (default: `RUNSTREAM_SCHEDULE_POLL`, 5 seconds). */
  readonly schedulePoll?: Duration.DurationInput | undefined
  /**
   * Limits declared on queues (`queue/QueueLimits.ts`): `{ mail: { concurrency:
   * { limit: 5 }, rateLimit: { limit: 100, period: "1 minute" } } }`. Every
   * program starting or running runs of these queues should declare them.
   */
  readonly queues?: Readonly<Record<string, QueueDefinition>> | undefined
}

/**
 * Everything but the workers: `Runs` (and the `RunFollowers` behind its
 * streams), the stores, the queue, the bus, an outbox relay, the lease
 * reclaim, and `Schedules` with its ticker. Needs a database (`Database.layer` or `RunstreamTest`) and a
 * `TaskRegistry`.
 */
export const layerRuntime = <BusError = never, BusRequires = never>(options: RuntimeOptions<BusError, BusRequires> = {}) => {
  // The memory bus fits any `BusError` and `BusRequires` (it fails on configuration only, as every layer here may).
  const bus: Layer.Layer<EventBus, BusError | Layer.Layer.Error<typeof MemoryBus.layer>, BusRequires> = options.bus ??
    MemoryBus.layer
  const infra = Layer.mergeAll(Outbox.layer, EventLog.layer, RunQueue.layer, QueueLimits.layer(options.queues), bus).pipe(
    Layer.provideMerge(PgListener.layer)
  )
  return Schedules.layer(options.schedules, { poll: options.schedulePoll }).pipe(
    Layer.provideMerge(Layer.mergeAll(Runs.layer, OutboxRelay.layer, LeaseReclaim.layer({ interval: options.reclaimInterval }))),
    Layer.provideMerge(RunFollowers.layer),
    Layer.provideMerge(RunStore.layer),
    Layer.provideMerge(infra),
    Layer.provideMerge(Metrics.layer)
  )
}

/**
 * The runtime plus a pool of workers on it, and the retention that deletes
 * old finished runs (`Retention`: one process at a time deletes, whatever
 * the number of worker programs; `retention: false` leaves it out).
 */
export const layerWithWorkers = <BusError = never, BusRequires = never>(
  options: RuntimeOptions<BusError, BusRequires> & {
    readonly workers?: Workers.WorkersSettings
    readonly retention?: Retention.RetentionSettings | false | undefined
  } = {}
) =>
  Layer.merge(
    Workers.layer(options.workers),
    options.retention === false ? Retention.layerNone : Retention.layer(options.retention)
  ).pipe(Layer.provideMerge(layerRuntime(options)))
