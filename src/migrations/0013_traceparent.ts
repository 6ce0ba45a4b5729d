import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The W3C `traceparent` of the span that started a run (issue 21), written
 * at its creation when tracing is on, so that its attempts join the caller's
 * trace in whichever process runs them. Nullable, no default (adding it
 * rewrites nothing), not indexed: a run's updates stay heap-only.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runstream_runs ADD COLUMN traceparent text`
})
