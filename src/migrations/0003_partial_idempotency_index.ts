import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The idempotency key's unique index covers only runs that have a key: a run's
 * updates are not heap-only, and each inserted a NULL entry into this index too.
 * The start's `ON CONFLICT` names the predicate (see `RunStore.create`).
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE UNIQUE INDEX runstream_runs_idempotency_key ON runstream_runs (idempotency_key)
    WHERE idempotency_key IS NOT NULL`
  yield* sql`ALTER TABLE runstream_runs DROP CONSTRAINT runstream_runs_idempotency_key_key`
})
