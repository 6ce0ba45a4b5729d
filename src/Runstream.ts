/**
 * Composition: the layer graph of one Runstream program on a database.
 * @since 0.1.0
 */
import { Layer } from "effect"
import * as EventBus from "./EventBus.ts"
import * as EventLog from "./EventLog.ts"
import * as Outbox from "./Outbox.ts"
import * as OutboxRelay from "./OutboxRelay.ts"
import * as PgListener from "./PgListener.ts"
import * as Queue from "./Queue.ts"
import * as RunFollowers from "./RunFollowers.ts"
import * as Runs from "./Runs.ts"
import * as RunStore from "./RunStore.ts"
import * as Workers from "./Workers.ts"

export interface RuntimeOptions {
  /** `memory` for a single process (default), `postgres` when several processes share the database. */
  readonly bus?: "memory" | "postgres" | undefined
}

/**
 * Everything but the workers: `Runs` (and the `RunFollowers` behind its
 * streams), the stores, the queue, the bus and an outbox relay. Needs a database (`Database.layer` or `RunstreamTest`) and a
 * `TaskRegistry`.
 */
export const layerRuntime = (options: RuntimeOptions = {}) => {
  const bus = options.bus === "postgres" ? EventBus.layerPostgres : EventBus.layerMemory
  const infra = Layer.mergeAll(Outbox.layer, EventLog.layer, Queue.layer, bus).pipe(
    Layer.provideMerge(PgListener.layer)
  )
  return Layer.mergeAll(Runs.layer, OutboxRelay.layer).pipe(
    Layer.provideMerge(RunFollowers.layer),
    Layer.provideMerge(RunStore.layer),
    Layer.provideMerge(infra)
  )
}

/** The runtime plus a pool of workers on it. */
export const layerWithWorkers = (options: RuntimeOptions & { readonly workers?: Workers.WorkersSettings } = {}) =>
  Workers.layer(options.workers).pipe(Layer.provideMerge(layerRuntime(options)))
