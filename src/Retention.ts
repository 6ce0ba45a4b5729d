/**
 * Retention: finished runs (succeeded, failed, cancelled) and their events are
 * deleted once they finished more than `RUNSTREAM_RETENTION` ago (7 days by
 * default; `off` keeps them), or a task's own `retention` (`Task.make`).
 *
 * One fiber per program with workers, every `RUNSTREAM_RETENTION_INTERVAL`,
 * and one process at a time: a pass holds the `retention` lease row
 * (`runstream_leases`), renewed before each batch, and the holder keeps it
 * from pass to pass (another process takes over when it lapses, or at once
 * when the holder stops).
 *
 * A pass walks the runs' primary key: ids are UUIDv7, so the runs created
 * before the cut-off are a prefix of the key, read in order with no index on
 * a column a run's lifecycle updates (see migration 0005); a run of a task
 * with its own retention is walked by the task's index `(task, id)`. Each
 * statement looks at no more than `batchSize` runs and deletes at most the
 * runs whose logs hold `eventBudget` events between them (and their events,
 * in the same statement), then the pass pauses three times as long as the
 * statement took, so deleting a backlog takes at most about a quarter of one
 * connection (`pauseFactor`).
 *
 * Followers: a run is deleted only after it finished, so a follower that
 * stays to the end has had its terminal event; one still reading an old
 * run's log when it is deleted reads an empty page and its stream ends, and
 * a follower that comes back finds no run (404).
 * @since 0.3.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Config, ConfigError, Context, Duration, Effect, Either, Layer, Option } from "effect"
import { makeInstanceId, paddedId, timeDigits } from "./domain/Ids.ts"
import { parseRetention, retentionMessage } from "./domain/RetentionPeriod.ts"
import { now, plusMillis } from "./internal/time.ts"
import * as Task from "./Task.ts"

/** @category config */
export const RetentionConfig = Config.all({
  /** none: finished runs are kept. */
  retention: Config.string("RUNSTREAM_RETENTION").pipe(
    Config.withDefault("7 days"),
    Config.mapOrFail((text) => {
      const parsed = parseRetention(text.trim())
      return parsed === undefined
        ? Either.left(ConfigError.InvalidData(["RUNSTREAM_RETENTION"], `${retentionMessage}; got "${text.slice(0, 100)}"`))
        : Either.right(parsed)
    })
  ),
  interval: Config.duration("RUNSTREAM_RETENTION_INTERVAL").pipe(
    Config.validate({
      message: "must be a duration from 1 second to 1 day",
      validation: (d) => Duration.between(d, { minimum: Duration.seconds(1), maximum: Duration.days(1) })
    }),
    Config.withDefault(Duration.minutes(1))
  )
})

export interface RetentionSettings {
  /** How long finished runs are kept; `none`: for good (default: `RUNSTREAM_RETENTION`). */
  readonly retention?: Option.Option<Duration.DurationInput> | undefined
  /**
   * How often a pass runs, the first one interval after the start (default:
   * `RUNSTREAM_RETENTION_INTERVAL`, 1 minute); `Duration.infinity`: only by `deleteNow`.
   */
  readonly interval?: Duration.DurationInput | undefined
}

/** What one pass did. */
export interface PassResult {
  /** false when another process holds the lease: this one deleted nothing. */
  readonly held: boolean
  readonly runs: number
  readonly events: number
  /** Statements run. */
  readonly batches: number
}

export class Retention extends Context.Tag("runstream/Retention")<Retention, {
  /** One pass now, all batches without pauses (tests and operators). */
  readonly deleteNow: Effect.Effect<PassResult, SqlError.SqlError>
  /** This process's name on the lease. */
  readonly holder: string
}>() {}

/** Runs one statement looks at, at most. */
export const batchSize = 1000

/**
 * A pass pauses this many times as long as its last statement took. At 1
 * (half of a connection), deleting a backlog of old runs beside a drain of
 * 100,000 runs cost the drain 15-27 % of its throughput on 2 cores (14,000
 * old runs deleted a second); a quarter still deletes thousands a second,
 * far more than any day's runs.
 */
export const pauseFactor = 3
/** Events one statement deletes, at most (unless its first run alone has more). */
export const eventBudget = 100_000
/** The lease's name in `runstream_leases`. */
export const leaseName = "retention"

const firstId = paddedId("", "0")

/** A walk over the runs one retention applies to: all but `excluded` tasks, or one `task`. */
interface Walk {
  readonly key: string
  readonly retention: Duration.Duration
  readonly task?: string | undefined
  readonly excluded: ReadonlyArray<string>
}

export { maxRetention, minRetention, parseRetention, retentionMessage } from "./domain/RetentionPeriod.ts"

export const make = (options: { readonly retention: Option.Option<Duration.Duration>; readonly interval: Duration.Duration }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const registry = yield* Task.TaskRegistry
    const holder = yield* makeInstanceId("retention")
    const intervalMs = Duration.toMillis(options.interval)
    // Held from pass to pass when they come often (up to an hour apart): long
    // enough to outlast the pause between two, short enough to be taken over.
    const leaseMs = Math.min(Math.max(3 * intervalMs, 30_000), 60 * 60_000)

    // Tasks with their own retention (checked by `Task.layerRegistry`).
    const overrides = registry.names.flatMap((name) => {
      const task = Option.getOrUndefined(registry.get(name))?.task
      const parsed = task?.retention === undefined ? undefined : parseRetention(task.retention)
      return parsed === undefined ? [] : [{ task: name, retention: parsed }]
    })
    const excluded = overrides.map((o) => o.task)
    const walks: ReadonlyArray<Walk> = [
      ...Option.match(options.retention, {
        onNone: () => [],
        onSome: (retention) => [{ key: "", retention, excluded }]
      }),
      ...overrides.flatMap(({ retention, task }) =>
        Option.match(retention, {
          onNone: () => [],
          onSome: (retention) => [{ key: task, retention, task, excluded: [] }]
        })
      )
    ]
    /** Where each walk starts its next pass (in this process). */
    const cursors = new Map<string, string>()

    const acquire = Effect.gen(function*() {
      const at = yield* now
      const rows = yield* sql<{ holder: string }>`
        INSERT INTO runstream_leases (name, holder, until) VALUES (${leaseName}, ${holder}, ${plusMillis(at, leaseMs)})
        ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
        WHERE runstream_leases.holder = excluded.holder OR runstream_leases.until < ${at}
        RETURNING holder`
      return rows.length > 0
    })

    const release = sql`DELETE FROM runstream_leases WHERE name = ${leaseName} AND holder = ${holder}`.pipe(
      Effect.catchAllCause((cause) => Effect.logDebug("retention lease not released (it lapses)", cause))
    )

    /**
     * One statement of a walk: looks at the next `batchSize` runs after
     * `after` created before the cut-off, deletes those finished before it
     * (and their events and signals). Returns where to go on, and the first run it kept
     * that a later pass must look at again (not finished yet, or lately).
     */
    const batch = (walk: Walk, after: string, at: Date) =>
      Effect.gen(function*() {
        const before = new Date(at.getTime() - Duration.toMillis(walk.retention))
        // A run finished before `before` was created (and its id made) before it.
        const to = paddedId(timeDigits(before.getTime() - 1), "f")
        const [row] = yield* sql<{
          scanned: number
          runs: number
          events: number
          last: string | null
          cut: string | null
          revisit: string | null
        }>`
          WITH scanned AS (
            SELECT id, task, status, finished_at, last_seq FROM runstream_runs
            WHERE id > ${after}::uuid AND id <= ${to}::uuid
              AND (${walk.task ?? null}::text IS NULL OR task = ${walk.task ?? null})
            ORDER BY id LIMIT ${batchSize}
          ), finished AS (
            SELECT id, sum(last_seq) OVER (ORDER BY id) AS events, row_number() OVER (ORDER BY id) AS n FROM scanned
            WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ${before}
              AND task <> ALL(${walk.excluded}::text[])
          ), doomed AS (
            -- (uuid has no min() before Postgres 18: orders and limits instead.)
            SELECT id FROM finished WHERE events <= ${eventBudget} OR n = 1
          ), gone_events AS (
            DELETE FROM runstream_events WHERE run_id = ANY(ARRAY(SELECT id FROM doomed)) RETURNING 1
          ), gone_signals AS (
            DELETE FROM runstream_signals WHERE run_id = ANY(ARRAY(SELECT id FROM doomed))
          ), gone AS (
            DELETE FROM runstream_runs WHERE id = ANY(ARRAY(SELECT id FROM doomed)) RETURNING id
          ), kept AS (
            SELECT id FROM scanned
            WHERE task <> ALL(${walk.excluded}::text[]) AND id NOT IN (SELECT id FROM finished)
            ORDER BY id LIMIT 1
          )
          SELECT (SELECT count(*)::integer FROM scanned) AS scanned,
            (SELECT count(*)::integer FROM gone) AS runs,
            (SELECT count(*)::integer FROM gone_events) AS events,
            (SELECT id::text FROM scanned ORDER BY id DESC LIMIT 1) AS last,
            -- Cut by the event budget: go on after the last run deleted.
            CASE WHEN (SELECT count(*) FROM finished) > (SELECT count(*) FROM doomed)
              THEN (SELECT id::text FROM doomed ORDER BY id DESC LIMIT 1) END AS cut,
            -- The next pass starts just before the first run kept.
            CASE WHEN EXISTS (SELECT 1 FROM kept) THEN coalesce(
              (SELECT id::text FROM scanned WHERE id < (SELECT id FROM kept) ORDER BY id DESC LIMIT 1), ${after}
            ) END AS revisit`
        return row!
      })

    /** A pass: each walk from its cursor to its cut-off; `pause` between statements when scheduled. */
    const pass = (pause: boolean) =>
      Effect.gen(function*() {
        const total = { held: true, runs: 0, events: 0, batches: 0 }
        for (const walk of walks) {
          let after = cursors.get(walk.key) ?? firstId
          let revisit: string | undefined
          for (;;) {
            if (!(yield* acquire)) return { ...total, held: false }
            const started = yield* now
            const result = yield* batch(walk, after, started)
            total.batches++
            total.runs += result.runs
            total.events += result.events
            if (revisit === undefined && result.revisit !== null) revisit = result.revisit
            const more = result.cut !== null || result.scanned === batchSize
            after = result.cut ?? result.last ?? after
            if (!more) break
            if (pause) yield* Effect.sleep(Duration.millis(Math.max(1, pauseFactor * ((yield* now).getTime() - started.getTime()))))
          }
          cursors.set(walk.key, revisit ?? after)
        }
        if (total.runs > 0) yield* Effect.logInfo(`retention deleted ${total.runs} run(s) and ${total.events} event(s)`)
        return total as PassResult
      }).pipe(Effect.withSpan("Retention.pass"))

    if (walks.length > 0) {
      // The first pass one interval after the start (an infinite one: none).
      yield* Effect.sleep(options.interval).pipe(
        Effect.zipRight(pass(true)),
        Effect.catchAllCause((cause) => Effect.logWarning("retention pass failed", cause)),
        Effect.forever,
        Effect.annotateLogs({ component: "Retention" }),
        Effect.forkScoped
      )
      yield* Effect.addFinalizer(() => release)
    }
    return Retention.of({ deleteNow: pass(false), holder })
  })

/** The retention of this program's workers (defaults: `RetentionConfig`). */
export const layer = (settings: RetentionSettings = {}) =>
  Layer.scoped(
    Retention,
    Effect.flatMap(RetentionConfig, (config) =>
      make({
        retention: settings.retention === undefined ? config.retention : Option.map(settings.retention, Duration.decode),
        interval: settings.interval === undefined ? config.interval : Duration.decode(settings.interval)
      }))
  )

/** No retention in this program (its runs are kept, or another program deletes them). */
export const layerNone = Layer.succeed(
  Retention,
  Retention.of({ deleteNow: Effect.succeed({ held: false, runs: 0, events: 0, batches: 0 }), holder: "none" })
)
