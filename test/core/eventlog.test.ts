import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { EventLog } from "../../src/EventLog.ts"
import { RunQueue } from "../../src/queue/RunQueue.ts"
import { Runs } from "../../src/Runs.ts"
import { Burst, program } from "./support.ts"

interface SeqSummary {
  readonly run_id: string
  readonly n: number
  readonly lo: number
  readonly hi: number
  readonly distinct: number
}

const summary = (sql: SqlClient.SqlClient) =>
  sql<SeqSummary>`
    SELECT run_id::text, count(*)::integer AS n, min(seq) AS lo, max(seq) AS hi,
      count(DISTINCT seq)::integer AS distinct
    FROM runstream_events GROUP BY run_id`

describe.concurrent("event log", () => {
  it.scopedLive("50 runs × 100 events appended concurrently, each in its own transaction: seq is exactly 1..n", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program({ workers: false, maxConnections: 12 }))
      const runs = Context.get(ctx, Runs)
      const queue = Context.get(ctx, RunQueue)
      const log = Context.get(ctx, EventLog)
      const sql = Context.get(ctx, SqlClient.SqlClient)

      yield* Effect.forEach(Array.from({ length: 50 }), () => runs.start(Burst, { n: 0, concurrency: 1 }))
      const claims = yield* queue.claim({ workerId: "test", queues: ["default"], limit: 50, leaseMs: 60_000 })
      expect(claims).toHaveLength(50)

      // 5,000 single-event appends, interleaved across runs, 12 connections at once.
      const appends = claims.flatMap((claim) =>
        Array.from({ length: 100 }, (_, i) => ({ runId: claim.runId, attempt: claim.attempt, type: "n", data: { i } }))
      ).sort(() => Math.random() - 0.5)
      const seqs = yield* Effect.forEach(appends, (item) => log.append([item]), { concurrency: 12 })
      expect(seqs.every(([seq]) => typeof seq === "number")).toBe(true)

      // queued (1) + started (2) + 100 appended = 102 per run, no gap, no duplicate.
      const rows = yield* summary(sql)
      expect(rows).toHaveLength(50)
      for (const row of rows) {
        expect(row).toMatchObject({ n: 102, lo: 1, hi: 102, distinct: 102 })
      }
      const lastSeqs = yield* sql<{ last_seq: number }>`SELECT last_seq FROM runstream_runs`
      expect(lastSeqs.every((r) => r.last_seq === 102)).toBe(true)
    }), 180_000)

  it.scopedLive("50 runs emitting 100 events each, 10 emits at a time per run, through the workers: seq is exactly 1..n", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program({ workers: { concurrency: 50 } }))
      const runs = Context.get(ctx, Runs)
      const sql = Context.get(ctx, SqlClient.SqlClient)
      const started = yield* Effect.forEach(Array.from({ length: 50 }), () => runs.start(Burst, { n: 100, concurrency: 10 }))
      const done = yield* Effect.forEach(started, (run) => runs.awaitCompletion(run.id, { timeout: "60 seconds" }), {
        concurrency: 50
      })
      expect(done.every((run) => run.status === "succeeded")).toBe(true)
      const rows = yield* summary(sql)
      expect(rows).toHaveLength(50)
      for (const row of rows) {
        expect(row).toMatchObject({ n: 103, lo: 1, hi: 103, distinct: 103 })
      }
      // Every burst index 1..100 is there once per run.
      const bursts = yield* sql<{ n: number; distinct: number }>`
        SELECT count(*)::integer AS n, count(DISTINCT (run_id, data->>'i'))::integer AS distinct
        FROM runstream_events WHERE type = 'burst'`
      expect(bursts[0]).toEqual({ n: 5000, distinct: 5000 })
    }))

  it.scopedLive("refuses appends for an attempt that does not hold the run (fencing)", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program({ workers: false }))
      const runs = Context.get(ctx, Runs)
      const queue = Context.get(ctx, RunQueue)
      const log = Context.get(ctx, EventLog)
      const run = yield* runs.start(Burst, { n: 0, concurrency: 1 })
      // Not claimed yet: no attempt holds it.
      expect(yield* log.append([{ runId: run.id, attempt: 1, type: "x", data: null }])).toEqual([undefined])
      const [claim] = yield* queue.claim({ workerId: "w", queues: ["default"], limit: 1, leaseMs: 60_000 })
      expect(yield* log.append([{ runId: run.id, attempt: claim!.attempt + 1, type: "x", data: null }])).toEqual([undefined])
      expect(yield* log.append([{ runId: run.id, attempt: claim!.attempt, type: "x", data: null }])).toEqual([3])
    }))
})
