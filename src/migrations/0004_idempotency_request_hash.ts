import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The hash of a keyed run's task and input (see `RunStore.create`): a start
 * that reuses the key with another task or input is refused instead of being
 * answered with a run it did not ask for. Runs created before have none, and
 * their keys answer as before.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runstream_runs ADD COLUMN request_hash bytea`
})
