import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Runs, their event logs, the queue's hot set and the outbox.
 *
 * The queue holds only runs waiting or running (rows leave when a run ends) so
 * `SKIP LOCKED` scans stay small; the outbox holds only what the relay has not
 * published yet. Runs and events are the history.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE runstream_runs (
      id uuid PRIMARY KEY,
      task text NOT NULL,
      queue text NOT NULL,
      status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
      input jsonb,
      output jsonb,
      error jsonb,
      attempt integer NOT NULL DEFAULT 0,
      max_attempts integer NOT NULL CHECK (max_attempts >= 1),
      priority integer NOT NULL DEFAULT 0,
      timeout_ms integer,
      idempotency_key text UNIQUE,
      cancel_requested boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL,
      run_at timestamptz NOT NULL,
      started_at timestamptz,
      finished_at timestamptz,
      last_seq integer NOT NULL DEFAULT 0
    )`
  yield* sql`CREATE INDEX runstream_runs_status ON runstream_runs (status, id)`
  yield* sql`CREATE INDEX runstream_runs_task ON runstream_runs (task, id)`
  yield* sql`
    CREATE TABLE runstream_events (
      run_id uuid NOT NULL,
      seq integer NOT NULL,
      type text NOT NULL,
      data jsonb,
      at timestamptz NOT NULL,
      PRIMARY KEY (run_id, seq)
    )`
  yield* sql`
    CREATE TABLE runstream_jobs (
      run_id uuid PRIMARY KEY,
      queue text NOT NULL,
      task text NOT NULL,
      priority integer NOT NULL,
      run_at timestamptz NOT NULL,
      attempt integer NOT NULL DEFAULT 0,
      locked_by text,
      locked_until timestamptz
    ) WITH (fillfactor = 70)`
  yield* sql`
    CREATE INDEX runstream_jobs_ready ON runstream_jobs (queue, priority DESC, run_at, run_id)
    WHERE locked_until IS NULL`
  yield* sql`
    CREATE INDEX runstream_jobs_leased ON runstream_jobs (locked_until)
    WHERE locked_until IS NOT NULL`
  yield* sql`
    CREATE TABLE runstream_outbox (
      id bigserial PRIMARY KEY,
      run_id uuid NOT NULL,
      task text NOT NULL,
      seq_from integer NOT NULL,
      seq_to integer NOT NULL
    )`
})
