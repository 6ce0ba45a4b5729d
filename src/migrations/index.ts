/**
 * The ordered migrations of Runstream's schema.
 */
import { Migrator } from "@effect/sql"
import init from "./0001_init.ts"

export const loader = Migrator.fromRecord({
  "0001_init": init
})

/** Changes when a migration is added: test templates are keyed by it. */
export const schemaVersion = "0001"

export const migrationsTable = "runstream_migrations"
