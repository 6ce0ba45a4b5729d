import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Outbox rows carry the events they announce (`entries`, see `Outbox.row`),
 * so the relay publishes them without reading each one back from the log by
 * key. Rows written before have none: the relay reads their events from the
 * log as it did.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runstream_outbox ADD COLUMN entries text`
})
