/**
 * Reads of a program's metrics once its workers hold no run. A run's end is
 * counted when its writer hears that the end was written, just after the
 * commit that lets the run be seen finished (and `awaitCompletion` return);
 * the pool lets the run go in the same step, so `runstream_in_flight_runs`
 * at 0 says the counts are in.
 */
import { Effect, Schedule } from "effect"

/** `read` again, 20 ms apart, until `settled` holds for what it read (at most 10 s). */
export const whenSettled = <A, E, R>(read: Effect.Effect<A, E, R>, settled: (a: A) => boolean) =>
  read.pipe(
    Effect.filterOrFail(settled, () => "runs still in flight" as const),
    Effect.retry({ schedule: Schedule.spaced("20 millis"), while: (error) => error === "runs still in flight" }),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("runs still in flight after 10 seconds") })
  )
