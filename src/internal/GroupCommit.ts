/**
 * Group commit: callers submit one item each; a single fiber takes whatever is
 * waiting (up to `maxBatch`) and writes it with one call, so N concurrent
 * writers cost one transaction instead of N. No timer: a lone item is written at
 * once, and items arriving during a write form the next batch. The queue is
 * bounded, so a slow database pushes back on the submitters.
 */
import { Deferred, Effect, Exit, Queue } from "effect"

export const make = <A, B, E>(options: {
  readonly maxBatch: number
  readonly write: (items: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>
}) =>
  Effect.gen(function*() {
    const pending = yield* Effect.acquireRelease(
      Queue.bounded<readonly [A, Deferred.Deferred<B, E>]>(options.maxBatch * 4),
      // Whoever still waits when the owner's scope closes is told so.
      (queue) =>
        Effect.flatMap(Queue.takeAll(queue), (left) =>
          Effect.forEach(left, ([, deferred]) => Deferred.interrupt(deferred), { discard: true })).pipe(
            Effect.zipRight(Queue.shutdown(queue))
          )
    )
    yield* Queue.takeBetween(pending, 1, options.maxBatch).pipe(
      Effect.flatMap((chunk) => {
        const batch = Array.from(chunk)
        return Effect.exit(options.write(batch.map(([item]) => item))).pipe(
          Effect.flatMap((exit) =>
            Effect.forEach(batch, ([, deferred], i) =>
              Deferred.done(deferred, Exit.map(exit, (results) => results[i]!)), { discard: true })
          ),
          // A batch taken is a batch answered, even while the owner shuts down.
          Effect.uninterruptible
        )
      }),
      Effect.forever,
      Effect.forkScoped
    )
    return (item: A): Effect.Effect<B, E> =>
      Effect.flatMap(Deferred.make<B, E>(), (deferred) =>
        Effect.zipRight(Queue.offer(pending, [item, deferred] as const), Deferred.await(deferred)))
  })
