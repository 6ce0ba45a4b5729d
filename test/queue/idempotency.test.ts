import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
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
      const request = { task: Echo.name, input: { n: 1 }, options: { idempotencyKey: "order-42" } }
      const [first] = yield* runs.startMany([request])
      const [second] = yield* runs.startMany([{ ...request, input: { n: 2 } }])
      expect(first!.created).toBe(true)
      expect(second!.created).toBe(false)
      expect(second!.run.id).toBe(first!.run.id)
      // The first start's input is kept.
      expect(second!.run.input).toEqual({ n: 1 })
      expect(second!.run.idempotencyKey).toBe("order-42")

      // The typed start answers the same run too.
      const third = yield* runs.start(Echo, { n: 3 }, { idempotencyKey: "order-42" })
      expect(third.id).toBe(first!.run.id)

      expect(yield* rowsWithKey("order-42")).toEqual({ runs: 1, jobs: 1 })
      expect(typesOf(yield* logOf(first!.run.id))).toEqual(["run.queued"])
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false }))))

  it.live("a repeated key in one batch yields one run", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const created = yield* runs.startMany([
        { task: Echo.name, input: "a", options: { idempotencyKey: "batch-key" } },
        { task: Echo.name, input: "b", options: { idempotencyKey: "batch-key" } },
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
          runs.startMany([{ task: Echo.name, input: { i }, options: { idempotencyKey: "race" } }])),
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
      const [again] = yield* runs.startMany([{ task: Echo.name, input: "twice", options: { idempotencyKey: "done-key" } }])
      expect(again!.created).toBe(false)
      expect(again!.run.id).toBe(run.id)
      expect(again!.run.status).toBe("succeeded")
      expect(yield* rowsWithKey("done-key")).toEqual({ runs: 1, jobs: 0 })
    }).pipe(Effect.provide(RunstreamTest.layer({
      tasks: [Echo],
      workers: fastWorkers
    }))))
})
