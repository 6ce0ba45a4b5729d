/**
 * The suite's own Runstream program (in the driver process): the production
 * runtime layers (postgres bus, no workers) on a scenario's database, used to
 * start runs and to follow them as a subscriber would.
 */
import { appendFileSync } from "node:fs"
import { Effect, Layer, Logger, LogLevel, Redacted, type Scope } from "effect"
import * as EventBus from "../../src/bus/index.ts"
import * as Database from "../../src/Database.ts"
import * as Runstream from "../../src/Runstream.ts"
import * as Task from "../../src/Task.ts"
import type { ScenarioResult } from "./report.ts"
import type { PostgresServer } from "./postgres.ts"
import * as Tasks from "./tasks.ts"
import { FaultError } from "./common.ts"

/** What a scenario is given. */
export interface ScenarioContext {
  /** Admin URL of the Postgres server the scenario creates its database on. */
  readonly serverUrl: string
  /** The suite's own server, when it has one (scenario 2 restarts it). */
  readonly postgres: PostgresServer | undefined
  readonly quick: boolean
  /** Where the processes' logs go. */
  readonly logDir: string
}

export interface Scenario {
  readonly id: number
  readonly name: string
  readonly run: (context: ScenarioContext) => Effect.Effect<ScenarioResult, FaultError, Scope.Scope>
}

/**
 * The runtime (no workers) on `url`, as the driver's own program; it knows
 * the suite's tasks (`Tasks.all`) unless given others. (It ticks the schedules
 * of the tasks it knows, as any program does.)
 */
export const driverProgram = (
  url: string,
  options: {
    readonly maxConnections?: number
    readonly tasks?: ReadonlyArray<Task.Task<string, any, any, any, any, any, never>>
    readonly queues?: Runstream.RuntimeOptions["queues"]
  } = {}
) =>
  Runstream.layerRuntime({ bus: EventBus.layerPostgres, queues: options.queues }).pipe(
    Layer.provideMerge(Task.layerRegistry(...(options.tasks ?? Tasks.all))),
    Layer.provideMerge(
      Database.layerClient({ maxConnections: options.maxConnections ?? 10 }).pipe(
        Layer.provideMerge(Layer.succeed(Database.DatabaseUrl, { url: Redacted.make(url), description: "fault suite database" }))
      )
    )
  )

/** The driver's own Runstream logs go to a file, not into the report. */
export const fileLogger = (path: string) =>
  Layer.merge(
    Logger.replace(
      Logger.defaultLogger,
      Logger.map(Logger.logfmtLogger, (line) => appendFileSync(path, `${line}\n`))
    ),
    Logger.minimumLogLevel(LogLevel.Info)
  )

/** Any failure of a scenario's own steps (a query, a start) as a `FaultError`. */
export const asFault = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, FaultError, R> =>
  Effect.catchAll(self, (error) =>
    Effect.fail(
      error instanceof FaultError ? error : new FaultError({ message: String((error as { message?: unknown })?.message ?? error), cause: error })
    ))
