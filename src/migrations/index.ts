/**
 * The ordered migrations of Runstream's schema.
 */
import { Migrator } from "@effect/sql"
import init from "./0001_init.ts"
import outboxRowsPerStatement from "./0002_outbox_rows_per_statement.ts"

export const loader = Migrator.fromRecord({
  "0001_init": init,
  "0002_outbox_rows_per_statement": outboxRowsPerStatement
})

/** Changes when a migration is added: test templates are keyed by it. */
export const schemaVersion = "0002"

export const migrationsTable = "runstream_migrations"
