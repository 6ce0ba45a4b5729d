import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Count, Echo } from "../../src/demo/tasks.ts"
import { IdempotencyConflict } from "../../src/domain/Errors.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { fastWorkers, logOf, patience, typesOf } from "./support.ts"

const rowsWithKey = (key: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const runs = yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_runs WHERE idempotency_key = ${key}`
    const jobs = yield* sql<{ n: number }>`
      SELECT count(*)::integer AS n FROM runstream_jobs j JOIN runstream_runs r ON r.id = j.run_id
      WHERE r.idempotency_key = ${key}`
    return { runs: runs[0]!.n, jobs: jobs[0]!.n }
  })

describe.concurrent("idempotency keys", () => {
  it.live("starting twice with one key returns the same run, created only the first time", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const request = { task: Echo.name, input: { n: 1, m: [1, 2] }, options: { idempotencyKey: "order-42" } }
      const [first] = yield* runs.startMany([request])
      // The same input, its keys in another order: the same request.
      const [second] = yield* runs.startMany([{ ...request, input: { m: [1, 2], n: 1 } }])
      expect(first!.created).toBe(true)
      expect(second!.created).toBe(false)
      expect(second!.run.id).toBe(first!.run.id)
      expect(second!.run.idempotencyKey).toBe("order-42")

      // The typed start answers the same run too.
      const third = yield* runs.start(Echo, { n: 1, m: [1, 2] }, { idempotencyKey: "order-42" })
      expect(third.id).toBe(first!.run.id)

      expect(yield* rowsWithKey("order-42")).toEqual({ runs: 1, jobs: 1 })
      expect(typesOf(yield* logOf(first!.run.id))).toEqual(["run.queued"])
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false }))))

  it.live("a repeated key in one batch yields one run", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const created = yield* runs.startMany([
        { task: Echo.name, input: "a", options: { idempotencyKey: "batch-key" } },
        { task: Echo.name, input: "a", options: { idempotencyKey: "batch-key" } },
        { task: Echo.name, input: "c" }
      ])
      expect(created.map((c) => c.created)).toEqual([true, false, true])
      expect(created[1]!.run.id).toBe(created[0]!.run.id)
      expect(created[2]!.run.id).not.toBe(created[0]!.run.id)
      expect(yield* rowsWithKey("batch-key")).toEqual({ runs: 1, jobs: 1 })
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false }))))

  it.live("concurrent starts with one key create exactly one run", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const attempts = 24
      const results = yield* Effect.all(
        Array.from({ length: attempts }, (_, i) =>
          runs.startMany([{ task: Echo.name, input: { order: 7 }, options: { idempotencyKey: "race", priority: i } }])),
        { concurrency: "unbounded" }
      )
      const created = results.map((r) => r[0]!)
      expect(new Set(created.map((c) => c.run.id)).size).toBe(1)
      expect(created.filter((c) => c.created)).toHaveLength(1)
      // One run; its job may already be done and gone (the workers are running).
      const rows = yield* rowsWithKey("race")
      expect(rows.runs).toBe(1)
      expect(rows.jobs).toBeLessThanOrEqual(1)

      // and that one run executes once.
      const done = yield* RunstreamTest.waitForRunCompletion(created[0]!.run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(1)
      expect(typesOf(yield* logOf(done.id))).toEqual(["run.queued", "run.started", "run.succeeded"])
    }).pipe(Effect.provide(RunstreamTest.layer({
      tasks: [Echo],
      workers: fastWorkers,
      maxConnections: 8
    }))))

  it.live("a key stays taken after its run finished", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Echo, "once", { idempotencyKey: "done-key" })
      yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      const [again] = yield* runs.startMany([{ task: Echo.name, input: "once", options: { idempotencyKey: "done-key" } }])
      expect(again!.created).toBe(false)
      expect(again!.run.id).toBe(run.id)
      expect(again!.run.status).toBe("succeeded")
      expect(yield* rowsWithKey("done-key")).toEqual({ runs: 1, jobs: 0 })
    }).pipe(Effect.provide(RunstreamTest.layer({
      tasks: [Echo],
      workers: fastWorkers
    }))))

  it.live("a key reused with another input or task is refused with IdempotencyConflict, and nothing is written", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const sql = yield* SqlClient.SqlClient
      const first = yield* runs.start(Echo, { n: 1 }, { idempotencyKey: "pay-1" })
      const refusals = [
        [{ task: Echo.name, input: { n: 2 }, options: { idempotencyKey: "pay-1" } }],
        [{ task: Count.name, input: { to: 1 }, options: { idempotencyKey: "pay-1" } }],
        // With other runs in the batch: none of them is created.
        [{ task: Echo.name, input: "fresh" }, { task: Echo.name, input: { n: 2 }, options: { idempotencyKey: "pay-1" } }]
      ]
      for (const requests of refusals) {
        const error = yield* Effect.flip(runs.startMany(requests))
        expect(error).toBeInstanceOf(IdempotencyConflict)
        expect(error).toMatchObject({ idempotencyKey: "pay-1", runId: first.id })
      }
      // One key twice in a batch, with different inputs.
      const twice = yield* Effect.flip(runs.startMany([
        { task: Echo.name, input: 1, options: { idempotencyKey: "pay-2" } },
        { task: Echo.name, input: 2, options: { idempotencyKey: "pay-2" } }
      ]))
      expect(twice).toMatchObject({ _tag: "IdempotencyConflict", idempotencyKey: "pay-2" })
      const [{ n }] = yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_runs`
      expect(n).toBe(1)
      // The same request still answers its run.
      expect((yield* runs.start(Echo, { n: 1 }, { idempotencyKey: "pay-1" })).id).toBe(first.id)
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo, Count], workers: false }))))

  it.live("a key of a run created before requests were hashed answers that run, whatever the input", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const sql = yield* SqlClient.SqlClient
      const old = yield* runs.start(Echo, "old", { idempotencyKey: "legacy" })
      yield* sql`UPDATE runstream_runs SET request_hash = NULL WHERE id = ${old.id}`
      expect((yield* runs.start(Echo, "new", { idempotencyKey: "legacy" })).id).toBe(old.id)
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false }))))
})
