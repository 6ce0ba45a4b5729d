import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { makeRunId, type RunId } from "../../src/domain/Ids.ts"
import * as EventBus from "../../src/bus/index.ts"
import * as Outbox from "../../src/Outbox.ts"
import { drainOnce } from "../../src/OutboxRelay.ts"
import * as PgListener from "../../src/PgListener.ts"
import * as RunQueue from "../../src/queue/RunQueue.ts"
import * as RunStore from "../../src/RunStore.ts"
import { TestDatabase } from "../../src/testing/index.ts"

/** The stores on a fresh database, with a memory bus and no relay: the test drains the outbox itself. */
const storesWithoutRelay = Layer.build(
  Layer.mergeAll(RunStore.layer, EventBus.layerMemory, Outbox.layer).pipe(
    Layer.provideMerge(RunQueue.layer),
    Layer.provideMerge(PgListener.layer),
    Layer.provideMerge(TestDatabase.layer({ maxConnections: 2 }))
  )
)

const newRuns = (n: number) =>
  Effect.all(Array.from({ length: n }, () =>
    Effect.map(makeRunId, (id): RunStore.NewRun => ({
      id,
      task: "test.outbox",
      queue: "default",
      input: null,
      maxAttempts: 1,
      priority: 0,
      timeoutMs: null,
      idempotencyKey: null,
      runAt: null,
      claimedBy: undefined
    }))))

describe("Outbox", () => {
  it.scopedLive("a statement writes one row for all its runs; the relay takes whole rows up to its batch size", () =>
    Effect.gen(function*() {
      const ctx = yield* storesWithoutRelay
      const sql = Context.get(ctx, SqlClient.SqlClient)
      const store = Context.get(ctx, RunStore.RunStore)
      const first = yield* newRuns(5)
      const second = yield* newRuns(3)
      yield* store.create(first)
      yield* store.create(second)
      const rows = yield* sql<{ run_ids: Array<RunId>; seq_froms: Array<number>; seq_tos: Array<number>; events: number }>`
        SELECT run_ids, seq_froms, seq_tos, events FROM runstream_outbox ORDER BY id`
      expect(rows.map((row) => [...row.run_ids].sort())).toEqual([first.map((r) => r.id).sort(), second.map((r) => r.id).sort()])
      expect(rows.map((row) => [row.seq_froms, row.seq_tos, row.events])).toEqual([
        [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], 5],
        [[1, 1, 1], [1, 1, 1], 3]
      ])

      const bus = Context.get(ctx, EventBus.EventBus)
      const subscription = yield* bus.subscribe({})
      const received = () =>
        Effect.map(subscription.takeAll, ([messages]) =>
          [...messages].flatMap((m) => m._tag === "Event" ? [`${m.event.runId}:${m.event.seq}:${m.event.type}`] : []).sort())
      const queued = (runs: ReadonlyArray<RunStore.NewRun>) => runs.map((r) => `${r.id}:1:run.queued`).sort()
      // A batch of 5 events holds the first row only: the second would start at its bound.
      expect(yield* drainOnce(5).pipe(Effect.provide(ctx))).toBe(5)
      expect(yield* received()).toEqual(queued(first))
      // Whole rows: a row that starts under the bound is taken even if it ends past it.
      yield* store.create(yield* newRuns(4))
      expect(yield* drainOnce(4).pipe(Effect.provide(ctx))).toBe(7)
      expect((yield* received()).length).toBe(7)
      expect(yield* drainOnce(4).pipe(Effect.provide(ctx))).toBe(0)
      expect(Option.getOrThrow(yield* subscription.size)).toBe(0)
    }))

  it.scopedLive("the relay publishes each event as the log holds it, from the row's entries or, for a row written before they existed, from the log", () =>
    Effect.gen(function*() {
      const ctx = yield* storesWithoutRelay
      const sql = Context.get(ctx, SqlClient.SqlClient)
      const store = Context.get(ctx, RunStore.RunStore)
      const runs = yield* newRuns(3)
      yield* store.create(runs)
      const claims = yield* Context.get(ctx, RunQueue.RunQueue).claim({ workerId: "w", queues: ["default"], limit: 10, leaseMs: 60_000 })
      expect(claims.length).toBe(3)
      // The creation's row as a row written before 0006: no entries.
      yield* sql`UPDATE runstream_outbox SET entries = NULL WHERE id = (SELECT min(id) FROM runstream_outbox)`
      const bus = Context.get(ctx, EventBus.EventBus)
      const subscription = yield* bus.subscribe({})
      expect(yield* drainOnce(100).pipe(Effect.provide(ctx))).toBe(6)
      const [messages] = yield* subscription.takeAll
      const published = [...messages].flatMap((m) =>
        m._tag === "Event" ? [{ runId: m.event.runId, task: m.task, seq: m.event.seq, type: m.event.type, data: m.event.data, at: m.event.at.epochMillis }] : []
      )
      const logged = yield* sql<{ run_id: RunId; seq: number; type: string; data: unknown; at: number }>`
        SELECT run_id, seq, type, data, floor(extract(epoch FROM at) * 1000)::float8 AS at FROM runstream_events ORDER BY run_id, seq`
      expect(logged.length).toBe(6)
      const key = (e: { runId: RunId; seq: number }) => `${e.runId}:${e.seq}`
      expect([...published].sort((a, b) => key(a).localeCompare(key(b)))).toEqual(
        logged.map((e) => ({ runId: e.run_id, task: "test.outbox", seq: e.seq, type: e.type, data: e.data, at: e.at }))
      )
      // Each run's events in seq order: the log's first, then the rows' own.
      for (const run of runs) {
        expect(published.filter((e) => e.runId === run.id).map((e) => e.seq)).toEqual([1, 2])
      }
    }))

  it.scopedLive("a statement that appends nothing writes no row", () =>
    Effect.gen(function*() {
      const ctx = yield* storesWithoutRelay
      const sql = Context.get(ctx, SqlClient.SqlClient)
      const claims = yield* Context.get(ctx, RunQueue.RunQueue).claim({ workerId: "w", queues: ["default"], limit: 10, leaseMs: 1000 })
      expect(claims).toEqual([])
      const [row] = yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_outbox`
      expect(row!.n).toBe(0)
    }))
})
