/**
 * The filters of a list of runs, as every surface receives them (Runs, REST,
 * RPC and the client).
 * @since 0.3.0
 */
import { Schema } from "effect"
import { StorableString } from "../internal/jsonb.ts"
import { isRunId } from "./Ids.ts"
import { RunStatus } from "./Run.ts"
import { IdempotencyKey, QueueName, RunAt } from "./StartOptions.ts"

const idShape = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"

/**
 * Whether `text` begins a run id as printed: 1 to 36 characters, lowercase hex
 * digits, and dashes where a UUID has them (after the 8th, 12th, 16th and 20th digit).
 */
export const isRunIdPrefix = (text: string): boolean => {
  if (text.length < 1 || text.length > idShape.length) return false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (idShape[i] === "-" ? c !== "-" : !/[0-9a-f]/.test(c)) return false
  }
  return true
}

/** The start of a run id: its first 1 to 36 characters, lowercase hex with the dashes in their places. */
export const RunIdPrefix = Schema.String.pipe(
  Schema.filter(isRunIdPrefix, {
    message: () => "must be the start of a run id: 1-36 characters, lowercase hex digits and the dashes in their places (e.g. 0193a1f2-7c)"
  })
).annotations({ description: "The first characters of a run id (lowercase hex, dashes where the id has them)." })

/** A time of a run's creation to compare with: ISO 8601 (as `runAt`). */
export const CreatedAtBound = RunAt.annotations({ description: "An ISO 8601 date-time, e.g. 2030-01-31T12:00:00Z." })

/** What a list keeps: every filter given, all of them at once. */
export const RunFilter = Schema.Struct({
  status: Schema.optional(RunStatus),
  task: Schema.optional(StorableString.pipe(Schema.maxLength(200))),
  queue: Schema.optional(QueueName),
  idempotencyKey: Schema.optional(IdempotencyKey),
  /** Runs created at or after this time. */
  createdAfter: Schema.optional(CreatedAtBound),
  /** Runs created before this time. */
  createdBefore: Schema.optional(CreatedAtBound),
  /** Runs whose id begins with this. */
  q: Schema.optional(RunIdPrefix),
  /** The children of this run (`ctx.start`): all of them, where `GET /v1/runs/:id` lists the first 100. */
  parentId: Schema.optional(
    Schema.String.pipe(Schema.filter((s): boolean => isRunId(s), { message: () => "must be a run id (a UUID, lowercase)" }))
      .annotations({ description: "A run's id: its children (runs it started with ctx.start)." })
  )
})
export type RunFilter = typeof RunFilter.Type
