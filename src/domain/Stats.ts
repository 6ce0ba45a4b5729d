/**
 * What `GET /v1/stats` answers: the runs waiting and running now, and what
 * ended in the last hour.
 * @since 0.3.0
 */
import { Schema } from "effect"
import { RunStatus } from "./Run.ts"

/** The minutes `finishedPerMinute` covers, and the window of the percentiles and of the finished counts. */
export const windowMinutes = 60

const Percentiles = Schema.Struct({
  p50: Schema.NullOr(Schema.Number),
  p95: Schema.NullOr(Schema.Number)
}).annotations({ description: "Milliseconds; null when no run ended in the window." })

/** @category schemas */
export const Stats = Schema.Struct({
  at: Schema.DateTimeUtc.annotations({ description: "When the figures were read." }),
  runs: Schema.Array(Schema.Struct({ task: Schema.String, status: RunStatus, count: Schema.Int })).annotations({
    description: "Runs by task and status: every queued, running and waiting run, and the runs that ended " +
      "(succeeded, failed, cancelled) in the window. Pairs with no run are left out."
  }),
  queues: Schema.Array(Schema.Struct({
    queue: Schema.String,
    waiting: Schema.Int.annotations({ description: "Runs due now and not claimed (queued, or waiting and due to wake)." }),
    scheduled: Schema.Int.annotations({
      description: "Runs not due yet (a later `runAt`, a retry's backoff, or a durable sleep: status `waiting`)."
    }),
    running: Schema.Int.annotations({ description: "Runs claimed by a worker." }),
    oldestWaitingSince: Schema.NullOr(Schema.DateTimeUtc).annotations({
      description: "The earliest `runAt` of the waiting runs: how long the queue's head has waited."
    })
  })).annotations({ description: "Each queue with a queued or running run." }),
  finishedPerMinute: Schema.Array(Schema.Struct({
    minute: Schema.DateTimeUtc,
    succeeded: Schema.Int,
    failed: Schema.Int,
    cancelled: Schema.Int
  })).annotations({ description: `The last ${windowMinutes} minutes, oldest first, the current minute last, zeros included.` }),
  queueWaitMs: Percentiles.annotations({
    description: "From `runAt` to the start of the last attempt, of the runs that ended in the window after starting."
  }),
  durationMs: Percentiles.annotations({
    description: "From the start of the last attempt to the end, of the runs that ended in the window after starting."
  }),
  window: Schema.Struct({
    since: Schema.DateTimeUtc.annotations({ description: "The start of the window: runs that ended since then are counted." }),
    createdSince: Schema.DateTimeUtc.annotations({
      description: "Only runs created since then are read for the window (a run that ended more than this " +
        "after its creation is not counted)."
    }),
    truncated: Schema.Boolean.annotations({
      description: "true when more runs were created in that time than one read of the statistics takes: " +
        "the window's figures then cover the newest of them only."
    })
  })
}).annotations({ identifier: "Stats" })
export type Stats = typeof Stats.Type
