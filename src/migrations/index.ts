/**
 * The ordered migrations of Runstream's schema.
 */
import { Migrator } from "@effect/sql"
import init from "./0001_init.ts"
import outboxRowsPerStatement from "./0002_outbox_rows_per_statement.ts"
import partialIdempotencyIndex from "./0003_partial_idempotency_index.ts"
import idempotencyRequestHash from "./0004_idempotency_request_hash.ts"
import heapOnlyRunUpdates from "./0005_heap_only_run_updates.ts"
import outboxEntries from "./0006_outbox_entries.ts"
import replayOf from "./0007_replay_of.ts"
import schedules from "./0008_schedules.ts"
import debounceAndRetention from "./0010_debounce_and_retention.ts"
import concurrencyAndRateLimits from "./0011_concurrency_and_rate_limits.ts"
import limitScopes from "./0012_limit_scopes.ts"
import traceparent from "./0013_traceparent.ts"
import waitingRuns from "./0014_waiting_runs.ts"
import signals from "./0015_signals.ts"
import childRuns from "./0016_child_runs.ts"

/** Every migration by its id, in order. */
export const migrations = {
  "0001_init": init,
  "0002_outbox_rows_per_statement": outboxRowsPerStatement,
  "0003_partial_idempotency_index": partialIdempotencyIndex,
  "0004_idempotency_request_hash": idempotencyRequestHash,
  "0005_heap_only_run_updates": heapOnlyRunUpdates,
  "0006_outbox_entries": outboxEntries,
  "0007_replay_of": replayOf,
  "0008_schedules": schedules,
  "0010_debounce_and_retention": debounceAndRetention,
  "0011_concurrency_and_rate_limits": concurrencyAndRateLimits,
  "0012_limit_scopes": limitScopes,
  "0013_traceparent": traceparent,
  "0014_waiting_runs": waitingRuns,
  "0015_signals": signals,
  "0016_child_runs": childRuns
}

export const loader = Migrator.fromRecord(migrations)

/** Changes when a migration is added: test templates are keyed by it. */
export const schemaVersion = "0016"

export const migrationsTable = "runstream_migrations"
