/**
 * Composition: the layer graph of one Runstream program on a database.
 * @since 0.1.0
 */
import { type Duration, Layer } from "effect"
import * as EventBus from "./EventBus.ts"
import * as EventLog from "./EventLog.ts"
import * as Outbox from "./Outbox.ts"
import * as OutboxRelay from "./OutboxRelay.ts"
import * as PgListener from "./PgListener.ts"
import * as LeaseReclaim from "./queue/LeaseReclaim.ts"
import * as RunQueue from "./queue/RunQueue.ts"
import * as Runs from "./Runs.ts"
import * as RunStore from "./RunStore.ts"
import * as Workers from "./Workers.ts"

export interface RuntimeOptions {
  /** `memory` for a single process (default), `postgres` when several processes share the database. */
  readonly bus?: "memory" | "postgres" | undefined
  /** How often expired leases are reclaimed (default: `RUNSTREAM_RECLAIM_INTERVAL`, 1 second). */
  readonly reclaimInterval?: Duration.DurationInput | undefined
}

/**
 * Everything but the workers: `Runs`, the stores, the queue, the bus, an
 * outbox relay and the lease reclaim. Needs a database (`Database.layer` or `RunstreamTest`) and a
 * `TaskRegistry`.
 */
export const layerRuntime = (options: RuntimeOptions = {}) => {
  const bus = options.bus === "postgres" ? EventBus.layerPostgres : EventBus.layerMemory
  const infra = Layer.mergeAll(Outbox.layer, EventLog.layer, RunQueue.layer, bus).pipe(
    Layer.provideMerge(PgListener.layer)
  )
  return Layer.mergeAll(Runs.layer, OutboxRelay.layer, LeaseReclaim.layer({ interval: options.reclaimInterval })).pipe(
    Layer.provideMerge(RunStore.layer),
    Layer.provideMerge(infra)
  )
}

/** The runtime plus a pool of workers on it. */
export const layerWithWorkers = (options: RuntimeOptions & { readonly workers?: Workers.WorkersSettings } = {}) =>
  Workers.layer(options.workers).pipe(Layer.provideMerge(layerRuntime(options)))
