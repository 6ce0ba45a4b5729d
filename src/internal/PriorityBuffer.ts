/**
 * A small in-memory buffer that hands out its best item first (by `order`),
 * for a worker's prefetched runs: a high-priority run claimed after a batch of
 * low-priority ones still starts before them.
 */
import { Effect, Queue, type Order } from "effect"

export interface PriorityBuffer<A> {
  /** Adds items; those that come in order (a claim's runs do) each go in at the end. */
  readonly offerAll: (items: ReadonlyArray<A>) => Effect.Effect<void>
  /** Waits for an item and removes the best one. */
  readonly take: Effect.Effect<A>
  /** Whether it holds nothing now. */
  readonly isEmpty: () => boolean
}

export const make = <A>(order: Order.Order<A>): Effect.Effect<PriorityBuffer<A>> =>
  Effect.map(Queue.unbounded<void>(), (ready) => {
    // Sorted best first; small (a worker's concurrency plus prefetch).
    const items: Array<A> = []
    const insert = (item: A) => {
      let i = items.length
      while (i > 0 && order(items[i - 1]!, item) > 0) i--
      items.splice(i, 0, item)
    }
    const take: Effect.Effect<A> = Effect.flatMap(Queue.take(ready), () => {
      const item = items.shift()
      // Tokens and items are added together, so an item is always there.
      return item === undefined ? take : Effect.succeed(item)
    })
    return {
      offerAll: (batch) => Effect.suspend(() => {
        for (const item of batch) insert(item)
        return Queue.offerAll(ready, batch.map(() => undefined))
      }),
      take,
      isEmpty: () => items.length === 0
    }
  })
