/**
 * The program's metrics: Effect metric keys and hooks (`MetricKey`,
 * `MetricHook`) in a `MetricRegistry` of the program's own, not the global
 * one behind `Metric.counter` and friends. Two programs in one process (tests,
 * an embedding) count their own runs each; the registry lives and dies with
 * the program's layer (docs/decisions.md, "Metrics are the program's").
 *
 * Two kinds of figures:
 * - counted as things happen, by plain calls on the hot paths (`runsStarted`,
 *   `attemptStarted`, `attemptEnded`, `runFinished`, `eventsAppended`,
 *   `eventsRelayed`): an in-memory update of
 *   a hook found once per task, no effect step, no statement;
 * - read when the metrics are read (`snapshot`): gauges whose truth is in the
 *   database (queued runs per queue, the relay's lag: one cheap statement
 *   each per read) or in another part of the program (runs in flight per
 *   worker, live streams, pool connections), which registers its `gauge` for
 *   as long as its scope lasts.
 *
 * Parts take the service as optional (`Effect.serviceOption`): a program or
 * test built without it counts nothing and needs nothing more.
 * @since 0.4.0
 */
import { SqlClient } from "@effect/sql"
import { DatabasePool } from "../Database.ts"
import { now } from "../internal/time.ts"
import {
  Context,
  Effect,
  Layer,
  MetricBoundaries,
  type MetricHook,
  MetricKey,
  MetricLabel,
  MetricPair,
  MetricRegistry,
  MetricState,
  Option,
  type Scope
} from "effect"

/** The names, for the docs and the dashboard. */
export const names = {
  runsStarted: "runstream_runs_started_total",
  runsFinished: "runstream_runs_finished_total",
  attempts: "runstream_attempts_total",
  queueWait: "runstream_queue_wait_seconds",
  runDuration: "runstream_run_duration_seconds",
  attemptDuration: "runstream_attempt_duration_seconds",
  eventsAppended: "runstream_events_appended_total",
  eventsRelayed: "runstream_events_relayed_total",
  queued: "runstream_queued_runs",
  relayLag: "runstream_relay_lag_seconds",
  inFlight: "runstream_in_flight_runs",
  liveStreams: "runstream_live_streams",
  poolConnections: "runstream_db_pool_connections"
} as const

/** Outcomes of an attempt, as recorded (`Attempt.outcomeOf`), or `lost` (its lease was, nothing recorded). */
export type AttemptOutcome = "succeeded" | "failed" | "retrying" | "cancelled" | "released" | "waiting" | "lost"

/** Outcomes that finish a run. */
const finishes = (outcome: AttemptOutcome) => outcome === "succeeded" || outcome === "failed" || outcome === "cancelled"

/** One reading of a gauge: its labels and value. */
export interface Reading {
  readonly labels?: Readonly<Record<string, string>> | undefined
  readonly value: number
}

export interface Metrics {
  /** `n` runs of `task` were created (not an idempotent repeat, not a folded start). */
  readonly runsStarted: (task: string, n: number) => void
  /** An attempt began, `waitSeconds` after its run was due. */
  readonly attemptStarted: (task: string, waitSeconds: number) => void
  /** An attempt ended with the outcome its pool decided, after `seconds` (whether the end was then written or refused). */
  readonly attemptEnded: (task: string, outcome: AttemptOutcome, seconds: number) => void
  /**
   * The end statement finished a run of `task` (`succeeded`, `failed`,
   * `cancelled`): its worker's end was written (not refused), or the lease
   * reclaim ended it. `runSeconds`: since its first attempt began, when known.
   */
  readonly runFinished: (task: string, outcome: AttemptOutcome, runSeconds: number | undefined) => void
  /** A run of `task` not yet taken (queued, or sleeping) was cancelled over the API: it finishes without an attempt. */
  readonly waitingCancelled: (task: string) => void
  /**
   * A statement of this program appended `n` events to the runs' logs: the
   * system's (`run.queued`, `run.started`, ends, cancels, `run.throttled`) and
   * those task bodies emit (`ctx.emit`, journal entries).
   */
  readonly eventsAppended: (n: number) => void
  /** The relay published `n` events. */
  readonly eventsRelayed: (n: number) => void
  /** Queues a worker pool of this program serves: `runstream_queued_runs` reads 0 for them when nothing waits. */
  readonly queuesServed: (queues: ReadonlyArray<string>) => void
  /** The queues known to this program: `default`, and those its pools serve. */
  readonly knownQueues: () => ReadonlySet<string>
  /** A gauge read at each `snapshot` while the scope lasts (its readings as they are then). */
  readonly gauge: (
    name: string,
    description: string,
    read: Effect.Effect<ReadonlyArray<Reading>>
  ) => Effect.Effect<void, never, Scope.Scope>
  /** Everything now: the counters and histograms, then each gauge read. */
  readonly snapshot: Effect.Effect<ReadonlyArray<MetricPair.MetricPair.Untyped>>
}

export const Metrics = Context.GenericTag<Metrics>("runstream/Metrics")

/** Seconds, from a millisecond up to an hour: waits and durations alike. */
const secondsBoundaries = MetricBoundaries.fromIterable([
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
  900,
  3600
])

interface Gauge {
  readonly name: string
  readonly description: string
  readonly read: Effect.Effect<ReadonlyArray<Reading>>
}

type Hook = MetricHook.MetricHook<number, unknown>

/** The hooks of one task, found when its first figure comes (the hot paths then do one `Map` lookup). */
interface TaskHooks {
  readonly started: Hook
  readonly wait: Hook
  readonly attemptDuration: Hook
  readonly runDuration: Hook
  /** By outcome, found on first use. */
  readonly attempts: Map<AttemptOutcome, Hook>
  readonly finished: Map<AttemptOutcome, Hook>
}

/** A registry of its own, and the hooks of each task found once. */
export const make = Effect.sync((): Metrics => {
  const registry = MetricRegistry.make()
  const hook = (key: MetricKey.MetricKey.Untyped) => registry.get(key) as unknown as Hook
  const counter = (name: string, description: string) => MetricKey.counter(name, { description })
  const histogram = (name: string, description: string) => MetricKey.histogram(name, secondsBoundaries, description)
  const byTask = new Map<string, TaskHooks>()
  const hooksOf = (task: string): TaskHooks => {
    let hooks = byTask.get(task)
    if (hooks === undefined) {
      hooks = {
        started: hook(MetricKey.tagged(counter(names.runsStarted, "Runs created, by task."), "task", task)),
        wait: hook(MetricKey.tagged(histogram(names.queueWait, "From a run's due time to its attempt's start, by task."), "task", task)),
        attemptDuration: hook(
          MetricKey.tagged(histogram(names.attemptDuration, "How long each attempt ran, from its start to its end, by task."), "task", task)
        ),
        runDuration: hook(
          MetricKey.tagged(
            histogram(names.runDuration, "How long each finished run took, from its first attempt's start to its end, by task."),
            "task",
            task
          )
        ),
        attempts: new Map(),
        finished: new Map()
      }
      byTask.set(task, hooks)
    }
    return hooks
  }
  const byOutcome = (hooks: Map<AttemptOutcome, Hook>, task: string, outcome: AttemptOutcome, name: string, description: string) => {
    let found = hooks.get(outcome)
    if (found === undefined) {
      found = hook(MetricKey.taggedWithLabels(counter(name, description), [MetricLabel.make("task", task), MetricLabel.make("outcome", outcome)]))
      hooks.set(outcome, found)
    }
    return found
  }
  const finished = (task: string, outcome: AttemptOutcome) =>
    byOutcome(
      hooksOf(task).finished,
      task,
      outcome,
      names.runsFinished,
      "Runs this program's statements finished (its workers' ends as written, its lease reclaim, its cancels of waiting runs), by task and outcome."
    ).update(1)
  const appended = hook(counter(names.eventsAppended, "Events this program's statements appended to the runs' logs (the system's and task bodies')."))
  const relayed = hook(counter(names.eventsRelayed, "Events published by this program's outbox relay."))
  const gauges = new Set<Gauge>()
  // Never forgotten: a queue's series stays (at 0) after its pool stops, as a counter's would.
  const queues = new Set<string>(["default"])

  return {
    runsStarted: (task, n) => hooksOf(task).started.update(n),
    attemptStarted: (task, waitSeconds) => hooksOf(task).wait.update(Math.max(0, waitSeconds)),
    attemptEnded: (task, outcome, seconds) => {
      const hooks = hooksOf(task)
      byOutcome(hooks.attempts, task, outcome, names.attempts, "Attempts ended, by task and outcome.").update(1)
      hooks.attemptDuration.update(Math.max(0, seconds))
    },
    runFinished: (task, outcome, runSeconds) => {
      if (!finishes(outcome)) return
      finished(task, outcome)
      if (runSeconds !== undefined) hooksOf(task).runDuration.update(Math.max(0, runSeconds))
    },
    waitingCancelled: (task) => finished(task, "cancelled"),
    eventsAppended: (n) => {
      if (n > 0) appended.update(n)
    },
    eventsRelayed: (n) => {
      if (n > 0) relayed.update(n)
    },
    queuesServed: (names) => {
      for (const name of names) queues.add(name)
    },
    knownQueues: () => queues,
    gauge: (name, description, read) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const gauge: Gauge = { name, description, read }
          gauges.add(gauge)
          return gauge
        }),
        (gauge) => Effect.sync(() => gauges.delete(gauge))
      ),
    snapshot: Effect.gen(function*() {
      const pairs = registry.snapshot()
      for (const gauge of [...gauges]) {
        for (const reading of yield* gauge.read) {
          let key: MetricKey.MetricKey.Untyped = MetricKey.gauge(gauge.name, { description: gauge.description })
          for (const [label, value] of Object.entries(reading.labels ?? {})) key = MetricKey.tagged(key, label, value)
          pairs.push(MetricPair.unsafeMake(key, MetricState.gauge(reading.value)))
        }
      }
      return pairs
    })
  }
})

/**
 * The metrics service, with the gauges the database answers: queued runs
 * per queue (due and not taken: the ready index's rows) and the relay's lag
 * (the age of the oldest event in the outbox). A failed read reports nothing
 * rather than failing the scrape.
 */
export const layer = Layer.scoped(
  Metrics,
  Effect.gen(function*() {
    const metrics = yield* make
    const sql = yield* SqlClient.SqlClient
    const quiet = <A>(read: Effect.Effect<ReadonlyArray<A>, unknown>) =>
      Effect.catchAllCause(read, (cause) => Effect.as(Effect.logDebug("a metric's read failed", cause), []))
    yield* metrics.gauge(
      names.queued,
      "Runs due and not yet taken by a worker (queued), by queue (read when scraped; 0 for the queues this program's workers serve, and default).",
      // Times from the program's clock, as the queue's own (docs/decisions.md).
      quiet(Effect.map(
        Effect.flatMap(now, (at) =>
          sql<{ queue: string; count: number }>`
          SELECT queue, count(*)::integer AS count FROM runstream_jobs
          WHERE locked_until IS NULL AND run_at <= ${at} GROUP BY queue`),
        (rows) => {
          // A known queue with nothing waiting reads 0 (a series that vanishes reads as no data, not as none waiting).
          const readings: Array<Reading> = rows.map((row) => ({ labels: { queue: row.queue }, value: row.count }))
          for (const queue of metrics.knownQueues()) {
            if (!rows.some((row) => row.queue === queue)) readings.push({ labels: { queue }, value: 0 })
          }
          return readings
        }
      ))
    )
    yield* metrics.gauge(
      names.relayLag,
      "Age of the oldest event not yet published by a relay, 0 when none waits (read when scraped).",
      quiet(Effect.map(
        // The oldest row by key; its first entry's time (`Outbox.row`: the 6th
        // element, epoch ms), or the run's log for rows written before 0006.
        Effect.flatMap(now, (at) =>
          sql<{ lag: number | null }>`
          SELECT greatest(0, extract(epoch FROM ${at}::timestamptz) - coalesce(
            ((('[' || o.entries || ']')::json -> 0 ->> 5)::float8 / 1000),
            (SELECT extract(epoch FROM min(e.at)) FROM runstream_events e
              WHERE e.run_id = o.run_ids[1] AND e.seq = o.seq_froms[1])
          ))::float8 AS lag
          FROM (SELECT * FROM runstream_outbox ORDER BY id LIMIT 1) o`),
        (rows) => [{ value: rows[0]?.lag ?? 0 }]
      ))
    )
    const pool = yield* Effect.serviceOption(DatabasePool)
    if (Option.isSome(pool)) {
      const { value } = pool
      yield* metrics.gauge(
        names.poolConnections,
        "The program's database connections: in use, idle, and requests waiting for one.",
        Effect.sync(() => [
          { labels: { state: "in_use" }, value: value.totalCount - value.idleCount },
          { labels: { state: "idle" }, value: value.idleCount },
          { labels: { state: "waiting" }, value: value.waitingCount }
        ])
      )
    }
    return metrics
  })
)

/** The program's metrics, if it has them. */
export const option = Effect.serviceOption(Metrics).pipe(Effect.map(Option.getOrUndefined))
