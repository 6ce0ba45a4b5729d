/**
 * When a schedule ticks: a cron expression (Effect's `Cron`: 5 fields, or 6
 * with seconds first, in an IANA time zone) or a fixed interval, and which
 * ticks a ticker starts when it finds several due (the catch-up rule).
 *
 * Daylight saving, as `Cron` does it: a wall-clock time skipped by a
 * spring-forward (02:30 on such a day in New York) ticks at the shifted
 * time (03:30 local), once; a time repeated by a fall-back ticks once, at
 * its first occurrence.
 * @since 0.4.0
 */
import { Cron, DateTime, Duration, Either, Option } from "effect"
import { type CatchUp, InvalidSchedule } from "../domain/Schedule.ts"

export type Timing =
  | { readonly _tag: "Cron"; readonly expression: string; readonly timezone: string | null; readonly cron: Cron.Cron }
  | { readonly _tag: "Every"; readonly text: string; readonly millis: number }

/** The shortest interval of an `every` schedule, and the longest. */
export const everyBounds = { min: Duration.seconds(1), max: Duration.days(366) } as const

/** The most missed ticks `catchUp: "all"` starts (the latest ones); older ones are skipped. */
export const catchUpAllBound = 100

/** With `catchUp: "none"` and no tick within `lateWithin`, the latest tick found due within this still starts. */
export const onTimeWithin = Duration.minutes(1)

/**
 * A tick found at most this late is on time under `latest`: it starts, with
 * the ticks after it. Passes under load commit up to seconds late (the fault
 * suite's scenario 8 saw 1.4 s at load 14), and a 1-second schedule would
 * otherwise lose ticks while every program runs; after an outage, such a
 * schedule starts the ticks of its last 5 seconds.
 */
export const lateWithin = Duration.seconds(5)

/** The most ticks one claim of a schedule looks at (cron ticks are found one by one). */
export const ticksPerPass = 10_000

/** The tick strictly after `after`. */
export const nextAfter = (timing: Timing, after: Date): Date => {
  if (timing._tag === "Cron") return Cron.next(timing.cron, after)
  return new Date((Math.floor(after.getTime() / timing.millis) + 1) * timing.millis)
}

export interface TimingSpec {
  readonly cron?: string | null | undefined
  readonly every?: string | null | undefined
  readonly timezone?: string | null | undefined
}

/**
 * A definition's timing, checked: exactly one of `cron` and `every`, a cron
 * expression `Cron` parses and that ticks at all (not February 30th), a time
 * zone it knows, an interval of whole milliseconds from 1 second to 366 days.
 * `now` is where the check that it ticks looks from.
 */
export const parse = (name: string, spec: TimingSpec, now: Date): Either.Either<Timing, InvalidSchedule> => {
  const refuse = (message: string) => Either.left(new InvalidSchedule({ schedule: name, message: `schedule '${name}': ${message}` }))
  const cron = spec.cron ?? undefined
  const every = spec.every ?? undefined
  const timezone = spec.timezone ?? undefined
  if ((cron === undefined) === (every === undefined)) return refuse("give exactly one of cron and every")
  if (every !== undefined) {
    if (timezone !== undefined) return refuse("a time zone applies to cron schedules only")
    let duration: Duration.Duration
    try {
      duration = Duration.decode(every as Duration.DurationInput)
    } catch {
      return refuse(`every '${every}' is not a duration (e.g. "30 seconds", "5 minutes", "1 hour")`)
    }
    const millis = Duration.toMillis(duration)
    if (!Number.isInteger(millis) || millis < Duration.toMillis(everyBounds.min) || millis > Duration.toMillis(everyBounds.max)) {
      return refuse(`every '${every}' must be a whole number of milliseconds from 1 second to 366 days`)
    }
    return Either.right({ _tag: "Every", text: every, millis })
  }
  if (timezone !== undefined && Option.isNone(DateTime.zoneMakeNamed(timezone))) {
    return refuse(`unknown time zone '${timezone}' (an IANA name, e.g. Europe/Berlin)`)
  }
  const parsed = Cron.parse(cron!, timezone)
  if (Either.isLeft(parsed)) {
    return refuse(`invalid cron expression '${cron}': ${parsed.left.message} (5 fields: minute hour day month weekday, or 6 with seconds first)`)
  }
  const timing: Timing = { _tag: "Cron", expression: cron!, timezone: timezone ?? null, cron: parsed.right }
  try {
    nextAfter(timing, now)
  } catch {
    return refuse(`cron expression '${cron}' never matches a date`)
  }
  return Either.right(timing)
}

/** What a ticker does with a schedule whose next tick is due. */
export interface Due {
  /** The ticks to start, oldest first. */
  readonly start: ReadonlyArray<Date>
  /** The due ticks that start no run (missed). */
  readonly skipped: number
  /** The schedule's next tick after these (due at once when more ticks are due than one pass looks at). */
  readonly next: Date
}

/**
 * The due ticks from `first` (due: at or before `now`), under a catch-up
 * rule. A tick at most `lateWithin` late is on time: a busy ticker (a pass
 * that committed late, a slow machine) is not an outage, and each such tick
 * starts. When none is, the ticks were missed: `latest` starts the latest,
 * `none` the latest if it is within `onTimeWithin` (a minute), `all` the
 * latest 100 due ticks (on time or not); the others are skipped. At most `ticksPerPass`
 * ticks are looked at: past them, the oldest are skipped and the rest left
 * for the next pass (due at once), so the count stays exact and a pass stays
 * short whatever the outage.
 */
export const due = (timing: Timing, first: Date, now: Date, catchUp: CatchUp): Due => {
  const late = (tick: Date, within: Duration.Duration) => now.getTime() - tick.getTime() > Duration.toMillis(within)
  const decide = (ticks: ReadonlyArray<Date>, next: Date): Due => {
    const onTime = ticks.filter((tick) => !late(tick, lateWithin))
    const start = catchUp === "all"
      ? ticks.slice(Math.max(0, ticks.length - catchUpAllBound))
      : onTime.length > 0
      ? onTime
      : catchUp === "latest"
      ? ticks.slice(-1)
      : ticks.slice(-1).filter((tick) => !late(tick, onTimeWithin))
    return { start, skipped: ticks.length - start.length, next }
  }
  if (timing._tag === "Every") {
    // Arithmetic: the count of due ticks needs no walk; only the latest can start.
    const count = Math.floor((now.getTime() - first.getTime()) / timing.millis) + 1
    const window = catchUp === "all" ? catchUpAllBound : Math.ceil(Duration.toMillis(lateWithin) / timing.millis) + 1
    const from = Math.max(0, count - window)
    const latest = Array.from({ length: count - from }, (_, i) => new Date(first.getTime() + (from + i) * timing.millis))
    const decided = decide(latest, new Date(first.getTime() + count * timing.millis))
    return { ...decided, skipped: decided.skipped + from }
  }
  const ticks: Array<Date> = []
  let tick = first
  while (tick.getTime() <= now.getTime() && ticks.length < ticksPerPass) {
    ticks.push(tick)
    tick = nextAfter(timing, tick)
  }
  if (tick.getTime() <= now.getTime()) {
    // More due than one pass looks at: the oldest are skipped, the latest of this pass decided next pass.
    const keep = catchUp === "all" ? catchUpAllBound : 1
    const skipped = ticks.length - keep
    return { start: [], skipped, next: ticks[skipped]! }
  }
  return decide(ticks, tick)
}

/** The idempotency key of a tick's run. */
export const idempotencyKey = (name: string, tick: Date) => `schedule:${name}:${tick.toISOString()}`
