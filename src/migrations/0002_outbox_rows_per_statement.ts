import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * One outbox row per statement instead of one per run (see `Outbox.row`): the
 * runs, their tasks and seq ranges as parallel arrays, and how many events the
 * row covers (the relay bounds its batches by it). Rows not yet published are
 * carried over.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE runstream_outbox
      ADD COLUMN run_ids uuid[], ADD COLUMN tasks text[], ADD COLUMN seq_froms integer[],
      ADD COLUMN seq_tos integer[], ADD COLUMN events integer`
  yield* sql`
    UPDATE runstream_outbox SET run_ids = ARRAY[run_id], tasks = ARRAY[task], seq_froms = ARRAY[seq_from],
      seq_tos = ARRAY[seq_to], events = seq_to - seq_from + 1`
  yield* sql`
    ALTER TABLE runstream_outbox
      DROP COLUMN run_id, DROP COLUMN task, DROP COLUMN seq_from, DROP COLUMN seq_to,
      ALTER COLUMN run_ids SET NOT NULL, ALTER COLUMN tasks SET NOT NULL, ALTER COLUMN seq_froms SET NOT NULL,
      ALTER COLUMN seq_tos SET NOT NULL, ALTER COLUMN events SET NOT NULL`
})
