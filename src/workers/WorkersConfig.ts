/**
 * A pool's settings: from the environment (`WorkersConfig`), overridden in
 * code (`WorkersSettings`, as `Workers.layer` takes them).
 * @since 0.1.0
 */
import { Config, Duration, Effect } from "effect"

export interface WorkersOptions {
  /** How many runs execute at once. */
  readonly concurrency: number
  /**
   * The most claimed runs that may wait in the local buffer beyond those
   * executing. Claims come in batches of up to `concurrency + prefetch`, so one
   * statement feeds many runs; a buffered run holds its lease (heartbeats cover it).
   */
  readonly prefetch: number
  /**
   * The buffer holds about as many runs as the pool ends in this window (up to
   * `prefetch`): large for quick runs, next to nothing for slow ones, which
   * other workers may start instead. `Duration.infinity`: always `prefetch`.
   */
  readonly prefetchWindow: Duration.Duration
  /** Which named queues to take runs from. */
  readonly queues: ReadonlyArray<string>
  /** How long a claim holds a run without a heartbeat; renewed every third of it. */
  readonly lease: Duration.Duration
  /** On shutdown, how long in-flight runs may take to finish before they are handed back. */
  readonly shutdownGrace: Duration.Duration
  /** The longest an idle worker waits before it looks for due runs (wake-ups are the fast path). */
  readonly pollInterval: Duration.Duration
}

/** @category config */
export const WorkersConfig: Config.Config<WorkersOptions> = Config.all({
  concurrency: Config.integer("RUNSTREAM_WORKER_CONCURRENCY").pipe(
    // Validate before the default, or the error loses the variable's name.
    Config.validate({ message: "must be between 1 and 10000", validation: (n) => n >= 1 && n <= 10_000 }),
    Config.withDefault(10)
  ),
  prefetch: Config.integer("RUNSTREAM_WORKER_PREFETCH").pipe(
    Config.validate({ message: "must be between 0 and 10000", validation: (n) => n >= 0 && n <= 10_000 }),
    Config.withDefault(500)
  ),
  prefetchWindow: Config.duration("RUNSTREAM_WORKER_PREFETCH_WINDOW").pipe(Config.withDefault(Duration.millis(100))),
  queues: Config.array(Config.string(), "RUNSTREAM_WORKER_QUEUES").pipe(
    Config.validate({ message: "must name at least one queue", validation: (qs) => qs.length > 0 }),
    Config.withDefault(["default"])
  ),
  lease: Config.duration("RUNSTREAM_LEASE").pipe(
    Config.validate({ message: "must be at least 300 millis", validation: (d) => Duration.toMillis(d) >= 300 }),
    Config.withDefault(Duration.seconds(30))
  ),
  shutdownGrace: Config.duration("RUNSTREAM_SHUTDOWN_GRACE").pipe(Config.withDefault(Duration.seconds(10))),
  pollInterval: Config.duration("RUNSTREAM_WORKER_POLL").pipe(Config.withDefault(Duration.seconds(2)))
})

/** Overrides of `WorkersOptions` (durations in any `DurationInput` form). */
export interface WorkersSettings {
  readonly concurrency?: number | undefined
  readonly prefetch?: number | undefined
  readonly prefetchWindow?: Duration.DurationInput | undefined
  readonly queues?: ReadonlyArray<string> | undefined
  readonly lease?: Duration.DurationInput | undefined
  readonly shutdownGrace?: Duration.DurationInput | undefined
  readonly pollInterval?: Duration.DurationInput | undefined
}

const duration = (input: Duration.DurationInput | undefined, fallback: Duration.Duration) =>
  input === undefined ? fallback : Duration.decode(input)

/** The environment's settings (`RUNSTREAM_WORKER_*`, `RUNSTREAM_LEASE`, ...), `overrides` taking precedence. */
export const resolve = (overrides: WorkersSettings = {}) =>
  Effect.map(WorkersConfig, (config): WorkersOptions => ({
    concurrency: overrides.concurrency ?? config.concurrency,
    prefetch: overrides.prefetch ?? config.prefetch,
    prefetchWindow: duration(overrides.prefetchWindow, config.prefetchWindow),
    queues: overrides.queues ?? config.queues,
    lease: duration(overrides.lease, config.lease),
    shutdownGrace: duration(overrides.shutdownGrace, config.shutdownGrace),
    pollInterval: duration(overrides.pollInterval, config.pollInterval)
  }))
