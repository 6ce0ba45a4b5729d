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
  }),
  concurrencyKeyField: Schema.NullOr(Schema.String).annotations({
    description: "The input field a start without `concurrencyKey` takes its key from (a string, or an integer as its " +
      "decimal text; a start whose input lacks it is refused, 400), for both limits (the `key` of `concurrency` or " +
      "`rateLimit` in the definition); null: such starts share the key \"\"."
  }),
  retention: Schema.NullOr(Schema.Union(Schema.Struct({ keepMs: Schema.Number }), Schema.Literal("off"))).annotations({
    description: "How long its finished runs are kept, its own: `{keepMs}` after they finished, or \"off\" (for good); " +
      "null: the program's default (`RUNSTREAM_RETENTION`)."
  }),
  signals: Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
    description: "The signals its runs wait for (`POST /v1/runs/:id/signals/:name`), by name: each one's `data` as " +
      "JSON Schema, as `input` (null when it has none); {} for none."
  })
}).annotations({ identifier: "TaskInfo" })
export type TaskInfo = typeof TaskInfo.Type

/** A queue with limits, as `GET /v1/tasks` lists it. */
export const QueueInfo = Schema.Struct({
  name: Schema.String,
  concurrency: Schema.NullOr(Schema.Struct({ limit: Schema.Int })).annotations({
    description: "At most `limit` runs of the queue (any task) with one concurrencyKey running at once; null: no limit."
  }),
  rateLimit: Schema.NullOr(Schema.Struct({ limit: Schema.Int, periodMs: Schema.Number })).annotations({
    description: "At most `limit` attempts of the queue with one concurrencyKey start in any window of `periodMs`; null: no limit."
  })
}).annotations({
  identifier: "QueueInfo",
  description: "Limits declared on a queue: they count the runs of tasks without limits of their own."
})
export type QueueInfo = typeof QueueInfo.Type

/** @category schemas */
export const TaskList = Schema.Struct({
  tasks: Schema.Array(TaskInfo),
  // Optional on the wire: a server from before queue limits sends none.
  queues: Schema.optionalWith(Schema.Array(QueueInfo), { default: () => [] })
}).annotations({ identifier: "TaskList" })
