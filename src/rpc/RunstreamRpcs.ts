/**
 * The `@effect/rpc` contract of Runstream: the operations of `Runs`, streams
 * included, with the domain's errors.
 *
 * Payloads carry wire types only (strings and numbers, no refinements): the
 * server checks values the way the REST API does and answers with the domain's
 * `InvalidInput` / `RunNotFound`, where a refinement in the payload schema would
 * turn a bad value into an untyped defect.
 * @since 0.1.0
 */
import { Rpc, RpcGroup } from "@effect/rpc"
import { Schema } from "effect"
import {
  AwaitTimeout,
  IdempotencyConflict,
  InvalidCursor,
  InvalidInput,
  PayloadTooLarge,
  RunAlreadyFinished,
  RunNotFound,
  TokensDisabled,
  UnknownTask
} from "../domain/Errors.ts"
import { ReadToken } from "../domain/ReadToken.ts"
import {
  InvalidSchedule,
  ScheduleDeclaredInCode,
  ScheduleDetail,
  ScheduleExists,
  ScheduleInfo,
  ScheduleNotFound
} from "../domain/Schedule.ts"
import { Run, RunStatus } from "../domain/Run.ts"
import { SignalSent } from "../domain/Signal.ts"
import { RunEventWire } from "../domain/RunEvent.ts"
import { StartOptions } from "../domain/StartOptions.ts"
import { Stats } from "../domain/Stats.ts"
import { TaskList } from "../domain/TaskInfo.ts"

/**
 * The server could not reach its database. Transient: the call may be retried.
 * Stands in for `SqlError`, whose details stay in the server's logs.
 * @category errors
 */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {}) {
  override get message() {
    return "the service cannot reach its database; try again later"
  }
}

/**
 * The server holds as many live streams (SSE and RPC streams together) as
 * `RUNSTREAM_MAX_STREAMS` allows; this one was refused. Transient: retry later.
 * @category errors
 */
export class TooManyStreams extends Schema.TaggedError<TooManyStreams>()("TooManyStreams", {
  limit: Schema.Number
}) {
  override get message() {
    return `this server has reached its limit of ${this.limit} open event streams; try again later`
  }
}

/** The server is shutting down: the stream was ended or refused. Retry, on another server if there is one. */
export class ShuttingDown extends Schema.TaggedError<ShuttingDown>()("ShuttingDown", {}) {
  override get message() {
    return "the server is shutting down"
  }
}

/** `Runs.StartOptions` as sent: the same fields, checked by the server. @category schemas */
export const StartOptionsEncoded = Schema.encodedSchema(StartOptions)

/** @category schemas */
export const Started = Schema.Struct({
  run: Run,
  /** false when an existing run was returned: a repeated idempotency key, or a debounced start folded into its key's run. */
  created: Schema.Boolean,
  /** true when a debounced start was folded into the waiting run of its key. */
  folded: Schema.optional(Schema.Boolean)
})

/** @category schemas */
export const RunPage = Schema.Struct({
  runs: Schema.Array(Run),
  /** Pass back as `cursor` for the next page; null on the last page. */
  nextCursor: Schema.NullOr(Schema.String)
})

/** @category schemas */
export const EventPage = Schema.Struct({
  // `RunEvent`'s JSON, encoded and decoded by hand (a page can hold thousands).
  events: Schema.Array(RunEventWire),
  /** Pass back as `after` for the next page: the last seq of this page, or `after` when it is empty. */
  nextAfter: Schema.Number
})

/** @category schemas */
export const SchedulePage = Schema.Struct({
  schedules: Schema.Array(ScheduleInfo),
  /** Pass back as `cursor` for the next page; null on the last page. */
  nextCursor: Schema.NullOr(Schema.String)
})

/** A schedule's definition as sent (`POST /v1/schedules`'s body): checked by the server. @category schemas */
const ScheduleFields = {
  task: Schema.optional(Schema.String),
  input: Schema.optional(Schema.Unknown),
  cron: Schema.optional(Schema.String),
  every: Schema.optional(Schema.String),
  timezone: Schema.optional(Schema.NullOr(Schema.String)),
  catchUp: Schema.optional(Schema.String),
  options: Schema.optional(Schema.Unknown)
}

const DefinitionError = [InvalidSchedule, UnknownTask, InvalidInput, PayloadTooLarge] as const

/** The operations of `Runs` and `Schedules` as RPCs. @category groups */
export class RunstreamRpcs extends RpcGroup.make(
  Rpc.make("Start", {
    payload: { task: Schema.String, input: Schema.Unknown, options: Schema.optional(StartOptionsEncoded) },
    success: Started,
    error: Schema.Union(UnknownTask, InvalidInput, PayloadTooLarge, IdempotencyConflict, Unavailable)
  }),
  Rpc.make("Get", {
    payload: { runId: Schema.String },
    success: Run,
    error: Schema.Union(RunNotFound, Unavailable)
  }),
  Rpc.make("List", {
    payload: {
      status: Schema.optional(RunStatus),
      task: Schema.optional(Schema.String),
      queue: Schema.optional(Schema.String),
      idempotencyKey: Schema.optional(Schema.String),
      /** ISO 8601; runs created at or after it. */
      createdAfter: Schema.optional(Schema.String),
      /** ISO 8601; runs created before it. */
      createdBefore: Schema.optional(Schema.String),
      /** The start of a run id (lowercase hex, dashes where the id has them). */
      q: Schema.optional(Schema.String),
      /** A run's id: its children. */
      parentId: Schema.optional(Schema.String),
      limit: Schema.optional(Schema.Number),
      cursor: Schema.optional(Schema.String)
    },
    success: RunPage,
    error: Schema.Union(InvalidCursor, InvalidInput, Unavailable)
  }),
  Rpc.make("Cancel", {
    payload: { runId: Schema.String },
    success: Run,
    error: Schema.Union(RunNotFound, RunAlreadyFinished, Unavailable)
  }),
  /** Sends a signal to a run (see `POST /v1/runs/:id/signals/:name`); `data` as JSON carries it. */
  Rpc.make("Signal", {
    payload: { runId: Schema.String, name: Schema.String, data: Schema.Unknown },
    success: SignalSent,
    error: Schema.Union(RunNotFound, RunAlreadyFinished, UnknownTask, InvalidInput, PayloadTooLarge, Unavailable)
  }),
  /** A new run of the run's task with its input; `options` override the original's (see `POST /v1/runs/:id/replay`). */
  Rpc.make("Replay", {
    payload: { runId: Schema.String, options: Schema.optional(StartOptionsEncoded) },
    success: Started,
    error: Schema.Union(RunNotFound, UnknownTask, InvalidInput, PayloadTooLarge, IdempotencyConflict, Unavailable)
  }),
  Rpc.make("ReadEvents", {
    payload: { runId: Schema.String, after: Schema.optional(Schema.Number), limit: Schema.optional(Schema.Number) },
    success: EventPage,
    error: Schema.Union(RunNotFound, InvalidInput, Unavailable)
  }),
  /** The run's events after `after`, from the log then live; ends after the terminal event. */
  Rpc.make("Events", {
    payload: { runId: Schema.String, after: Schema.optional(Schema.Number) },
    success: RunEventWire,
    error: Schema.Union(RunNotFound, InvalidInput, Unavailable, TooManyStreams, ShuttingDown),
    stream: true
  }),
  /** Live events of every run (debug), optionally of one task or run; never ends. */
  Rpc.make("AllEvents", {
    payload: { task: Schema.optional(Schema.String), runId: Schema.optional(Schema.String) },
    success: RunEventWire,
    error: Schema.Union(InvalidInput, TooManyStreams, ShuttingDown),
    stream: true
  }),
  Rpc.make("AwaitCompletion", {
    payload: { runId: Schema.String, timeoutMs: Schema.optional(Schema.Number) },
    success: Run,
    error: Schema.Union(RunNotFound, AwaitTimeout, InvalidInput, Unavailable, TooManyStreams, ShuttingDown)
  }),
  /** What `GET /v1/stats` answers. */
  Rpc.make("Stats", {
    success: Stats,
    error: Unavailable
  }),
  /** The tasks the server starts, as `GET /v1/tasks` answers them. */
  Rpc.make("Tasks", {
    success: TaskList
  }),
  /** A new schedule (see `POST /v1/schedules`). */
  Rpc.make("CreateSchedule", {
    payload: { name: Schema.String, ...ScheduleFields },
    success: ScheduleInfo,
    error: Schema.Union(...DefinitionError, ScheduleExists, Unavailable)
  }),
  /** A schedule and the latest runs it started. */
  Rpc.make("GetSchedule", {
    payload: { name: Schema.String },
    success: ScheduleDetail,
    error: Schema.Union(ScheduleNotFound, Unavailable)
  }),
  Rpc.make("ListSchedules", {
    payload: { limit: Schema.optional(Schema.Number), cursor: Schema.optional(Schema.String) },
    success: SchedulePage,
    error: Schema.Union(InvalidInput, Unavailable)
  }),
  /** Changes the fields given of a schedule created over the API (see `PATCH /v1/schedules/:name`). */
  Rpc.make("UpdateSchedule", {
    payload: { name: Schema.String, ...ScheduleFields },
    success: ScheduleInfo,
    error: Schema.Union(...DefinitionError, ScheduleNotFound, ScheduleDeclaredInCode, Unavailable)
  }),
  Rpc.make("PauseSchedule", {
    payload: { name: Schema.String },
    success: ScheduleInfo,
    error: Schema.Union(ScheduleNotFound, Unavailable)
  }),
  Rpc.make("ResumeSchedule", {
    payload: { name: Schema.String },
    success: ScheduleInfo,
    error: Schema.Union(ScheduleNotFound, Unavailable)
  }),
  /** Deletes a schedule; one declared in code only with `force`. */
  Rpc.make("DeleteSchedule", {
    payload: { name: Schema.String, force: Schema.optional(Schema.Boolean) },
    error: Schema.Union(ScheduleNotFound, ScheduleDeclaredInCode, Unavailable)
  }),
  /** A read token for one run or the runs of one task (see `POST /v1/tokens`); the call itself needs the API key. */
  Rpc.make("CreateToken", {
    payload: { runId: Schema.optional(Schema.String), task: Schema.optional(Schema.String), ttlSeconds: Schema.Number },
    success: ReadToken,
    error: Schema.Union(InvalidInput, RunNotFound, TokensDisabled, Unavailable)
  })
) {}
