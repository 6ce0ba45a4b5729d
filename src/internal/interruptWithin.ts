/**
 * Like `Effect.disconnect`, with a bound: when the effect is interrupted, its
 * interruption (its finalizers) gets `grace` to complete, and is waited for;
 * past that it goes on in the background and the caller moves on. A body whose
 * cleanup hangs then cannot hold the caller forever, while a well-behaved one
 * is still fully ended before the caller continues.
 */
import { type Duration, Effect, Fiber } from "effect"

export const interruptWithin = (grace: Duration.DurationInput, onAbandon: Effect.Effect<void>) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.forkDaemon(restore(self)), (fiber) =>
      restore(Fiber.join(fiber)).pipe(
        Effect.onInterrupt(() =>
          Fiber.interrupt(fiber).pipe(
            Effect.interruptible,
            Effect.timeoutOption(grace),
            Effect.flatMap((ended) => ended._tag === "None" ? onAbandon : Effect.void)
          )
        )
      ))
  )
