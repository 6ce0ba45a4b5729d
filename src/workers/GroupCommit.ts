/**
 * Group commit: callers submit one item each; a single fiber takes whatever is
 * waiting (up to `maxBatch`) and writes it with one call, so N concurrent
 * writers cost one transaction instead of N. No timer: a lone item is written at
 * once, and items arriving during a write form the next batch.
 *
 * Submitting is plain synchronous code (an array push, and a wake-up of the
 * writer when it is idle): the ends of thousands of runs a second go through
 * here, and an effect per item (a queue offer, a deferred) cost more than the
 * write itself. The waiting items are not bounded here: the pool bounds them
 * (it claims no more while the writer falls behind: see `placesTaken`), and
 * callers that wait for their result (`submit`) are bounded by the pool's
 * concurrency.
 */
import { Effect, Exit, FiberId, Queue } from "effect"

interface Pending<A, B, E> {
  readonly item: A
  /**
   * Told the item's result, in the writer's fiber: plain code, quick. What it
   * returns (rarely anything) runs after the whole batch was told.
   */
  readonly done: (exit: Exit.Exit<B, E>) => Effect.Effect<void> | void
}

export interface GroupCommit<A, B, E> {
  /** Submits an item and waits for its result. */
  readonly submit: (item: A) => Effect.Effect<B, E>
  /**
   * Submits an item without waiting: `done` is told the result once its batch
   * is written. Synchronous: no fiber, no effect per item.
   */
  readonly submitThen: (item: A, done: (exit: Exit.Exit<B, E>) => Effect.Effect<void> | void) => void
}

export const make = <A, B, E>(options: {
  readonly maxBatch: number
  readonly write: (items: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>
}) =>
  Effect.gen(function*() {
    let pending: Array<Pending<A, B, E>> = []
    // Set while the writer waits for items: the next submission wakes it.
    let idle = false
    let closed = false
    const doorbell = yield* Queue.sliding<void>(1)

    /** Tells each item its result; then runs what they asked for, in order. */
    const tell = (batch: ReadonlyArray<Pending<A, B, E>>, exitOf: (i: number) => Exit.Exit<B, E>) => {
      let after: Array<Effect.Effect<void>> | undefined
      for (let i = 0; i < batch.length; i++) {
        const then = batch[i]!.done(exitOf(i))
        if (then !== undefined) (after ??= []).push(then)
      }
      return after === undefined ? Effect.void : Effect.forEach(after, (effect) => effect, { discard: true })
    }

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        // Whoever still waits when the owner's scope closes is told so.
        closed = true
        const left = pending
        pending = []
        return Effect.flatMap(Effect.fiberId, (fiberId) => tell(left, () => Exit.interrupt(fiberId)))
      })
    )

    const writeNext = Effect.suspend(() => {
      if (pending.length === 0) {
        idle = true
        return Queue.take(doorbell)
      }
      const batch = pending.length <= options.maxBatch ? pending : pending.slice(0, options.maxBatch)
      pending = batch === pending ? [] : pending.slice(options.maxBatch)
      const items = new Array<A>(batch.length)
      for (let i = 0; i < batch.length; i++) items[i] = batch[i]!.item
      return Effect.flatMap(
        Effect.exit(options.write(items)),
        (exit) => tell(batch, Exit.isSuccess(exit) ? (i) => Exit.succeed(exit.value[i]!) : () => exit as Exit.Exit<never, E>)
      ).pipe(
        // A batch taken is a batch answered, even while the owner shuts down.
        Effect.uninterruptible
      )
    })
    yield* Effect.forkScoped(Effect.forever(writeNext))

    const submitThen = (item: A, done: Pending<A, B, E>["done"]): void => {
      if (closed) {
        // Only a body abandoned past the shutdown gets here; what `done` would run after is dropped.
        void done(Exit.interrupt(FiberId.none))
        return
      }
      pending.push({ item, done })
      if (idle) {
        idle = false
        doorbell.unsafeOffer(undefined)
      }
    }
    const submit = (item: A): Effect.Effect<B, E> =>
      Effect.async<B, E>((resume) => {
        submitThen(item, (exit) => resume(exit))
      })
    return { submit, submitThen } satisfies GroupCommit<A, B, E>
  })
