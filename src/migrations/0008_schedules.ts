import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Schedules (`RunSchedule.cron` / `.every`, `/v1/schedules`) and the runs
 * their ticks started.
 *
 * A schedule's row is the lock of its ticks: a ticker claims due rows with
 * `FOR UPDATE SKIP LOCKED` on `next_tick_at` and moves it past the ticks it
 * started, in the transaction that holds the lock. The run of a tick carries
 * the idempotency key `schedule:<name>:<tick>`, so a tick started twice (its
 * ticker crashed after the start, before the commit) is one run.
 *
 * The runs of a schedule are found through `runstream_schedule_runs` (the
 * newest 100 per schedule are kept), not a column of `runstream_runs`: no
 * index is added there, and a run's updates stay heap-only (0005).
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE runstream_schedules (
      name text PRIMARY KEY,
      task text NOT NULL,
      input jsonb,
      options jsonb NOT NULL DEFAULT '{}',
      cron text,
      every text,
      every_ms bigint,
      timezone text,
      catch_up text NOT NULL CHECK (catch_up IN ('latest', 'none', 'all')),
      source text NOT NULL CHECK (source IN ('code', 'api')),
      paused boolean NOT NULL DEFAULT false,
      next_tick_at timestamptz NOT NULL,
      last_tick_at timestamptz,
      last_run_id uuid,
      skipped_ticks bigint NOT NULL DEFAULT 0,
      last_error text,
      created_at timestamptz NOT NULL,
      updated_at timestamptz NOT NULL,
      CHECK ((cron IS NULL) <> (every_ms IS NULL))
    )`
  yield* sql`CREATE INDEX runstream_schedules_due ON runstream_schedules (next_tick_at) WHERE NOT paused`
  yield* sql`
    CREATE TABLE runstream_schedule_runs (
      schedule text NOT NULL,
      tick timestamptz NOT NULL,
      run_id uuid NOT NULL,
      PRIMARY KEY (schedule, tick)
    )`
})
