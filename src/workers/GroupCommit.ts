/**
 * Group commit: callers submit one item each; a single fiber takes whatever is
 * waiting (up to `maxBatch`) and writes it with one call, so N concurrent
 * writers cost one transaction instead of N. No timer: a lone item is written at
 * once, and items arriving during a write form the next batch. The queue is
 * bounded, so a slow database pushes back on the submitters.
 */
import { Deferred, Effect, Exit, Queue } from "effect"

interface Pending<A, B, E> {
  readonly item: A
  /** Told the item's result; runs in the writer's fiber, so it must be quick. */
  readonly done: (exit: Exit.Exit<B, E>) => Effect.Effect<void>
}

export interface GroupCommit<A, B, E> {
  /** Submits an item and waits for its result. */
  readonly submit: (item: A) => Effect.Effect<B, E>
  /**
   * Submits an item without waiting: `done` is told the result once its batch
   * is written. Costs no fiber per item, for callers with nothing to do meanwhile.
   */
  readonly submitThen: (item: A, done: (exit: Exit.Exit<B, E>) => Effect.Effect<void>) => Effect.Effect<void>
}

export const make = <A, B, E>(options: {
  readonly maxBatch: number
  /** How many items may wait for the writer; a submission beyond waits for room. */
  readonly capacity: number
  readonly write: (items: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>
}) =>
  Effect.gen(function*() {
    const pending = yield* Effect.acquireRelease(
      Queue.bounded<Pending<A, B, E>>(options.capacity),
      // Whoever still waits when the owner's scope closes is told so.
      (queue) =>
        Effect.flatMap(Effect.zip(Queue.takeAll(queue), Effect.fiberId), ([left, fiberId]) =>
          Effect.forEach(left, (p) => p.done(Exit.interrupt(fiberId)), { discard: true })).pipe(
            Effect.zipRight(Queue.shutdown(queue))
          )
    )
    yield* Queue.takeBetween(pending, 1, options.maxBatch).pipe(
      Effect.flatMap((chunk) => {
        const batch = Array.from(chunk)
        return Effect.exit(options.write(batch.map((p) => p.item))).pipe(
          Effect.flatMap((exit) => Effect.forEach(batch, (p, i) => p.done(Exit.map(exit, (results) => results[i]!)), { discard: true })),
          // A batch taken is a batch answered, even while the owner shuts down.
          Effect.uninterruptible
        )
      }),
      Effect.forever,
      Effect.forkScoped
    )
    const submitThen = (item: A, done: (exit: Exit.Exit<B, E>) => Effect.Effect<void>) =>
      Queue.offer(pending, { item, done }).pipe(Effect.asVoid)
    const submit = (item: A): Effect.Effect<B, E> =>
      Effect.flatMap(Deferred.make<B, E>(), (deferred) =>
        Effect.zipRight(
          submitThen(item, (exit) => Deferred.done(deferred, exit)),
          Deferred.await(deferred)
        ))
    return { submit, submitThen } satisfies GroupCommit<A, B, E>
  })
