import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Concurrency and rate limits per key (see `queue/Limits.ts`).
 *
 * A job of a task with a limit carries its key (`concurrency_key`; '' for a
 * run started without one); every other job has none, and only those are in
 * the ready index the plain claim walks, so runs without a limit are claimed
 * as before and never walk past limited ones. Limited jobs have their own
 * ready index, by task and key.
 *
 * `runstream_limits` holds a row per task and key: how many of its runs are
 * leased (`running`) and waiting (`waiting`), the limits in force (written by
 * each start, from its program's task definitions), the starts of the last
 * rate period (`starts`, at most `rate_limit` of them), and when the claim
 * last served the key (`served`, the round-robin order across keys). The
 * claim locks the rows of the keys it serves, so two claims never count the
 * same free slot.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runstream_jobs ADD COLUMN concurrency_key text, ADD COLUMN throttled boolean NOT NULL DEFAULT false`
  // The key a run of a limited task was started with, shown with it and kept by a replay.
  // Written once, at the run's creation, and not indexed: a run's updates stay heap-only.
  yield* sql`ALTER TABLE runstream_runs ADD COLUMN concurrency_key text`
  yield* sql`DROP INDEX runstream_jobs_ready`
  yield* sql`
    CREATE INDEX runstream_jobs_ready ON runstream_jobs (queue, priority DESC, run_at, run_id)
    WHERE locked_until IS NULL AND concurrency_key IS NULL`
  yield* sql`
    CREATE INDEX runstream_jobs_limited ON runstream_jobs (task, concurrency_key, priority DESC, run_at, run_id)
    WHERE locked_until IS NULL AND concurrency_key IS NOT NULL`
  yield* sql`
    CREATE TABLE runstream_limits (
      task text NOT NULL,
      key text NOT NULL,
      running integer NOT NULL DEFAULT 0 CHECK (running >= 0),
      waiting integer NOT NULL DEFAULT 0 CHECK (waiting >= 0),
      max_running integer CHECK (max_running >= 1),
      rate_limit integer CHECK (rate_limit >= 1),
      rate_period_ms integer CHECK (rate_period_ms >= 1),
      starts timestamptz[] NOT NULL DEFAULT '{}',
      served timestamptz NOT NULL,
      PRIMARY KEY (task, key)
    )`
  // The keys a claim may serve: runs waiting, a slot free.
  yield* sql`
    CREATE INDEX runstream_limits_open ON runstream_limits (served, task, key)
    WHERE waiting > 0 AND (max_running IS NULL OR running < max_running)`
})
