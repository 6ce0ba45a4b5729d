/**
 * The figures of `GET /v1/stats`, read so that their cost follows the live
 * backlog and the last hours' runs, never the whole history:
 * - queued and running runs, by task and by queue: `runstream_jobs`, which
 *   holds only those (rows leave when a run ends);
 * - runs that ended in the last hour (counts, per minute, percentiles): the
 *   runs created in the last `lookback` (24 h), newest first and at most
 *   `maxScanned` (100,000) of them, read down the primary key (ids are UUIDv7: a range
 *   of ids is a range of creation times); `finished_at` is tested on their
 *   rows, as no index of `runstream_runs` may name a column a run's updates
 *   change (they stay heap-only, docs/decisions.md).
 * @since 0.3.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Context, DateTime, Duration, Effect, Layer } from "effect"
import { paddedId, timeDigits } from "./domain/Ids.ts"
import { type RunStatus } from "./domain/Run.ts"
import { type Stats as StatsBody, windowMinutes } from "./domain/Stats.ts"
import { now } from "./internal/time.ts"

export interface StatsOptions {
  /** Runs created longer ago than this are not read for the last hour's figures. */
  readonly lookback: Duration.DurationInput
  /** The most runs one read takes for the last hour's figures (the newest of the lookback). */
  readonly maxScanned: number
}

/**
 * 24 hours, and 100,000 runs: on this machine a read of 100,000 runs takes
 * 0.2-0.4 s (docs/decisions.md); at a higher rate of runs than that per 24
 * hours, the figures cover the newest 100,000 (`window.truncated`).
 */
export const defaults: StatsOptions = { lookback: Duration.hours(24), maxScanned: 100_000 }

export class Stats extends Context.Tag("runstream/Stats")<Stats, {
  readonly read: Effect.Effect<StatsBody, SqlError.SqlError>
}>() {}

const minuteMs = 60_000

/** The smallest UUIDv7 of a run created at `millis` or later. */
const firstIdAt = (millis: number) => paddedId(timeDigits(millis), "0")

interface LiveRow {
  readonly task: string
  readonly queue: string
  readonly running: boolean
  /** Unclaimed, and its run suspended by a durable sleep (status `waiting`). */
  readonly sleeping: boolean
  readonly due: boolean
  readonly count: number
  readonly oldest: Date | null
}

interface WindowRow {
  readonly truncated: boolean
  readonly ended: ReadonlyArray<{ readonly task: string; readonly status: RunStatus; readonly count: number }> | null
  readonly minutes: ReadonlyArray<{ readonly minute: number; readonly status: RunStatus; readonly count: number }> | null
  readonly wait: ReadonlyArray<number | null> | null
  readonly duration: ReadonlyArray<number | null> | null
}

const utc = (millis: number) => DateTime.unsafeMake(millis)

export const make = (options: StatsOptions = defaults) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const lookbackMs = Duration.toMillis(options.lookback)

    const read = Effect.gen(function*() {
      const at = yield* now
      const nowMs = at.getTime()
      const firstMinute = Math.floor(nowMs / minuteMs) * minuteMs - (windowMinutes - 1) * minuteMs
      const since = new Date(firstMinute)
      const createdSince = nowMs - lookbackMs

      const live = yield* sql<LiveRow>`
        SELECT task, queue, locked_until IS NOT NULL AS running,
          -- A claimed job keeps the wait it woke from: running wins.
          locked_until IS NULL AND waiting_for IS NOT NULL AS sleeping,
          run_at <= ${at} AS due, count(*)::integer AS count, min(run_at) AS oldest
        FROM runstream_jobs GROUP BY 1, 2, 3, 4, 5`

      // One pass down the primary key from its right end over the newest runs
      // of the lookback, keeping only those that ended in the window: the
      // pass is streamed, not held.
      const [window] = yield* sql<WindowRow>`
        WITH ended AS MATERIALIZED (
          SELECT task, status, run_at, started_at, finished_at, n, ended AND n <= ${options.maxScanned} AS ended FROM (
            SELECT task, status, run_at, started_at, finished_at, row_number() OVER (ORDER BY id DESC) AS n,
              (finished_at >= ${since} AND status IN ('succeeded', 'failed', 'cancelled')) IS TRUE AS ended
            FROM runstream_runs
            WHERE id >= ${firstIdAt(createdSince)}::uuid
            ORDER BY id DESC LIMIT ${options.maxScanned + 1}
          ) recent
          -- One row past the bound, if there is one, says that the bound cut the read short.
          WHERE (ended AND n <= ${options.maxScanned}) OR n > ${options.maxScanned}
        )
        SELECT
          EXISTS (SELECT 1 FROM ended WHERE n > ${options.maxScanned}) AS truncated,
          (SELECT json_agg(t) FROM (SELECT task, status, count(*)::integer AS count FROM ended WHERE ended GROUP BY 1, 2) t) AS ended,
          (SELECT json_agg(m) FROM (
            SELECT (extract(epoch FROM date_trunc('minute', finished_at)) * 1000)::bigint AS minute, status, count(*)::integer AS count
            FROM ended WHERE ended GROUP BY 1, 2) m) AS minutes,
          (SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
            ORDER BY greatest(0, extract(epoch FROM started_at - run_at) * 1000))
            FROM ended WHERE ended AND started_at IS NOT NULL) AS wait,
          (SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
            ORDER BY greatest(0, extract(epoch FROM finished_at - started_at) * 1000))
            FROM ended WHERE ended AND started_at IS NOT NULL) AS duration`

      const runs = new Map<string, { task: string; status: RunStatus; count: number }>()
      const queues = new Map<string, { queue: string; waiting: number; scheduled: number; running: number; oldest: number | null }>()
      for (const row of live) {
        const status: RunStatus = row.running ? "running" : row.sleeping ? "waiting" : "queued"
        const key = `${row.task}\u0000${status}`
        const entry = runs.get(key) ?? { task: row.task, status, count: 0 }
        entry.count += row.count
        runs.set(key, entry)
        const queue = queues.get(row.queue) ?? { queue: row.queue, waiting: 0, scheduled: 0, running: 0, oldest: null }
        if (row.running) queue.running += row.count
        else if (row.due) {
          queue.waiting += row.count
          const oldest = row.oldest!.getTime()
          queue.oldest = queue.oldest === null ? oldest : Math.min(queue.oldest, oldest)
        } else queue.scheduled += row.count
        queues.set(row.queue, queue)
      }
      for (const row of window?.ended ?? []) runs.set(`${row.task}\u0000${row.status}`, { ...row })

      const perMinute = Array.from({ length: windowMinutes }, (_, i) => ({
        minute: utc(firstMinute + i * minuteMs),
        succeeded: 0,
        failed: 0,
        cancelled: 0
      }))
      for (const row of window?.minutes ?? []) {
        const slot = perMinute[Math.round((Number(row.minute) - firstMinute) / minuteMs)]
        if (slot !== undefined && (row.status === "succeeded" || row.status === "failed" || row.status === "cancelled")) {
          slot[row.status] += row.count
        }
      }
      const percentiles = (values: ReadonlyArray<number | null> | null) => ({
        p50: values?.[0] ?? null,
        p95: values?.[1] ?? null
      })

      return {
        at: utc(nowMs),
        runs: [...runs.values()].sort((a, b) => a.task.localeCompare(b.task) || a.status.localeCompare(b.status)),
        queues: [...queues.values()]
          .sort((a, b) => a.queue.localeCompare(b.queue))
          .map(({ oldest, ...queue }) => ({ ...queue, oldestWaitingSince: oldest === null ? null : utc(oldest) })),
        finishedPerMinute: perMinute,
        queueWaitMs: percentiles(window?.wait ?? null),
        durationMs: percentiles(window?.duration ?? null),
        window: { since: utc(since.getTime()), createdSince: utc(createdSince), truncated: window?.truncated ?? false }
      } satisfies StatsBody
    }).pipe(Effect.withSpan("Stats.read"))

    return Stats.of({ read })
  })

/** @category layers */
export const layer = (options: StatsOptions = defaults) => Layer.effect(Stats, make(options))
