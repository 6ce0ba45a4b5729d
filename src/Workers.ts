/**
 * A pool of workers, as a program includes it: `Workers.layer(...)` starts
 * one in the layer's scope; closing the scope stops claiming, lets in-flight
 * runs finish within a grace period, then hands the rest back so another
 * worker takes them at once. No program runs tasks unless it includes this
 * layer. The pool itself is `workers/Pool.ts`; its parts are beside it.
 * @since 0.1.0
 */
import { Context, Effect, Layer } from "effect"
import * as Pool from "./workers/Pool.ts"
import { resolve, type WorkersOptions, type WorkersSettings } from "./workers/WorkersConfig.ts"

export { runErrorOf, TaskTimeout } from "./workers/Attempt.ts"
export { placesTaken } from "./workers/InFlight.ts"
export { WorkersConfig, type WorkersOptions, type WorkersSettings } from "./workers/WorkersConfig.ts"

export class Workers extends Context.Tag("runstream/Workers")<Workers, Pool.Pool>() {}

/** A pool configured with `WorkersOptions` as given. */
export const make = (options: WorkersOptions) => Effect.map(Pool.make(options), Workers.of)

/**
 * Workers configured from the environment (`RUNSTREAM_WORKER_*`, `RUNSTREAM_LEASE`, ...),
 * with `overrides` taking precedence.
 */
export const layer = (overrides: WorkersSettings = {}) => Layer.scoped(Workers, Effect.flatMap(resolve(overrides), make))
