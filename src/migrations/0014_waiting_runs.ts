import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Runs that wait (issue 20, durable sleep): the status `waiting`, and what a
 * waiting run's job waits for (`waiting_for`, `sleep:<name>`), which the
 * stats read from the jobs table alone to tell a sleeping run from a queued
 * one. The column is set by the end that suspends the attempt and by every
 * other end (cleared); a claimed job keeps it, the stats count a locked job
 * as running whatever it says.
 *
 * The new status check is added `NOT VALID` and then validated: the
 * validation reads the table under a lock that lets writes through, where
 * a plain `ADD CONSTRAINT` would hold an exclusive lock for the whole scan.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runstream_runs DROP CONSTRAINT runstream_runs_status_check`
  yield* sql`
    ALTER TABLE runstream_runs ADD CONSTRAINT runstream_runs_status_check
    CHECK (status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')) NOT VALID`
  yield* sql`ALTER TABLE runstream_runs VALIDATE CONSTRAINT runstream_runs_status_check`
  yield* sql`ALTER TABLE runstream_jobs ADD COLUMN waiting_for text`
})
