import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Child runs (issue 20): a run started by another's body (`ctx.start`) names
 * its parent (`parent_id`, never changed: the run's updates stay heap-only),
 * found by a partial index (most runs have no parent, and the index holds
 * none of them): `GET /v1/runs/:id` lists a run's children by it, and a
 * cancel walks the tree by it. A parent that waits for children
 * (`ctx.await`, `ctx.all`) keeps on its job the children it still waits for
 * (`waiting_on`): each child's end removes itself under the parent job's row
 * lock, and the last one wakes the parent (see `queue/RunQueue.ts`).
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runstream_runs ADD COLUMN parent_id uuid`
  yield* sql`CREATE INDEX runstream_runs_parent ON runstream_runs (parent_id) WHERE parent_id IS NOT NULL`
  yield* sql`ALTER TABLE runstream_jobs ADD COLUMN waiting_on uuid[]`
})
