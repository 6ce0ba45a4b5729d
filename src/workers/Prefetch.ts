/**
 * How many claimed runs a worker pool keeps buffered beyond those executing:
 * about as many as it ends in `window`, up to `max`. A pool of quick runs then
 * claims in large batches (one statement for hundreds of runs), and a pool of
 * slow runs buffers next to nothing, so it does not hoard runs that another
 * worker could start now.
 *
 * The rate is measured from the ends counted between two readings at least
 * `minSpanMs` apart; a pool that was idle starts small and grows within a few
 * claims once runs end quickly. An infinite window always gives `max`.
 *
 * A span in which a place in the pool was free and the buffer empty while
 * the queue had more runs (`starved`) measures the claims' pace, not the
 * runs': it may raise the size, never lower it. Otherwise a claim that came
 * late would shrink the next one, which would come later still: with quick
 * runs, a pool settled into claiming only once its buffer was empty.
 */
export interface Prefetch {
  /** Counts one run ended (or handed back) by the pool. */
  readonly ended: () => void
  /** A place in the pool was free and the buffer empty while the queue had more runs. */
  readonly starved: () => void
  /** The buffer's size now, re-estimated from the ends since the last estimate. */
  readonly size: (nowMs: number) => number
  /** The last estimate, without re-estimating. */
  readonly current: () => number
}

const minSpanMs = 10

export const make = (options: { readonly max: number; readonly windowMs: number }): Prefetch => {
  const fixed = !Number.isFinite(options.windowMs)
  let ended = 0
  let fromEnded = 0
  let fromMs: number | undefined
  let size = fixed ? options.max : 0
  let starved = false
  return {
    ended: () => {
      ended++
    },
    starved: () => {
      starved = true
    },
    size: (nowMs) => {
      if (fixed) return size
      if (fromMs === undefined) {
        fromMs = nowMs
      } else if (nowMs - fromMs >= minSpanMs) {
        const perMs = (ended - fromEnded) / (nowMs - fromMs)
        const measured = Math.min(options.max, Math.floor(perMs * options.windowMs))
        size = starved ? Math.max(size, measured) : measured
        fromMs = nowMs
        fromEnded = ended
        starved = false
      }
      return size
    },
    current: () => size
  }
}
