/**
 * The run as stored and as served by the API.
 * @since 0.1.0
 */
import { Schema } from "effect"
import { RunId } from "./Ids.ts"

/** @category schemas */
/**
 * `waiting`: the run's body suspended (a durable sleep, `ctx.sleep`); it holds
 * no worker and is claimed again, `running`, when its time comes.
 */
export const RunStatus = Schema.Literal("queued", "running", "waiting", "succeeded", "failed", "cancelled")
export type RunStatus = typeof RunStatus.Type

/** Statuses after which nothing happens to a run any more. */
export const isFinished = (status: RunStatus): boolean =>
  status === "succeeded" || status === "failed" || status === "cancelled"

/** The error recorded on a failed attempt or run. */
export const RunError = Schema.Struct({
  tag: Schema.String,
  message: Schema.String,
  retryable: Schema.Boolean
})
export type RunError = typeof RunError.Type

/** A child run as its parent's `GET /v1/runs/:id` lists it. */
export const RunChild = Schema.Struct({
  id: RunId,
  task: Schema.String,
  status: RunStatus
}).annotations({ identifier: "RunChild" })
export type RunChild = typeof RunChild.Type

/** How many children a run's `GET /v1/runs/:id` lists (its oldest; `moreChildren` says there are more). */
export const maxListedChildren = 100

/** @category schemas */
export class Run extends Schema.Class<Run>("Run")({
  id: RunId,
  task: Schema.String,
  queue: Schema.String,
  status: RunStatus,
  input: Schema.Unknown,
  output: Schema.Unknown,
  error: Schema.NullOr(RunError),
  attempt: Schema.Int,
  maxAttempts: Schema.Int,
  priority: Schema.Int,
  timeoutMs: Schema.NullOr(Schema.Int),
  idempotencyKey: Schema.NullOr(Schema.String),
  createdAt: Schema.DateTimeUtc,
  runAt: Schema.DateTimeUtc,
  startedAt: Schema.NullOr(Schema.DateTimeUtc),
  finishedAt: Schema.NullOr(Schema.DateTimeUtc),
  lastSeq: Schema.Int,
  /** The run this one replays (`POST /v1/runs/:id/replay`); absent for a run started otherwise. */
  replayOf: Schema.optionalWith(RunId, { exact: true }),
  /** The key its task's limits count by (a start's `concurrencyKey`); absent for a run without one, or of a task without limits. */
  concurrencyKey: Schema.optionalWith(Schema.String, { exact: true }),
  /** The run whose body started this one (`ctx.start`); absent for a run started otherwise. */
  parentId: Schema.optionalWith(RunId, { exact: true }),
  /**
   * The runs this one's body started (`ctx.start`), oldest first, at most
   * `maxListedChildren`: given by `GET /v1/runs/:id` (and RPC `Get`) alone,
   * absent from lists and from runs without children.
   */
  children: Schema.optionalWith(Schema.Array(RunChild), { exact: true }),
  /** True when the run has more children than `children` lists. */
  moreChildren: Schema.optionalWith(Schema.Boolean, { exact: true })
}) {}
