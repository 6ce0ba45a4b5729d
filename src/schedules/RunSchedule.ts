/**
 * Schedules declared in code, beside the tasks they start:
 *
 * ```ts
 * export const NightlyReport = RunSchedule.cron("nightly-report", "0 3 * * *", Report, { days: 1 }, {
 *   timezone: "Europe/Berlin"
 * })
 * export const Heartbeat = RunSchedule.every("heartbeat", "30 seconds", Ping, {})
 *
 * Main.run(Programs.makeWorkerLayer([Report, Ping], { schedules: [NightlyReport, Heartbeat] }))
 * ```
 *
 * A declaration is a value; the program that is given it checks it when it
 * starts (a bad cron expression, time zone, interval, task or input fails
 * the start with `InvalidSchedule`) and writes it to the database, where
 * every process's ticker finds it. (Named `RunSchedule`, not `Schedule`:
 * Effect's own `Schedule` and `Cron` are modules an app imports too.)
 * @since 0.4.0
 */
import type { CatchUp, ScheduleOptions } from "../domain/Schedule.ts"
import type * as Task from "../Task.ts"

export interface Settings {
  /** See `CatchUp`; default `latest`. */
  readonly catchUp?: CatchUp | undefined
  /** The options of each run started (queue, priority, maxAttempts, timeoutMs). */
  readonly options?: ScheduleOptions | undefined
}

/** A schedule declared in code. */
export interface RunSchedule {
  readonly name: string
  readonly task: Task.Any
  readonly input: unknown
  readonly cron: string | undefined
  readonly every: string | undefined
  readonly timezone: string | undefined
  readonly catchUp: CatchUp
  readonly options: ScheduleOptions
}

/**
 * A cron schedule: 5 fields (minute hour day month weekday), or 6 with
 * seconds first; in `timezone` (IANA, default UTC), daylight saving included.
 */
export const cron = <T extends Task.Any>(
  name: string,
  expression: string,
  task: T,
  input: Task.InputOf<T>,
  settings: Settings & { readonly timezone?: string | undefined } = {}
): RunSchedule => ({
  name,
  task,
  input,
  cron: expression,
  every: undefined,
  timezone: settings.timezone,
  catchUp: settings.catchUp ?? "latest",
  options: settings.options ?? {}
})

/**
 * A schedule every `interval` ("30 seconds", "5 minutes", at least 1
 * second): its ticks are the interval's multiples since 1970-01-01T00:00:00Z,
 * so every process agrees on them ("30 seconds" ticks at :00 and :30).
 */
export const every = <T extends Task.Any>(
  name: string,
  interval: string,
  task: T,
  input: Task.InputOf<T>,
  settings: Settings = {}
): RunSchedule => ({
  name,
  task,
  input,
  cron: undefined,
  every: interval,
  timezone: undefined,
  catchUp: settings.catchUp ?? "latest",
  options: settings.options ?? {}
})
