/**
 * Schedules as every surface sees them (REST, RPC, the client): the schedule,
 * its definition and changes, and their errors. No database code, so that the
 * client can use them.
 * @since 0.4.0
 */
import { Schema } from "effect"
import { RunId } from "./Ids.ts"
import { InputIssue } from "./Errors.ts"
import { Run } from "./Run.ts"
import { StartOptions } from "./StartOptions.ts"

/**
 * A schedule's name: 1-100 of A-Z a-z 0-9 . _ - (it is part of its runs'
 * idempotency keys, `schedule:<name>:<tick>`, which are at most 200 characters).
 */
export const ScheduleName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9._-]{1,100}$/, { message: () => "a schedule name is 1-100 of A-Z a-z 0-9 . _ -" })
)

/**
 * What happens to ticks missed while no process ran the schedule:
 * `latest` (default) starts the latest of them once; `none` starts none
 * (only a tick due within the last minute); `all` starts each, up to the
 * latest 100. Ticks not started are counted in `skippedTicks`.
 */
export const CatchUp = Schema.Literal("latest", "none", "all")
export type CatchUp = typeof CatchUp.Type

/** Where a schedule is defined: in a program's code (it owns it) or over the API. */
export const ScheduleSource = Schema.Literal("code", "api")
export type ScheduleSource = typeof ScheduleSource.Type

/** The options each run of a schedule is started with. */
export const ScheduleOptions = StartOptions.from.pick("queue", "priority", "maxAttempts", "timeoutMs")
export type ScheduleOptions = typeof ScheduleOptions.Type

/** A cron expression as given: 5 fields (minute hour day month weekday), or 6 with seconds first. */
export const CronText = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))
/** An interval as given, e.g. "30 seconds", "5 minutes", "1 hour": at least 1 second. */
export const EveryText = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(100))
/** An IANA time zone name, e.g. "Europe/Berlin". */
export const TimeZoneText = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(100))

/** @category schemas */
export class ScheduleInfo extends Schema.Class<ScheduleInfo>("Schedule")({
  name: Schema.String,
  task: Schema.String,
  input: Schema.Unknown,
  cron: Schema.NullOr(Schema.String).annotations({ description: "The cron expression; null for an `every` schedule." }),
  every: Schema.NullOr(Schema.String).annotations({ description: "The interval as given; null for a cron schedule." }),
  everyMs: Schema.NullOr(Schema.Number).annotations({ description: "The interval in milliseconds; ticks are its multiples since 1970-01-01T00:00:00Z." }),
  timezone: Schema.NullOr(Schema.String).annotations({ description: "The IANA time zone of the cron expression; null: UTC." }),
  catchUp: CatchUp,
  options: ScheduleOptions,
  source: ScheduleSource.annotations({
    description: "`code`: declared by a program (`RunSchedule.cron` / `.every`), which owns it: the API may pause and resume it only."
  }),
  paused: Schema.Boolean,
  nextTickAt: Schema.DateTimeUtc.annotations({ description: "The next tick (while paused: the one it would be)." }),
  lastTickAt: Schema.NullOr(Schema.DateTimeUtc).annotations({ description: "The latest tick that started a run." }),
  lastRunId: Schema.NullOr(RunId),
  skippedTicks: Schema.Number.annotations({ description: "Ticks that started no run: missed (see `catchUp`) or refused (see `lastError`)." }),
  lastError: Schema.NullOr(Schema.String).annotations({ description: "Why the latest refused tick started no run; null after a tick that did." }),
  createdAt: Schema.DateTimeUtc,
  updatedAt: Schema.DateTimeUtc
}) {}

/** A run a schedule started, with its tick. @category schemas */
export const ScheduledRun = Schema.Struct({
  tick: Schema.DateTimeUtc,
  run: Run
}).annotations({ identifier: "ScheduledRun" })

/** A schedule with the latest runs it started (newest first). @category schemas */
export const ScheduleDetail = Schema.Struct({
  schedule: ScheduleInfo,
  runs: Schema.Array(ScheduledRun)
}).annotations({ identifier: "ScheduleDetail" })

/** The body of `POST /v1/schedules`: `cron` or `every`, not both. @category schemas */
export const ScheduleDefinition = Schema.Struct({
  name: ScheduleName,
  task: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  input: Schema.optional(Schema.Unknown),
  cron: Schema.optional(CronText),
  every: Schema.optional(EveryText),
  timezone: Schema.optional(TimeZoneText),
  catchUp: Schema.optional(CatchUp),
  options: Schema.optional(ScheduleOptions)
}).annotations({ identifier: "ScheduleDefinition" })
export type ScheduleDefinition = typeof ScheduleDefinition.Type

/**
 * The body of `PATCH /v1/schedules/:name`: the fields to change. Giving
 * `cron` drops `every` and the reverse; `timezone: null` means UTC.
 * @category schemas
 */
export const SchedulePatch = Schema.Struct({
  task: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))),
  input: Schema.optional(Schema.Unknown),
  cron: Schema.optional(CronText),
  every: Schema.optional(EveryText),
  timezone: Schema.optional(Schema.NullOr(TimeZoneText)),
  catchUp: Schema.optional(CatchUp),
  options: Schema.optional(ScheduleOptions)
}).annotations({ identifier: "SchedulePatch" })
export type SchedulePatch = typeof SchedulePatch.Type

/** No schedule has this name. @category errors */
export class ScheduleNotFound extends Schema.TaggedError<ScheduleNotFound>()("ScheduleNotFound", {
  name: Schema.String
}) {
  override get message() {
    return `schedule '${this.name}' does not exist`
  }
}

/** A schedule of this name exists already. @category errors */
export class ScheduleExists extends Schema.TaggedError<ScheduleExists>()("ScheduleExists", {
  name: Schema.String
}) {
  override get message() {
    return `schedule '${this.name}' exists already`
  }
}

/**
 * The schedule is declared in a program's code, which owns its definition:
 * the API may pause and resume it, not change it (and deletes it only with
 * `force`: a program declaring it puts it back when it starts).
 * @category errors
 */
export class ScheduleDeclaredInCode extends Schema.TaggedError<ScheduleDeclaredInCode>()("ScheduleDeclaredInCode", {
  name: Schema.String,
  operation: Schema.String
}) {
  override get message() {
    return this.operation === "delete"
      ? `schedule '${this.name}' is declared in code: remove it there, then delete it with force (a program declaring it puts it back when it starts)`
      : `schedule '${this.name}' is declared in code, which owns its definition: change it there (pause and resume are allowed)`
  }
}

/**
 * A schedule's definition is refused: an invalid cron expression, an unknown
 * time zone, an interval under 1 second, a task or input the program does not
 * accept. `schedule` names it; `issues`, for an input, says field by field
 * what is wrong.
 * @category errors
 */
export class InvalidSchedule extends Schema.TaggedError<InvalidSchedule>()("InvalidSchedule", {
  schedule: Schema.String,
  message: Schema.String,
  issues: Schema.optional(Schema.Array(InputIssue))
}) {}
