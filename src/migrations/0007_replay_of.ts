import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The run a run replays (`POST /v1/runs/:id/replay`). Written once, at the
 * run's creation, and not indexed: a run's updates stay heap-only.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runstream_runs ADD COLUMN replay_of uuid`
})
