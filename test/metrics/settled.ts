/**
 * Reads of a program's metrics once they say what a test waits for. A run's
 * end is counted when its writer hears that the end was written, just after
 * the commit that lets the run be seen finished (and `awaitCompletion`
 * return): a read right after `awaitCompletion` may come before it.
 */
import { Effect, Schedule } from "effect"

/** `read` again, 20 ms apart, until `settled` holds for what it read (at most 10 s). */
export const whenSettled = <A, E, R>(read: Effect.Effect<A, E, R>, settled: (a: A) => boolean) =>
  read.pipe(
    Effect.filterOrFail(settled, () => "not settled yet" as const),
    Effect.retry({ schedule: Schedule.spaced("20 millis"), while: (error) => error === "not settled yet" }),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the metrics did not settle in 10 seconds") })
  )
