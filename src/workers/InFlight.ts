/**
 * What a pool holds: its claimed runs (buffered, executing, or whose end is
 * being recorded) and the counters its parts share: the claim loop reads
 * them to decide when and how much to claim, the pool keeps them.
 * @since 0.2.0
 */
import type { Fiber, Queue } from "effect"
import type { RunId } from "../domain/Ids.ts"
import type { Claim } from "../queue/Claiming.ts"
import type { Prefetch } from "./Prefetch.ts"
import { writerCapacity } from "./Writer.ts"

/** Why an attempt is stopped before its body ends: see `Pool.ts`. */
export type StopReason = "cancel" | "leaseLost" | "shutdown"

/** A claimed run, buffered or executing. */
export interface InFlight {
  readonly claim: Claim
  /** Set when it is given a fiber of its own (or a stop ended it while it was buffered). */
  taken: boolean
  /** Set when it was given a fiber of its own: it holds one of the pool's `concurrency` places until ended. */
  running: boolean
  /** Its fiber, from the moment its body begins until it is ended (only stops use it). */
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  stop: StopReason | undefined
  /** Set once its attempt is over (or abandoned) and its outcome decided: see `end`. */
  ended: boolean
  /** Set once its end is handed to the writer: it no longer takes a place in the pool. */
  recording: boolean
  /** When its body began (epoch ms), for the metrics; 0 before. */
  startedAt: number
}

export const inFlight = (claim: Claim): InFlight => ({
  claim,
  taken: false,
  running: false,
  fiber: undefined,
  stop: undefined,
  ended: false,
  recording: false,
  startedAt: 0
})

/**
 * Places taken in a pool: runs buffered or executing, places promised to runs
 * being started, and ends waiting for the writer beyond its capacity. Up to
 * `writerCapacity` ends waiting take no place (the next claim does not wait
 * for their commit); beyond, they do, and the pool claims no more: else a pool
 * whose commits fall behind would take the whole queue into memory, an end
 * waiting for each run.
 */
export const placesTaken = (pool: {
  /** Runs the pool holds: buffered, executing, or whose end is being recorded. */
  readonly inFlight: number
  /** Among them, runs whose end is submitted to the writer and not written yet. */
  readonly recording: number
  readonly reserved: number
  readonly writerCapacity: number
}): number => pool.inFlight - Math.min(pool.recording, pool.writerCapacity) + pool.reserved

/** A claim takes whatever is free once at least this much is (see `ClaimLoop`). */
export const batchThreshold = (capacity: number) => Math.max(1, Math.ceil(capacity / 2))

/** One pool's state, shared by its parts. */
export class PoolState {
  readonly inFlight = new Map<RunId, InFlight>()
  /** Cleared when the pool shuts down: it claims and starts no more. */
  accepting = true
  /** Set by a wake-up (an enqueue here or elsewhere, a reconnect), cleared by the claim it causes. */
  woken = true
  /** Set while the claim loop waits for work: its last claim found fewer runs than it asked for. */
  idle = false
  /** Places promised to runs being started in this program (see the pool's taker). */
  reserved = 0
  /** Attempts executing (or about to): at most `concurrency` (see the pool's `dispatch`). */
  running = 0
  /** Runs in flight whose end is recorded already or being recorded (see the pool's `record`). */
  recording = 0
  /** Runs taken at their start, without a claim. */
  takenAtStart = 0

  constructor(
    readonly concurrency: number,
    readonly prefetch: Prefetch,
    /**
     * Pokes the claim loop (and the shutdown's drain): a place it waits for
     * was freed, or a wake-up came. One queue, so waiting costs no race of two takes.
     */
    readonly signal: Queue.Queue<void>
  ) {}

  /** `placesTaken` of this pool (written out: it runs for every run that ends). */
  taking(): number {
    return this.inFlight.size - Math.min(this.recording, writerCapacity) + this.reserved
  }
}
