/**
 * The schedules service: the program's declared schedules written when it
 * starts, schedules managed at run time (create, get, list, change, pause,
 * resume, delete), and the `Ticker` fiber that starts their ticks' runs.
 *
 * Who owns a schedule: one declared in code (`RunSchedule`) is the code's.
 * The API may pause and resume it, but a change (`PATCH`) is refused with
 * `ScheduleDeclaredInCode` (409), and so is a delete unless forced: the next
 * start of a program declaring it would put it back. A program declaring a
 * schedule the API created takes it over (the code's definition wins).
 * @since 0.4.0
 */
import type { SqlError } from "@effect/sql"
import { Context, Duration, Effect, Either, Layer, Option, Schema } from "effect"
import { InvalidInput, PayloadTooLarge, UnknownTask } from "../domain/Errors.ts"
import {
  InvalidSchedule,
  type ScheduleDefinition,
  ScheduleDeclaredInCode,
  type ScheduleExists,
  type ScheduleInfo,
  ScheduleName,
  ScheduleNotFound,
  ScheduleOptions,
  type SchedulePatch,
  type ScheduledRun
} from "../domain/Schedule.ts"
import { now } from "../internal/time.ts"
import * as TaskInput from "../runs/TaskInput.ts"
import { Runs, RunsConfig } from "../Runs.ts"
import * as Task from "../Task.ts"
import type { RunSchedule } from "./RunSchedule.ts"
import * as ScheduleStore from "./ScheduleStore.ts"
import * as Ticker from "./Ticker.ts"
import * as Timing from "./Timing.ts"

export type DefinitionError = InvalidSchedule | UnknownTask | InvalidInput | PayloadTooLarge

/** The most schedules a page lists. */
export const maxSchedulePage = 1000

/** The most runs `get` lists. */
export const recentRuns = 20

export class Schedules extends Context.Tag("runstream/Schedules")<Schedules, {
  /** A new schedule (owned by the API); its first tick is the first after now. */
  readonly create: (
    definition: ScheduleDefinition
  ) => Effect.Effect<ScheduleInfo, DefinitionError | ScheduleExists | SqlError.SqlError>
  /** The schedule and the latest runs it started, newest first. */
  readonly get: (name: string) => Effect.Effect<
    { readonly schedule: ScheduleInfo; readonly runs: ReadonlyArray<typeof ScheduledRun.Type> },
    ScheduleNotFound | SqlError.SqlError
  >
  /** By name; pass `nextCursor` back as `cursor`. */
  readonly list: (options: { readonly limit?: number | undefined; readonly cursor?: string | undefined }) => Effect.Effect<
    { readonly schedules: ReadonlyArray<ScheduleInfo>; readonly nextCursor: string | null },
    InvalidInput | SqlError.SqlError
  >
  /** Changes fields of an API schedule; a new timing ticks from now. */
  readonly update: (
    name: string,
    patch: SchedulePatch
  ) => Effect.Effect<ScheduleInfo, ScheduleNotFound | ScheduleDeclaredInCode | DefinitionError | SqlError.SqlError>
  /** No tick starts a run until `resume`. */
  readonly pause: (name: string) => Effect.Effect<ScheduleInfo, ScheduleNotFound | SqlError.SqlError>
  /** Ticks again from the first tick after now (ticks while paused are not run, nor counted). */
  readonly resume: (name: string) => Effect.Effect<ScheduleInfo, ScheduleNotFound | SqlError.SqlError>
  /** Deletes an API schedule, or one declared in code with `force`. Its runs stay. */
  readonly remove: (
    name: string,
    options?: { readonly force?: boolean | undefined }
  ) => Effect.Effect<void, ScheduleNotFound | ScheduleDeclaredInCode | SqlError.SqlError>
  /** One pass of this program's ticker now; resolves with how long it would then sleep. */
  readonly tickNow: Effect.Effect<Duration.Duration>
}>() {}

const validateName = Schema.validate(ScheduleName)
const validateOptions = Schema.validate(ScheduleOptions, { errors: "all" })

const encodeCursor = (name: string) => Buffer.from(name).toString("base64url")

export interface SchedulesOptions {
  /** The longest the ticker sleeps between passes (default: `RUNSTREAM_SCHEDULE_POLL`, 5 seconds). */
  readonly poll?: Duration.DurationInput | undefined
}

export const make = (declared: ReadonlyArray<RunSchedule>, options: SchedulesOptions = {}) =>
  Effect.gen(function*() {
    const store = yield* ScheduleStore.make
    const runs = yield* Runs
    const registry = yield* Task.TaskRegistry
    const config = yield* RunsConfig
    const poll = options.poll === undefined ? (yield* Ticker.TickerConfig).poll : Duration.decode(options.poll)

    /** A definition checked and ready to write; `typed` for one from code (its input is the task's type). */
    const check = (spec: {
      readonly name: string
      readonly task: string
      readonly input: unknown
      readonly cron?: string | null | undefined
      readonly every?: string | null | undefined
      readonly timezone?: string | null | undefined
      readonly catchUp?: ScheduleStore.Definition["catchUp"] | undefined
      readonly options?: ScheduleStore.Definition["options"] | undefined
    }, typed: boolean) =>
      Effect.gen(function*() {
        const at = yield* now
        yield* validateName(spec.name).pipe(
          Effect.mapError(() => new InvalidSchedule({ schedule: spec.name.slice(0, 100), message: "a schedule name is 1-100 of A-Z a-z 0-9 . _ -" }))
        )
        const timing = yield* Timing.parse(spec.name, spec, at)
        const registered = yield* Option.match(registry.get(spec.task), {
          onNone: () => Effect.fail(new UnknownTask({ task: spec.task })),
          onSome: Effect.succeed
        })
        const options = yield* validateOptions(spec.options ?? {}).pipe(
          Effect.mapError((error) => InvalidInput.fromParseError("options", error))
        )
        const input = yield* TaskInput.encode(registered.task, spec.input, typed, config.maxInputBytes)
        // A tick's start has no concurrencyKey: a task whose limits take their key from the input needs it there.
        yield* TaskInput.limitKey(registered.task, input)
        return {
          name: spec.name,
          task: spec.task,
          input,
          options,
          cron: timing._tag === "Cron" ? timing.expression : null,
          every: timing._tag === "Every" ? timing.text : null,
          everyMs: timing._tag === "Every" ? timing.millis : null,
          timezone: timing._tag === "Cron" ? timing.timezone : null,
          catchUp: spec.catchUp ?? "latest",
          nextTickAt: Timing.nextAfter(timing, at)
        } satisfies ScheduleStore.Definition
      })

    // The program's own schedules, checked and written before anything ticks:
    // a bad one fails the start, naming it.
    const definitions = yield* Effect.forEach(declared, (schedule) =>
      check({
        name: schedule.name,
        task: schedule.task.name,
        input: schedule.input,
        cron: schedule.cron,
        every: schedule.every,
        timezone: schedule.timezone,
        catchUp: schedule.catchUp,
        options: schedule.options
      }, true).pipe(
        Effect.mapError((error) =>
          error._tag === "InvalidSchedule" ? error : new InvalidSchedule({
            schedule: schedule.name,
            message: `schedule '${schedule.name}': ${error.message}`,
            ...(error._tag === "InvalidInput" && error.issues !== undefined ? { issues: error.issues } : {})
          })
        )
      ))
    const names = new Set<string>()
    for (const definition of definitions) {
      if (names.has(definition.name)) {
        return yield* new InvalidSchedule({ schedule: definition.name, message: `schedule '${definition.name}' is declared twice` })
      }
      names.add(definition.name)
    }
    yield* store.upsertDeclared(definitions, yield* now)

    const ticker = yield* Ticker.make({ store, runs, tasks: registry.names, poll })

    const found = (name: string) => <R extends { readonly length: number }>(rows: ReadonlyArray<ScheduleStore.ScheduleRow> & R) =>
      rows.length === 0 ? Effect.fail(new ScheduleNotFound({ name })) : Effect.succeed(ScheduleStore.toInfo(rows[0]!))

    const create: Schedules["Type"]["create"] = (definition) =>
      Effect.gen(function*() {
        const checked = yield* check({ ...definition, input: definition.input }, false)
        const created = yield* store.insert(checked, yield* now)
        yield* ticker.wake
        return created
      })

    const get: Schedules["Type"]["get"] = (name) =>
      Effect.gen(function*() {
        const schedule = yield* Effect.flatMap(store.find(name), found(name))
        return { schedule, runs: yield* store.runsOf(name, recentRuns) }
      })

    const list: Schedules["Type"]["list"] = (options) =>
      Effect.gen(function*() {
        const limit = options.limit ?? 100
        if (!Number.isInteger(limit) || limit < 1 || limit > maxSchedulePage) {
          return yield* new InvalidInput({ message: `limit must be an integer from 1 to ${maxSchedulePage}` })
        }
        const after = options.cursor === undefined ? null : Buffer.from(options.cursor, "base64url").toString()
        const rows = yield* store.list({ limit, after })
        const page = rows.slice(0, limit).map(ScheduleStore.toInfo)
        return { schedules: page, nextCursor: rows.length > limit ? encodeCursor(page.at(-1)!.name) : null }
      })

    const update: Schedules["Type"]["update"] = (name, patch) =>
      Effect.gen(function*() {
        const rows = yield* store.lock(name)
        if (rows.length === 0) return yield* new ScheduleNotFound({ name })
        const row = rows[0]!
        if (row.source === "code") return yield* new ScheduleDeclaredInCode({ name, operation: "update" })
        if (patch.cron !== undefined && patch.every !== undefined) {
          return yield* new InvalidSchedule({ schedule: name, message: `schedule '${name}': give cron or every, not both` })
        }
        // Giving cron drops every and the reverse; the time zone stays with a cron expression unless given.
        const timing = patch.every !== undefined
          ? { every: patch.every, timezone: patch.timezone ?? undefined }
          : patch.cron !== undefined
          ? { cron: patch.cron, timezone: patch.timezone !== undefined ? patch.timezone : row.timezone }
          : { cron: row.cron, every: row.every, timezone: patch.timezone !== undefined ? patch.timezone : row.timezone }
        const checked = yield* check({
          name,
          task: patch.task ?? row.task,
          input: "input" in patch ? patch.input : row.input,
          ...timing,
          catchUp: patch.catchUp ?? row.catch_up,
          options: patch.options ?? row.options
        }, false)
        const sameTiming = checked.cron === row.cron && checked.everyMs === (row.every_ms === null ? null : Number(row.every_ms)) &&
          checked.timezone === row.timezone
        // A new timing ticks from now; otherwise the next tick stays.
        const updated = yield* Effect.flatMap(
          store.update({ ...checked, nextTickAt: sameTiming ? row.next_tick_at : checked.nextTickAt }, yield* now),
          found(name)
        )
        return updated
      }).pipe(store.withTransaction, Effect.tap(() => ticker.wake))

    const pause: Schedules["Type"]["pause"] = (name) =>
      Effect.flatMap(now, (at) => Effect.flatMap(store.setPaused(name, true, null, at), found(name)))

    const resume: Schedules["Type"]["resume"] = (name) =>
      Effect.gen(function*() {
        const rows = yield* store.lock(name)
        if (rows.length === 0) return yield* new ScheduleNotFound({ name })
        const row = rows[0]!
        const at = yield* now
        if (!row.paused) return ScheduleStore.toInfo(row)
        const timing = Timing.parse(name, { cron: row.cron, every: row.every, timezone: row.timezone }, at)
        // A stored timing that no longer parses (a time zone gone from the runtime's data) stays paused.
        const next = Either.isRight(timing) ? Timing.nextAfter(timing.right, at) : null
        if (next === null) return ScheduleStore.toInfo(row)
        return yield* Effect.flatMap(store.setPaused(name, false, next, at), found(name))
      }).pipe(store.withTransaction, Effect.tap(() => ticker.wake))

    const remove: Schedules["Type"]["remove"] = (name, options) =>
      Effect.gen(function*() {
        const rows = yield* store.find(name)
        if (rows.length === 0) return yield* new ScheduleNotFound({ name })
        if (rows[0]!.source === "code" && options?.force !== true) {
          return yield* new ScheduleDeclaredInCode({ name, operation: "delete" })
        }
        const deleted = yield* store.remove(name)
        if (deleted.length === 0) return yield* new ScheduleNotFound({ name })
      })

    return Schedules.of({ create, get, list, update, pause, resume, remove, tickNow: ticker.tickNow })
  })

/**
 * The service and its ticker, with the schedules this program declares
 * (written when the layer is built; a bad one fails it with `InvalidSchedule`).
 */
export const layer = (declared: ReadonlyArray<RunSchedule> = [], options: SchedulesOptions = {}) =>
  Layer.scoped(Schedules, make(declared, options))
