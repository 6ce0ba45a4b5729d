import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A run's updates (claimed, ended, each event's seq) become heap-only: no
 * index covers a column they change, and its pages keep room for the new
 * versions. Before, the status index made each of a run's two updates in a
 * drain insert an entry into every index of the table (the primary key, the
 * task's and the status's), and a full page sent the new version to another.
 *
 * Listing runs by status (`GET /v1/runs?status=`) now walks the primary key
 * (newest first) and filters, which is cheap while the status asked for is
 * common among recent runs, and reads further back for a rare one. The
 * fillfactor applies to pages written from now on.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`DROP INDEX IF EXISTS runstream_runs_status`
  yield* sql`ALTER TABLE runstream_runs SET (fillfactor = 50)`
})
