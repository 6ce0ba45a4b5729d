/**
 * The two ways a run becomes claimed (`src/queue/Claiming.ts`): the claim of a
 * waiting run, and the handoff of a run claimed at its creation. Both must
 * leave the same rows and give the worker the same `Claim`.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import type { RunId } from "../../src/domain/Ids.ts"
import type { Claim, Taker } from "../../src/queue/Claiming.ts"
import { RunQueue } from "../../src/queue/RunQueue.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { jobOf, logOf } from "./support.ts"

const workerId = "test-claimant"
const leaseMs = 60_000

/** A taker that always has a runner free, and keeps what it is handed. */
const recordingTaker = (taken: Array<Claim>): Taker => ({
  workerId,
  leaseMs,
  queues: new Set(["default"]),
  tasks: new Set([Echo.name]),
  tryReserve: () => true,
  cancel: () => {},
  take: (claim) => Effect.sync(() => void taken.push(claim))
})

/** What a claimed run leaves behind, without what differs from run to run (ids, times). */
const claimedState = (runId: RunId) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const run = yield* (yield* Runs).get(runId)
    const job = Option.getOrThrow(yield* jobOf(runId))
    const [lease] = yield* sql<{ lease_ms: number }>`
      SELECT (extract(epoch FROM j.locked_until - r.started_at) * 1000)::integer AS lease_ms
      FROM runstream_jobs j JOIN runstream_runs r ON r.id = j.run_id WHERE j.run_id = ${runId}`
    const log = yield* logOf(runId)
    return {
      run: { status: run.status, attempt: run.attempt, lastSeq: run.lastSeq, started: run.startedAt !== null },
      job: { lockedBy: job.locked_by, attempt: job.attempt, leaseMs: lease!.lease_ms },
      log: log.map((event) => [event.seq, event.type, event.type === "run.started" ? event.data : null])
    }
  })

const comparable = (claim: Claim) => ({ ...claim, runId: undefined, runAt: undefined, firstStartedAt: undefined })

describe("claiming", () => {
  it.scopedLive("a run claimed by the claim and one claimed at its start leave the same rows and give the same Claim", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const queue = yield* RunQueue

      // The claim: a waiting run (no taker yet), claimed by the statement.
      const waiting = yield* runs.start(Echo, "same", { maxAttempts: 4, priority: 3, timeoutMs: 5000 })
      expect(waiting.status).toBe("queued")
      const [claimed] = yield* queue.claim({ workerId, queues: ["default"], limit: 10, leaseMs })
      expect(claimed!.runId).toBe(waiting.id)

      // The handoff: a run started while a taker has a runner free.
      const taken: Array<Claim> = []
      yield* queue.handoff.register(recordingTaker(taken))
      const handed = yield* runs.start(Echo, "same", { maxAttempts: 4, priority: 3, timeoutMs: 5000 })
      expect(handed.status).toBe("running")
      expect(taken.map((claim) => claim.runId)).toEqual([handed.id])

      expect(comparable(taken[0]!)).toEqual(comparable(claimed!))
      expect(taken[0]!.runAt.getTime()).toBe(handed.runAt.epochMillis)
      // Both bring the run's first start, as its row has it (a run's duration is measured from it).
      expect(taken[0]!.firstStartedAt).toBe(handed.startedAt!.epochMillis)
      expect(claimed!.firstStartedAt).toBe((yield* runs.get(waiting.id)).startedAt!.epochMillis)
      const viaClaim = yield* claimedState(waiting.id)
      expect(viaClaim).toEqual({
        run: { status: "running", attempt: 1, lastSeq: 2, started: true },
        job: { lockedBy: workerId, attempt: 1, leaseMs },
        log: [[1, "run.queued", null], [2, "run.started", { attempt: 1 }]]
      })
      expect(yield* claimedState(handed.id)).toEqual(viaClaim)
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false }))))
})
