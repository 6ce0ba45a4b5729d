/**
 * The `stats` group: `GET /v1/stats` and `GET /v1/tasks`.
 * @since 0.3.0
 */
import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Stats } from "../Stats.ts"
import { QueueLimits } from "../queue/QueueLimits.ts"
import * as Task from "../Task.ts"
import { Api } from "./Api.ts"
import { mapCore } from "./ApiError.ts"

/** @category layers */
export const layer = HttpApiBuilder.group(Api, "stats", (handlers) =>
  Effect.gen(function*() {
    const stats = yield* Stats
    const registry = yield* Task.TaskRegistry
    // The registry is fixed for the program's life: described once.
    const tasks = Task.describeAll(registry, yield* QueueLimits)
    return handlers
      .handle("stats", () => mapCore(stats.read))
      .handle("tasks", () => Effect.succeed(tasks))
  }))
