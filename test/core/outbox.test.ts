import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { makeRunId, type RunId } from "../../src/domain/Ids.ts"
import * as EventBus from "../../src/bus/index.ts"
import * as Outbox from "../../src/Outbox.ts"
import { drainOnce } from "../../src/OutboxRelay.ts"
import * as PgListener from "../../src/PgListener.ts"
import * as Queue from "../../src/Queue.ts"
import * as RunStore from "../../src/RunStore.ts"
import { TestDatabase } from "../../src/testing/index.ts"

/** The stores on a fresh database, with a memory bus and no relay: the test drains the outbox itself. */
const storesWithoutRelay = Layer.build(
  Layer.mergeAll(RunStore.layer, EventBus.layerMemory, Outbox.layer).pipe(
    Layer.provideMerge(Queue.layer),
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
      takenBy: undefined
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

  it.scopedLive("a statement that appends nothing writes no row", () =>
    Effect.gen(function*() {
      const ctx = yield* storesWithoutRelay
      const sql = Context.get(ctx, SqlClient.SqlClient)
      const claims = yield* Context.get(ctx, Queue.Queue).claim({ workerId: "w", queues: ["default"], limit: 10, leaseMs: 1000 })
      expect(claims).toEqual([])
      const [row] = yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_outbox`
      expect(row!.n).toBe(0)
    }))
})
