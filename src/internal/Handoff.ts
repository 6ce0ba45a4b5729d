/**
 * Idle local workers, offered runs as they start. A run started in a program
 * whose pool has a free runner and found nothing ready at its last claim is
 * created already leased to that pool (`run.started` written by the creating
 * statement) and handed to it after the commit: one statement from start to
 * body instead of a start, a wake-up and a claim.
 *
 * Fairness: such a worker's last claim found no ready run of its queues, so a
 * run handed over skips only runs enqueued elsewhere since then.
 */
import { Effect, type Scope } from "effect"
import type { Claim } from "../Queue.ts"

export interface Taker {
  readonly workerId: string
  readonly leaseMs: number
  readonly queues: ReadonlySet<string>
  readonly tasks: ReadonlySet<string>
  /** Reserves a runner for a run starting now; false when none is idle. */
  readonly tryReserve: () => boolean
  /** Gives a reservation back: its run was not created (an error, a repeated idempotency key). */
  readonly cancel: () => void
  /** Hands over a run created leased to this taker, once its statement committed. */
  readonly take: (claim: Claim) => Effect.Effect<void>
}

export interface Handoff {
  /** Offers `taker` until the scope closes. */
  readonly register: (taker: Taker) => Effect.Effect<void, never, Scope.Scope>
  /** An idle taker of `queue` and `task` that reserved a runner, if any. */
  readonly reserve: (queue: string, task: string) => Taker | undefined
}

export const make: Effect.Effect<Handoff> = Effect.sync(() => {
  const takers = new Set<Taker>()
  return {
    register: (taker) =>
      Effect.acquireRelease(
        Effect.sync(() => void takers.add(taker)),
        () => Effect.sync(() => void takers.delete(taker))
      ),
    reserve: (queue, task) => {
      for (const taker of takers) {
        if (taker.queues.has(queue) && taker.tasks.has(task) && taker.tryReserve()) return taker
      }
      return undefined
    }
  }
})
