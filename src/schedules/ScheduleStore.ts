/**
 * Schedules as rows of `runstream_schedules` (see migration 0008): read,
 * written, and the runs their ticks started. Used by `Schedules` (the
 * service) and its `Ticker`.
 * @since 0.4.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { DateTime, Effect } from "effect"
import type { RunId } from "../domain/Ids.ts"
import { type CatchUp, ScheduleExists, ScheduleInfo, type ScheduleOptions, type ScheduleSource } from "../domain/Schedule.ts"
import { runColumns, type RunRow, toRun } from "../RunStore.ts"

export interface ScheduleRow {
  readonly name: string
  readonly task: string
  readonly input: unknown
  readonly options: ScheduleOptions
  readonly cron: string | null
  readonly every: string | null
  readonly every_ms: string | number | null
  readonly timezone: string | null
  readonly catch_up: CatchUp
  readonly source: ScheduleSource
  readonly paused: boolean
  readonly next_tick_at: Date
  readonly last_tick_at: Date | null
  readonly last_run_id: RunId | null
  readonly skipped_ticks: string | number
  readonly last_error: string | null
  readonly created_at: Date
  readonly updated_at: Date
}

/** A definition as written: checked, its input encoded, its first tick computed. */
export interface Definition {
  readonly name: string
  readonly task: string
  readonly input: unknown
  readonly options: ScheduleOptions
  readonly cron: string | null
  readonly every: string | null
  readonly everyMs: number | null
  readonly timezone: string | null
  readonly catchUp: CatchUp
  readonly nextTickAt: Date
}

const utc = (date: Date) => DateTime.unsafeMake(date)

export const toInfo = (row: ScheduleRow): ScheduleInfo =>
  new ScheduleInfo({
    name: row.name,
    task: row.task,
    input: row.input ?? null,
    cron: row.cron,
    every: row.every,
    everyMs: row.every_ms === null ? null : Number(row.every_ms),
    timezone: row.timezone,
    catchUp: row.catch_up,
    options: row.options,
    source: row.source,
    paused: row.paused,
    nextTickAt: utc(row.next_tick_at),
    lastTickAt: row.last_tick_at === null ? null : utc(row.last_tick_at),
    lastRunId: row.last_run_id,
    skippedTicks: Number(row.skipped_ticks),
    lastError: row.last_error,
    createdAt: utc(row.created_at),
    updatedAt: utc(row.updated_at)
  }, true)

/** The newest runs a schedule's history keeps (older ones stay in `runstream_runs`, by key). */
export const historyLength = 100

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const json = (value: unknown) => JSON.stringify(value ?? null)

  /** Writes a new schedule of the API; `ScheduleExists` when the name is taken. */
  const insert = (definition: Definition, at: Date) =>
    Effect.flatMap(
      sql<ScheduleRow>`
        INSERT INTO runstream_schedules (name, task, input, options, cron, every, every_ms, timezone, catch_up, source,
          next_tick_at, created_at, updated_at)
        VALUES (${definition.name}, ${definition.task}, ${json(definition.input)}::jsonb, ${json(definition.options)}::jsonb,
          ${definition.cron}, ${definition.every}, ${definition.everyMs}, ${definition.timezone}, ${definition.catchUp}, 'api',
          ${definition.nextTickAt}, ${at}, ${at})
        ON CONFLICT (name) DO NOTHING
        RETURNING *`,
      (rows) => rows.length === 0 ? Effect.fail(new ScheduleExists({ name: definition.name })) : Effect.succeed(toInfo(rows[0]!))
    )

  /**
   * Writes the schedules a program declares, owned by code from then on. A
   * schedule whose timing (cron, interval, time zone) is unchanged keeps its
   * next tick, so a restart neither loses nor repeats one; a new timing
   * ticks from now. Paused stays paused.
   */
  const upsertDeclared = (definitions: ReadonlyArray<Definition>, at: Date) =>
    definitions.length === 0 ? Effect.succeed([]) : sql<ScheduleRow>`
      INSERT INTO runstream_schedules AS s (name, task, input, options, cron, every, every_ms, timezone, catch_up, source,
        next_tick_at, created_at, updated_at)
      SELECT name, task, input, options, cron, every, every_ms, timezone, catch_up, 'code', next_tick_at, ${at}, ${at}
      FROM jsonb_to_recordset(${
      JSON.stringify(definitions.map((d) => ({
        name: d.name,
        task: d.task,
        input: d.input ?? null,
        options: d.options,
        cron: d.cron,
        every: d.every,
        every_ms: d.everyMs,
        timezone: d.timezone,
        catch_up: d.catchUp,
        next_tick_at: d.nextTickAt
      })))
    }::jsonb) AS t(name text, task text, input jsonb, options jsonb, cron text, every text, every_ms bigint,
        timezone text, catch_up text, next_tick_at timestamptz)
      ORDER BY name
      ON CONFLICT (name) DO UPDATE SET task = EXCLUDED.task, input = EXCLUDED.input, options = EXCLUDED.options,
        cron = EXCLUDED.cron, every = EXCLUDED.every, every_ms = EXCLUDED.every_ms, timezone = EXCLUDED.timezone,
        catch_up = EXCLUDED.catch_up, source = 'code',
        next_tick_at = CASE WHEN (s.cron, s.every_ms, s.timezone) IS NOT DISTINCT FROM (EXCLUDED.cron, EXCLUDED.every_ms, EXCLUDED.timezone)
          THEN s.next_tick_at ELSE EXCLUDED.next_tick_at END,
        updated_at = CASE WHEN (s.task, s.input, s.options, s.cron, s.every, s.every_ms, s.timezone, s.catch_up, s.source)
          IS NOT DISTINCT FROM (EXCLUDED.task, EXCLUDED.input, EXCLUDED.options, EXCLUDED.cron, EXCLUDED.every, EXCLUDED.every_ms,
            EXCLUDED.timezone, EXCLUDED.catch_up, 'code') THEN s.updated_at ELSE ${at} END
      RETURNING *`.pipe(Effect.map((rows) => rows.map(toInfo)))

  const find = (name: string) => sql<ScheduleRow>`SELECT * FROM runstream_schedules WHERE name = ${name}`

  /** The row, locked until the caller's transaction ends. */
  const lock = (name: string) => sql<ScheduleRow>`SELECT * FROM runstream_schedules WHERE name = ${name} FOR UPDATE`

  /** A page by name, after `after`. */
  const list = (options: { readonly limit: number; readonly after: string | null }) =>
    sql<ScheduleRow>`
      SELECT * FROM runstream_schedules WHERE (${options.after}::text IS NULL OR name > ${options.after})
      ORDER BY name LIMIT ${options.limit + 1}`

  /** Replaces a schedule's definition (not its source, state or history). */
  const update = (definition: Definition, at: Date) =>
    sql<ScheduleRow>`
      UPDATE runstream_schedules SET task = ${definition.task}, input = ${json(definition.input)}::jsonb,
        options = ${json(definition.options)}::jsonb, cron = ${definition.cron}, every = ${definition.every},
        every_ms = ${definition.everyMs}, timezone = ${definition.timezone}, catch_up = ${definition.catchUp},
        next_tick_at = ${definition.nextTickAt}, updated_at = ${at}
      WHERE name = ${definition.name}
      RETURNING *`

  /** Pauses, or resumes from `nextTickAt`. */
  const setPaused = (name: string, paused: boolean, nextTickAt: Date | null, at: Date) =>
    sql<ScheduleRow>`
      UPDATE runstream_schedules SET paused = ${paused}, next_tick_at = coalesce(${nextTickAt}, next_tick_at),
        updated_at = ${at}
      WHERE name = ${name}
      RETURNING *`

  const remove = (name: string) =>
    Effect.zipLeft(
      sql<{ name: string }>`DELETE FROM runstream_schedules WHERE name = ${name} RETURNING name`,
      sql`DELETE FROM runstream_schedule_runs WHERE schedule = ${name}`
    ).pipe(sql.withTransaction)

  /** The latest runs the schedule started, newest first (runs deleted since are left out). */
  const runsOf = (name: string, limit: number) =>
    sql<RunRow & { readonly tick: Date }>`
      SELECT t.tick, ${sql.literal(runColumns.split(",").map((c) => `r.${c.trim()}`).join(", "))}
      FROM runstream_schedule_runs t JOIN runstream_runs r ON r.id = t.run_id
      WHERE t.schedule = ${name}
      ORDER BY t.tick DESC LIMIT ${limit}`.pipe(
      Effect.map((rows) => rows.map((row) => ({ tick: utc(row.tick), run: toRun(row) })))
    )

  /** A tick pass's outcome for one schedule, written in the ticker's transaction. */
  const recordTicks = (name: string, outcome: {
    readonly next: Date
    readonly skipped: number
    readonly started: ReadonlyArray<{ readonly tick: Date; readonly runId: RunId }>
    readonly error: string | null
  }): Effect.Effect<void, SqlError.SqlError> =>
    Effect.gen(function*() {
      const last = outcome.started.at(-1)
      yield* sql`
        UPDATE runstream_schedules SET next_tick_at = ${outcome.next}, skipped_ticks = skipped_ticks + ${outcome.skipped},
          last_tick_at = coalesce(${last?.tick ?? null}::timestamptz, last_tick_at),
          last_run_id = coalesce(${last?.runId ?? null}::uuid, last_run_id),
          last_error = CASE WHEN ${outcome.error}::text IS NOT NULL THEN ${outcome.error}
            WHEN ${last === undefined}::boolean THEN last_error ELSE NULL END
        WHERE name = ${name}`
      if (last === undefined) return
      yield* sql`
        INSERT INTO runstream_schedule_runs (schedule, tick, run_id)
        SELECT ${name}, tick, run_id FROM jsonb_to_recordset(${
        JSON.stringify(outcome.started.map(({ runId, tick }) => ({ tick, run_id: runId })))
      }::jsonb) AS t(tick timestamptz, run_id uuid)
        ON CONFLICT DO NOTHING`
      yield* sql`
        DELETE FROM runstream_schedule_runs WHERE schedule = ${name} AND tick < (
          SELECT tick FROM runstream_schedule_runs WHERE schedule = ${name} ORDER BY tick DESC OFFSET ${historyLength - 1} LIMIT 1)`
    })

  /** Pauses a schedule that can no longer tick (its stored timing stopped parsing), saying why. */
  const disable = (name: string, error: string) =>
    sql`UPDATE runstream_schedules SET paused = true, last_error = ${error} WHERE name = ${name}`

  /** Due schedules of `tasks`, locked for this transaction; rows another transaction holds are skipped. */
  const claimDue = (options: { readonly at: Date; readonly tasks: ReadonlyArray<string>; readonly limit: number }) =>
    sql<ScheduleRow>`
      SELECT * FROM runstream_schedules
      WHERE NOT paused AND next_tick_at <= ${options.at} AND task = ANY(${options.tasks}::text[])
      ORDER BY next_tick_at LIMIT ${options.limit}
      FOR UPDATE SKIP LOCKED`

  /** The earliest next tick of the schedules of `tasks` that are not paused. */
  const earliest = (tasks: ReadonlyArray<string>) =>
    Effect.map(
      sql<{ next: Date | null }>`
        SELECT min(next_tick_at) AS next FROM runstream_schedules WHERE NOT paused AND task = ANY(${tasks}::text[])`,
      (rows) => rows[0]?.next ?? null
    )

  /** The run holding an idempotency key. */
  const runOfKey = (key: string) =>
    Effect.map(
      sql<{ id: RunId }>`SELECT id FROM runstream_runs WHERE idempotency_key = ${key}`,
      (rows) => rows[0]?.id ?? null
    )

  return {
    insert,
    upsertDeclared,
    find,
    lock,
    list,
    update,
    setPaused,
    remove,
    runsOf,
    recordTicks,
    disable,
    claimDue,
    earliest,
    runOfKey,
    withTransaction: sql.withTransaction
  }
})

export type ScheduleStore = Effect.Effect.Success<typeof make>
