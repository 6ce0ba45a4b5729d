import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Limits declared on a queue as well as on a task (see `queue/Limits.ts`).
 *
 * A limit's row belongs to a *scope*: `task:<name>` for a task's limits,
 * `queue:<name>` for a queue's (the prefixes keep a task and a queue of the
 * same name apart). A job of a limited run carries its scope (`limit_scope`)
 * beside its key, and the limited ready index is by scope and key, so the
 * claim finds a queue's keys' runs whatever their tasks.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runstream_jobs ADD COLUMN limit_scope text`
  yield* sql`UPDATE runstream_jobs SET limit_scope = 'task:' || task WHERE concurrency_key IS NOT NULL`
  yield* sql`DROP INDEX runstream_jobs_limited`
  yield* sql`
    CREATE INDEX runstream_jobs_limited ON runstream_jobs (limit_scope, concurrency_key, priority DESC, run_at, run_id)
    WHERE locked_until IS NULL AND concurrency_key IS NOT NULL`
  yield* sql`ALTER TABLE runstream_limits RENAME COLUMN task TO scope`
  yield* sql`UPDATE runstream_limits SET scope = 'task:' || scope`
})
