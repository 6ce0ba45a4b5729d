/**
 * A small in-memory buffer that hands out its best item first (by `order`),
 * for a worker's prefetched runs: a high-priority run claimed after a batch of
 * low-priority ones still starts before them. Synchronous: the pool polls it
 * whenever a runner's place is free (see `Pool.ts`).
 */
import type { Order } from "effect"

export interface PriorityBuffer<A> {
  /** Adds items; those that come in order (a claim's runs do) each go in at the end. */
  readonly offerAll: (items: ReadonlyArray<A>) => void
  /** Removes and returns the best item, if any. */
  readonly poll: () => A | undefined
}

export const make = <A>(order: Order.Order<A>): PriorityBuffer<A> => {
  // Sorted best first; small (a worker's concurrency plus prefetch).
  const items: Array<A> = []
  const insert = (item: A) => {
    let i = items.length
    while (i > 0 && order(items[i - 1]!, item) > 0) i--
    items.splice(i, 0, item)
  }
  return {
    offerAll: (batch) => {
      for (const item of batch) insert(item)
    },
    poll: () => items.shift()
  }
}
