/**
 * The programs behind the entry points, as layers of a task list, for reuse by
 * applications that register their own tasks:
 *
 * ```ts
 * // server.ts
 * import { Main, Programs } from "runstream"
 * import { ResizeImage, SendEmail } from "./tasks.js"
 *
 * Main.run(Programs.makeServerLayer([SendEmail, ResizeImage]))
 * ```
 *
 * - `makeServerLayer`: the HTTP API; with workers when `RUNSTREAM_SERVER_WORKERS=true`.
 * - `makeWorkerLayer`: workers, the outbox relay and the retention, no API; `/healthz` and
 *   `/readyz` on `RUNSTREAM_HEALTH_PORT` when set.
 * - `makeDevLayer`: everything in one process, on an embedded Postgres unless
 *   `DATABASE_URL` is set.
 *
 * Each takes the program's schedules too (`RunSchedule.cron` / `.every`,
 * checked and written when it starts) and the limits declared on its queues:
 *
 * ```ts
 * Main.run(Programs.makeWorkerLayer([SendEmail, Report], { schedules: [NightlyReport] }))
 * ```
 *
 * Server and worker processes share a database and use the `postgres` bus by
 * default, so that events committed in one reach the streams of another;
 * `RUNSTREAM_BUS=nats` puts them on NATS instead (`RUNSTREAM_NATS_URL`).
 * @since 0.1.0
 */
import { HttpServer } from "@effect/platform"
import { Config, Console, Effect, Layer, Option } from "effect"
import { BusUnavailable } from "../bus/EventBus.ts"
import * as MemoryBus from "../bus/MemoryBus.ts"
import { NatsConfig } from "../bus/NatsConfig.ts"
import * as PostgresBus from "../bus/PostgresBus.ts"
import * as Database from "../Database.ts"
import { HttpConfig, ListenConfig, portConfig } from "../http/HttpConfig.ts"
import * as Server from "../http/Server.ts"
import * as Runstream from "../Runstream.ts"
import { LeaseReclaimConfig } from "../queue/LeaseReclaim.ts"
import { RetentionConfig } from "../Retention.ts"
import type { RunSchedule } from "../schedules/RunSchedule.ts"
import * as OtlpMetrics from "../metrics/OtlpMetrics.ts"
import * as Task from "../Task.ts"
import * as Tracing from "../tracing/Tracing.ts"
import { Workers, WorkersConfig } from "../Workers.ts"

const busKinds = ["memory", "postgres", "nats"] as const
export type BusKind = typeof busKinds[number]

/**
 * Which bus the program uses (`RUNSTREAM_BUS`: memory, postgres or nats) and
 * the NATS settings (read, and reported when bad, whichever bus is chosen).
 * @category config
 */
export const BusConfig = (fallback: BusKind) =>
  Config.all({
    // A bad value reads "RUNSTREAM_BUS: Expected one of (memory, postgres, nats) but received …".
    kind: Config.literal(...busKinds)("RUNSTREAM_BUS").pipe(Config.withDefault(fallback)),
    nats: NatsConfig
  })

/**
 * The bus layer of a `BusConfig`. The NATS driver is imported only when it is
 * chosen: a program on another bus never loads its client.
 */
export const busLayer = (config: Config.Config.Success<ReturnType<typeof BusConfig>>) => {
  switch (config.kind) {
    case "memory":
      return MemoryBus.layer
    case "postgres":
      return PostgresBus.layer
    case "nats":
      return Layer.unwrapEffect(Effect.map(
        Effect.tryPromise({
          try: () => import("../bus/NatsBus.ts"),
          catch: (cause) =>
            new BusUnavailable({
              bus: "nats",
              message: "RUNSTREAM_BUS=nats needs the package @nats-io/transport-node (npm install @nats-io/transport-node)",
              cause
            })
        }),
        (NatsBus) => NatsBus.layerWith(config.nats)
      ))
  }
}

/** @category config */
export const ServerWorkersConfig = Config.boolean("RUNSTREAM_SERVER_WORKERS").pipe(Config.withDefault(false))

/** @category config */
export const HealthPortConfig = Config.option(portConfig("RUNSTREAM_HEALTH_PORT"))

/** `GET /metrics` on a port of its own (`Server.layerMetrics`). @category config */
export const MetricsPortConfig = Config.option(portConfig("RUNSTREAM_METRICS_PORT"))

/** The metrics' own server when `RUNSTREAM_METRICS_PORT` is set, on `host`. */
const metricsServer = (port: Option.Option<number>, host: string) =>
  Option.match(port, {
    onNone: () => Layer.empty,
    onSome: (port) => Layer.discard(Server.layerMetrics({ port, host }))
  })

/** What a program declares beside its tasks. */
export interface ProgramOptions {
  /** The schedules it declares (it owns them: see `Schedules`). */
  readonly schedules?: ReadonlyArray<RunSchedule> | undefined
  /** Limits declared on queues (`{ mail: { concurrency: { limit: 5 } } }`); every program of a queue should declare the same. */
  readonly queues?: Runstream.RuntimeOptions["queues"]
}

/**
 * The program's tasks and database, under everything else; and its tracer
 * when OTLP is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`), under all of it.
 */
const foundation = <const Tasks extends ReadonlyArray<Task.Any>>(tasks: Tasks, serviceName: string) =>
  <A, E, R>(self: Layer.Layer<A, E, R>) =>
    self.pipe(
      Layer.provide(Task.layerRegistry(...tasks)),
      Layer.provide(Database.layer),
      Layer.provide(Tracing.layerFromEnv(serviceName))
    )

const logWorkersReady = Layer.effectDiscard(Effect.gen(function*() {
  const workers = yield* Workers
  const config = yield* WorkersConfig
  yield* Effect.logInfo(`workers ready: ${workers.workerId}, ${config.concurrency} at a time, queues ${config.queues.join(", ")}`)
}))

/** The HTTP server's settings. */
const serverOptions = Config.map(Config.all([HttpConfig, ListenConfig]), ([http, listen]) => ({ ...http, ...listen }))

// Each program reads all its settings in one `Config.all` before anything
// starts: every bad variable is reported at once, and nothing is left half-started.

/** The HTTP API, with workers when `RUNSTREAM_SERVER_WORKERS=true`. @category programs */
export const makeServerLayer = <const Tasks extends ReadonlyArray<Task.Any>>(tasks: Tasks, options: ProgramOptions = {}) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const config = yield* Config.all({
      bus: BusConfig("postgres"),
      server: serverOptions,
      withWorkers: ServerWorkersConfig,
      reclaim: LeaseReclaimConfig,
      retention: RetentionConfig,
      metricsPort: MetricsPortConfig
    })
    const bus = busLayer(config.bus)
    const runtime = config.withWorkers
      ? logWorkersReady.pipe(Layer.provideMerge(
        Runstream.layerWithWorkers({ bus, reclaimInterval: config.reclaim.interval, retention: config.retention, schedules: options.schedules, queues: options.queues })
      ))
      : Runstream.layerRuntime({ bus, reclaimInterval: config.reclaim.interval, schedules: options.schedules, queues: options.queues })
    return Layer.mergeAll(
      Layer.discard(Server.layer(config.server)),
      metricsServer(config.metricsPort, config.server.host),
      OtlpMetrics.layerFromEnv("runstream-server")
    ).pipe(
      Layer.provide(runtime),
      foundation(tasks, "runstream-server")
    )
  }))

/** Workers and the outbox relay, no API; health checks on `RUNSTREAM_HEALTH_PORT`. @category programs */
export const makeWorkerLayer = <const Tasks extends ReadonlyArray<Task.Any>>(tasks: Tasks, options: ProgramOptions = {}) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const config = yield* Config.all({
      bus: BusConfig("postgres"),
      workers: WorkersConfig,
      reclaim: LeaseReclaimConfig,
      retention: RetentionConfig,
      listen: ListenConfig,
      healthPort: HealthPortConfig,
      metricsPort: MetricsPortConfig
    })
    const health = Option.match(config.healthPort, {
      onNone: () => Layer.empty,
      onSome: (port) => Layer.discard(Server.layerHealth({ port, host: config.listen.host }))
    })
    return Layer.mergeAll(
      health,
      logWorkersReady,
      metricsServer(config.metricsPort, config.listen.host),
      OtlpMetrics.layerFromEnv("runstream-worker")
    ).pipe(
      Layer.provide(Runstream.layerWithWorkers({
        bus: busLayer(config.bus),
        reclaimInterval: config.reclaim.interval,
        retention: config.retention,
        schedules: options.schedules,
        queues: options.queues
      })),
      foundation(tasks, "runstream-worker")
    )
  }))

const announce = Layer.effectDiscard(Effect.gen(function*() {
  const url = yield* HttpServer.addressFormattedWith(Effect.succeed)
  const database = yield* Database.DatabaseUrl
  yield* Console.log([
    `Runstream dev server: ${url}`,
    `  dashboard: ${url}/`,
    `  database: ${database.description}`,
    `  API: ${url}/openapi.json   events of all runs: ${url}/v1/events`,
    `  try: curl -X POST ${url}/v1/runs -H 'content-type: application/json' -d '{"task":"demo.count","input":{"to":5,"delayMs":500}}'`,
    `  schedules: ${url}/v1/schedules`
  ].join("\n"))
}))

/** API, workers and relay in one process; embedded Postgres unless `DATABASE_URL`. @category programs */
export const makeDevLayer = <const Tasks extends ReadonlyArray<Task.Any>>(tasks: Tasks, options: ProgramOptions = {}) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const config = yield* Config.all({
      bus: BusConfig("memory"),
      server: serverOptions,
      workers: WorkersConfig,
      reclaim: LeaseReclaimConfig,
      retention: RetentionConfig
    })
    return Layer.merge(announce, OtlpMetrics.layerFromEnv("runstream-dev")).pipe(
      Layer.provide(Server.layer(config.server)),
      Layer.provide(logWorkersReady.pipe(Layer.provideMerge(
        Runstream.layerWithWorkers({ bus: busLayer(config.bus), reclaimInterval: config.reclaim.interval, retention: config.retention, schedules: options.schedules, queues: options.queues })
      ))),
      foundation(tasks, "runstream-dev")
    )
  }))
