/**
 * The test kit: a complete Runstream program on a fresh database, for
 * `@effect/vitest`'s `layer(...)` or `it.effect(..., Effect.provide(...))`.
 *
 * ```ts
 * layer(RunstreamTest.layer({ tasks: [Count] }))("Runs", (it) => {
 *   it.effect("streams a run", () => Effect.gen(function*() { ... }))
 * })
 * ```
 * @since 0.1.0
 */
import type { ConfigError } from "effect"
import { type Duration, Effect, Layer } from "effect"
import type { SqlClient, SqlError } from "@effect/sql"
import type { BusUnavailable, EventBus } from "../bus/EventBus.ts"
import type { RunId } from "../domain/Ids.ts"
import type { PgListener } from "../PgListener.ts"
import type { RetentionSettings } from "../Retention.ts"
import { Runs } from "../Runs.ts"
import * as Runstream from "../Runstream.ts"
import type { RunSchedule } from "../schedules/RunSchedule.ts"
import * as Task from "../Task.ts"
import type { WorkersSettings } from "../Workers.ts"
import * as TestDatabase from "./TestDatabase.ts"

/** A bus layer as the kit takes it: any driver on the program's database and listener. */
export type TestBus = Layer.Layer<EventBus, BusUnavailable | SqlError.SqlError | ConfigError.ConfigError, SqlClient.SqlClient | PgListener>

export interface Options<Tasks extends ReadonlyArray<Task.Any>> {
  readonly tasks: Tasks
  /** Worker settings (the production defaults when left out), or `false` for a program without workers. */
  readonly workers?: WorkersSettings | false | undefined
  /** The event bus (`EventBus.layerMemory` when left out; `EventBus.layerPostgres` to share the database with other programs). */
  readonly bus?: TestBus | undefined
  /** How often expired leases are reclaimed (default: `RUNSTREAM_RECLAIM_INTERVAL`, 1 second). */
  readonly reclaimInterval?: Duration.DurationInput | undefined
  /** The retention of a program with workers (default: `RUNSTREAM_RETENTION`), or `false` for none. */
  readonly retention?: RetentionSettings | false | undefined
  /** The schedules the program declares (`RunSchedule.cron` / `.every`). */
  readonly schedules?: ReadonlyArray<RunSchedule> | undefined
  /** The longest the schedule ticker sleeps between passes (default: `RUNSTREAM_SCHEDULE_POLL`, 5 seconds). */
  readonly schedulePoll?: Duration.DurationInput | undefined
  /** Limits declared on queues (`{ mail: { concurrency: { limit: 2 } } }`). */
  readonly queues?: Runstream.RuntimeOptions["queues"]
  /** Pool size of this graph (default 4: many graphs run at once). */
  readonly maxConnections?: number | undefined
}

const build = <const Tasks extends ReadonlyArray<Task.Any>, ROut, E, RIn>(
  options: Options<Tasks>,
  runtime: Layer.Layer<ROut, E, RIn>
) =>
  runtime.pipe(
    Layer.provideMerge(Task.layerRegistry(...options.tasks)),
    Layer.provideMerge(TestDatabase.layer({ maxConnections: options.maxConnections }))
  )

type Built<Tasks extends ReadonlyArray<Task.Any>, L extends Layer.Layer.Any> = ReturnType<
  typeof build<Tasks, Layer.Layer.Success<L>, Layer.Layer.Error<L>, Layer.Layer.Context<L>>
>

/** A program on its own fresh database: runtime, registry, and workers unless `workers: false`. */
export function layer<const Tasks extends ReadonlyArray<Task.Any>>(
  options: Options<Tasks> & { readonly workers: false }
): Built<Tasks, ReturnType<typeof Runstream.layerRuntime<Layer.Layer.Error<TestBus>, Layer.Layer.Context<TestBus>>>>
export function layer<const Tasks extends ReadonlyArray<Task.Any>>(
  options: Options<Tasks> & { readonly workers?: WorkersSettings | undefined }
): Built<Tasks, ReturnType<typeof Runstream.layerWithWorkers<Layer.Layer.Error<TestBus>, Layer.Layer.Context<TestBus>>>>
export function layer<const Tasks extends ReadonlyArray<Task.Any>>(options: Options<Tasks>) {
  return options.workers === false
    ? build(options, Runstream.layerRuntime<Layer.Layer.Error<TestBus>, Layer.Layer.Context<TestBus>>({
        bus: options.bus,
        reclaimInterval: options.reclaimInterval,
        schedules: options.schedules,
        schedulePoll: options.schedulePoll,
        queues: options.queues
      })
    )
    : build(
      options,
      Runstream.layerWithWorkers<Layer.Layer.Error<TestBus>, Layer.Layer.Context<TestBus>>({
        bus: options.bus,
        reclaimInterval: options.reclaimInterval,
        schedules: options.schedules,
        schedulePoll: options.schedulePoll,
        queues: options.queues,
        workers: options.workers ?? {},
        retention: options.retention
      })
    )
}

/** Waits (on the run's event stream, not by polling) until the run is finished. */
export const waitForRunCompletion = (runId: RunId, timeout: Duration.DurationInput = "15 seconds") =>
  Effect.flatMap(Runs, (runs) => runs.awaitCompletion(runId, { timeout }))
