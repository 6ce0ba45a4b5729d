/**
 * A registered task as `GET /v1/tasks` describes it.
 * @since 0.3.0
 */
import { Schema } from "effect"

/** @category schemas */
export const TaskInfo = Schema.Struct({
  name: Schema.String,
  queue: Schema.String.annotations({
    description: "The queue a start uses when its options name none (tasks do not declare one: always `default`)."
  }),
  input: Schema.Unknown.annotations({
    description: "The input as JSON Schema (draft-07, the encoded form that a start sends); null when the schema has no JSON Schema form."
  }),
  output: Schema.Unknown.annotations({ description: "The output as JSON Schema, as `input`." }),
  retry: Schema.Struct({
    maxAttempts: Schema.Int,
    initialDelayMs: Schema.Number,
    maxDelayMs: Schema.Number,
    factor: Schema.Number
  }).annotations({ description: "Exponential backoff with jitter: the delay before attempt n+1 is initialDelay * factor^(n-1), capped, times 0.5-1." }),
  timeoutMs: Schema.NullOr(Schema.Number).annotations({ description: "An attempt's time limit; null: none." }),
  concurrency: Schema.NullOr(Schema.Struct({ limit: Schema.Int })).annotations({
    description: "At most `limit` runs of one concurrencyKey running at once; null: no limit."
  }),
  rateLimit: Schema.NullOr(Schema.Struct({ limit: Schema.Int, periodMs: Schema.Number })).annotations({
    description: "At most `limit` attempts of one concurrencyKey start in any window of `periodMs`; null: no limit."
  })
}).annotations({ identifier: "TaskInfo" })
export type TaskInfo = typeof TaskInfo.Type

/** @category schemas */
export const TaskList = Schema.Struct({ tasks: Schema.Array(TaskInfo) }).annotations({ identifier: "TaskList" })
