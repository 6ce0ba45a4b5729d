import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Signals (issue 20): `runstream_signals` keeps the first signal of each name
 * sent to a run (its primary key makes a second one a no-op), sent before the
 * run waits for it or while it waits; the run's journal reads it when the body
 * calls `ctx.waitForSignal`. Retention deletes a run's signals with the run.
 *
 * `runstream_jobs.signalled` closes the race between a signal and the attempt
 * about to end waiting for it: a signal sent while an attempt holds the run
 * sets it (on the job row, which the waiting end's update re-reads after the
 * row lock it may wait for), and the waiting end then makes the job due at
 * once instead of at its deadline. A constant default: no table rewrite.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE runstream_signals (
      run_id uuid NOT NULL,
      name text NOT NULL,
      data jsonb NOT NULL,
      at timestamptz NOT NULL,
      PRIMARY KEY (run_id, name)
    )`
  yield* sql`ALTER TABLE runstream_jobs ADD COLUMN signalled boolean NOT NULL DEFAULT false`
})
