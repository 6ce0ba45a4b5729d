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
 */
export interface Prefetch {
  /** Counts one run ended (or handed back) by the pool. */
  readonly ended: () => void
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
  return {
    ended: () => {
      ended++
    },
    size: (nowMs) => {
      if (fixed) return size
      if (fromMs === undefined) {
        fromMs = nowMs
      } else if (nowMs - fromMs >= minSpanMs) {
        const perMs = (ended - fromEnded) / (nowMs - fromMs)
        size = Math.min(options.max, Math.floor(perMs * options.windowMs))
        fromMs = nowMs
        fromEnded = ended
      }
      return size
    },
    current: () => size
  }
}
