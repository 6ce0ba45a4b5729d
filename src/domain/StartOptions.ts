/**
 * The options of a start, as every surface receives them (Runs, REST, RPC and
 * the client), so that the client needs no server module to encode them.
 * @since 0.1.0
 */
import { DateTime, Schema } from "effect"
import { StorableString } from "../internal/jsonb.ts"

const isoDateTime = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-](\d{2}):(\d{2}))?)?$/i

const daysIn = (year: number, month: number) =>
  month === 2
    ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28)
    : [4, 6, 9, 11].includes(month)
    ? 30
    : 31

/**
 * An ISO 8601 date or date-time whose fields exist: `Date` would read
 * 2024-02-30 as March 1st, and 24:00 as the next day.
 */
const isCalendarDateTime = (text: string) => {
  const match = isoDateTime.exec(text)
  if (match === null) return false
  const [year, month, day, hour = 0, minute = 0, second = 0, offsetHours = 0, offsetMinutes = 0] = match
    .slice(1)
    .map((field) => field === undefined ? undefined : Number(field))
  return month! >= 1 && month! <= 12 && day! >= 1 && day! <= daysIn(year!, month!) &&
    hour <= 23 && minute <= 59 && second <= 59 && offsetHours <= 23 && offsetMinutes <= 59
}

/** The years Postgres stores as the driver writes them (four digits, no year 0, no sign). */
export const runAtYears = { min: 1, max: 9999 } as const

/** When a run may start: an ISO 8601 time on the calendar, in years 1 to 9999 (UTC). */
export const RunAt = Schema.compose(
  Schema.String.pipe(Schema.filter(isCalendarDateTime, {
    message: () => "must be an ISO 8601 date-time that exists, e.g. 2030-01-31T12:00:00Z"
  })),
  Schema.DateTimeUtc
).pipe(Schema.filter((time) => {
  const year = DateTime.getPartUtc(time, "year")
  return year >= runAtYears.min && year <= runAtYears.max
}, { message: () => `must be in the years ${runAtYears.min} to ${runAtYears.max} (UTC)` }))

/** A queue's name. */
export const QueueName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9._-]{1,100}$/, { message: () => "a queue name is 1-100 of A-Z a-z 0-9 . _ -" })
)

/** An idempotency key: 1-200 characters Postgres can store. */
export const IdempotencyKey = StorableString.pipe(Schema.minLength(1), Schema.maxLength(200))

/** The longest a debounced start may wait: a day, as `timeoutMs`. */
export const maxDebounceDelayMs = 24 * 60 * 60 * 1000

/**
 * Folds starts of one task with one key into one run (see `RunStore.create`):
 * while the key's run waits, a start with the key returns it and moves its
 * start to `delayMs` after itself; `trailing` (the default) also gives it its
 * input, `leading` keeps the first input. Once the run is claimed, the next
 * start with the key begins a new run.
 */
export const Debounce = Schema.Struct({
  key: StorableString.pipe(Schema.minLength(1), Schema.maxLength(200)),
  delayMs: Schema.Int.pipe(Schema.between(1, maxDebounceDelayMs, {
    message: () => `delayMs must be an integer from 1 to ${maxDebounceDelayMs} (a day)`
  })),
  mode: Schema.optional(Schema.Literal("trailing", "leading"))
})
export type Debounce = typeof Debounce.Type

/**
 * The key a task's concurrency and rate limits count by (a tenant, a user):
 * 1-200 characters Postgres can store. Ignored by tasks without limits.
 */
export const ConcurrencyKey = StorableString.pipe(Schema.minLength(1), Schema.maxLength(200))

/** Options of a start; every field is checked and bounded. */
export const StartOptions = Schema.Struct({
  idempotencyKey: Schema.optional(IdempotencyKey),
  queue: Schema.optional(QueueName),
  priority: Schema.optional(Schema.Int.pipe(Schema.between(-1_000_000, 1_000_000))),
  runAt: Schema.optional(RunAt),
  maxAttempts: Schema.optional(Schema.Int.pipe(Schema.between(1, 100))),
  timeoutMs: Schema.optional(Schema.Int.pipe(Schema.between(1, 24 * 60 * 60 * 1000))),
  debounce: Schema.optional(Debounce),
  concurrencyKey: Schema.optional(ConcurrencyKey)
}).pipe(Schema.filter((options) =>
  options.debounce === undefined || options.runAt === undefined ||
  { path: ["runAt"], message: "runAt and debounce cannot be combined: a debounced run starts delayMs after the last start" }
))
export type StartOptions = typeof StartOptions.Type
