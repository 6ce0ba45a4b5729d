/**
 * Concurrency and rate limits per key, as a task declares them
 * (`Task.make(..., { concurrency: { limit }, rateLimit: { limit, period } })`)
 * or a queue does (`QueueLimits.ts`), and as a run carries them (its start's
 * `concurrencyKey`; runs started without one share the key "").
 *
 * Where they hold (see `Claiming.ts`): a run of a task with a limit is never
 * created claimed (the start's handoff skips it) and is claimed only by the
 * limited claim, which serves keys round-robin and counts each key's running
 * runs and recent starts in a row of `runstream_limits` it locks
 * (`FOR UPDATE SKIP LOCKED`, then re-read: two claims never take the same
 * slot or token). The slot is given back by the statement that ends the
 * attempt (`RunQueue.recordEnds`: success, failure, retry, hand-back,
 * cancellation, and the reclaim of an expired lease, which goes through it)
 * or cancels the waiting run (`RunStore.cancel`).
 *
 * A rate limit is a sliding window: at most `limit` starts in any `period`
 * (the starts of the last period are kept, at most `limit` of them). A run
 * over it waits: its `run_at` moves to when a start is free again, and its
 * log gets `run.throttled` (the first time) with that time.
 * @since 0.3.0
 */
import { Duration, Option } from "effect"

export interface Limits {
  /** At most this many runs of one key running at once; null: no limit. */
  readonly concurrency: number | null
  /** At most `limit` starts of one key per `periodMs`; null: no limit. */
  readonly rateLimit: { readonly limit: number; readonly periodMs: number } | null
}

export const none: Limits = { concurrency: null, rateLimit: null }

/** The bounds a definition is checked against when a registry is built. */
export const bounds = {
  concurrency: { min: 1, max: 100_000 },
  rateLimit: { min: 1, max: 10_000 },
  periodMs: { min: 1, max: 24 * 60 * 60 * 1000 }
} as const

export const isLimited = (limits: Limits): boolean => limits.concurrency !== null || limits.rateLimit !== null

/** A task's limits as `Task.make` takes them; checked later (`check`), so a bad period is NaN here, not a throw. */
export const fromDefinition = (options: {
  readonly concurrency?: { readonly limit: number } | undefined
  readonly rateLimit?: { readonly limit: number; readonly period: Duration.DurationInput } | undefined
}): Limits => ({
  concurrency: options.concurrency === undefined ? null : options.concurrency.limit,
  rateLimit: options.rateLimit === undefined ? null : {
    limit: options.rateLimit.limit,
    periodMs: Option.match(Duration.decodeUnknown(options.rateLimit.period), {
      onNone: () => Number.NaN,
      // Durations below zero decode as zero; refused as too short.
      onSome: (period) => Duration.isFinite(period) ? Duration.toMillis(period) : Number.POSITIVE_INFINITY
    })
  }
})

const inRange = (value: number, range: { readonly min: number; readonly max: number }) =>
  Number.isInteger(value) && value >= range.min && value <= range.max

/** Why a task's limits are refused, if they are. */
export const check = (limits: Limits): string | undefined => {
  if (limits.concurrency !== null && !inRange(limits.concurrency, bounds.concurrency)) {
    return `concurrency.limit must be an integer from ${bounds.concurrency.min} to ${bounds.concurrency.max} (got ${limits.concurrency})`
  }
  if (limits.rateLimit !== null) {
    if (!inRange(limits.rateLimit.limit, bounds.rateLimit)) {
      return `rateLimit.limit must be an integer from ${bounds.rateLimit.min} to ${bounds.rateLimit.max} (got ${limits.rateLimit.limit})`
    }
    if (!inRange(limits.rateLimit.periodMs, bounds.periodMs)) {
      return `rateLimit.period must be a whole number of milliseconds from 1 ms to 1 day (got ${
        Number.isNaN(limits.rateLimit.periodMs) ? "no duration" : `${limits.rateLimit.periodMs} ms`
      })`
    }
  }
  return undefined
}

/**
 * Whose limits a row of `runstream_limits` counts: a task's (`task:<name>`)
 * or a queue's (`queue:<name>`). A run counts under one scope: its task's
 * when the task declares limits, else its queue's when the queue does.
 */
export const taskScope = (task: string): string => `task:${task}`
export const queueScope = (queue: string): string => `queue:${queue}`

/** What a run of a limited task or queue writes at its creation. */
export interface RunLimits {
  readonly scope: string
  readonly key: string
  readonly maxRunning: number | null
  readonly rateLimit: number | null
  readonly ratePeriodMs: number | null
}

/** A run's limits in `scope`, or undefined when there are none (the run is claimed as any other). */
export const ofRun = (scope: string, limits: Limits, concurrencyKey: string | undefined): RunLimits | undefined =>
  isLimited(limits)
    ? {
      scope,
      key: concurrencyKey ?? "",
      maxRunning: limits.concurrency,
      rateLimit: limits.rateLimit?.limit ?? null,
      ratePeriodMs: limits.rateLimit?.periodMs ?? null
    }
    : undefined
