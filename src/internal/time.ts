import { Clock, Effect } from "effect"

/**
 * The program's current time as a Date. Every time the queue compares or
 * stores comes from the Effect clock (not the database's `now()`), so tests
 * drive leases, delays and backoff with `TestClock`.
 */
export const now: Effect.Effect<Date> = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

export const plusMillis = (date: Date, millis: number): Date => new Date(date.getTime() + millis)
