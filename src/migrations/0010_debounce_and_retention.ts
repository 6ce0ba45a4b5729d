import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Debounced starts and the retention's lease.
 *
 * A debounced run's job carries its key (`debounce_key`) while it waits to be
 * claimed: the claim clears it, so that the next start with the key begins a
 * new run. The unique index holds one waiting run per task and key across
 * every process (concurrent starts fold into the one that wins the insert);
 * it is on the queue's hot table, which holds only waiting and running runs,
 * and is partial, so a job without a key costs it nothing. No index on
 * `runstream_runs` names a column a run's lifecycle updates (0005).
 *
 * `runstream_leases`: named leases held by one process at a time (the
 * retention's deletion pass), taken and renewed by an upsert.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runstream_jobs ADD COLUMN debounce_key text`
  yield* sql`CREATE UNIQUE INDEX runstream_jobs_debounce ON runstream_jobs (task, debounce_key)
    WHERE debounce_key IS NOT NULL`
  yield* sql`
    CREATE TABLE runstream_leases (
      name text PRIMARY KEY,
      holder text NOT NULL,
      until timestamptz NOT NULL
    )`
})
