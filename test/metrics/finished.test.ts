/**
 * `runstream_runs_finished_total` counts the runs an end statement really
 * finished: not an end the statement refused (its attempt had lost the lease),
 * and a run the lease reclaim failed (its worker died on its last attempt).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Logger, LogLevel, MetricState, Queue, Schema } from "effect"
import type { RunId } from "../../src/domain/Ids.ts"
import * as Metrics from "../../src/metrics/Metrics.ts"
import { LeaseReclaim } from "../../src/queue/LeaseReclaim.ts"
import { RunQueue } from "../../src/queue/RunQueue.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import * as Task from "../../src/Task.ts"

/** A counter's value in the program's metrics now (0 when it has no such series). */
const counter = (name: string, tags: Record<string, string>) =>
  Effect.gen(function*() {
    const metrics = yield* Metrics.Metrics
    const pair = (yield* metrics.snapshot).find(({ metricKey }) =>
      metricKey.name === name && Object.entries(tags).every(([key, value]) => metricKey.tags.some((tag) => tag.key === key && tag.value === value))
    )
    return pair !== undefined && MetricState.isCounterState(pair.metricState) ? Number(pair.metricState.count) : 0
  })

const histogramCount = (name: string, task: string) =>
  Effect.gen(function*() {
    const metrics = yield* Metrics.Metrics
    const pair = (yield* metrics.snapshot).find(({ metricKey }) =>
      metricKey.name === name && metricKey.tags.some((tag) => tag.key === "task" && tag.value === task)
    )
    return pair !== undefined && MetricState.isHistogramState(pair.metricState) ? pair.metricState.count : 0
  })

describe("runs finished", () => {
  it.scopedLive("an end refused because the attempt lost its lease finishes no run", () =>
    Effect.gen(function*() {
      const began = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const Held = Task.make("test.held", {
        input: Schema.Struct({}),
        output: Schema.Struct({}),
        run: () => Deferred.succeed(began, undefined).pipe(Effect.zipRight(Deferred.await(gate)), Effect.as({}))
      })
      // The pool's log, to wait for its refusal (logged at info).
      const logs = yield* Queue.unbounded<string>()
      const capture = Logger.make(({ message }) => Queue.unsafeOffer(logs, String(message)))
      const program = yield* Layer.build(
        RunstreamTest.layer({ tasks: [Held], workers: { lease: "30 seconds", shutdownGrace: "1 second" }, retention: false }).pipe(
          Layer.provide(Layer.merge(Logger.replace(Logger.defaultLogger, capture), Logger.minimumLogLevel(LogLevel.Info)))
        )
      )
      yield* Effect.gen(function*() {
        const run = yield* (yield* Runs).start(Held, {})
        yield* Deferred.await(began)
        // Another worker holds the run now (as after a reclaim and a claim elsewhere): this attempt's end is refused.
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE runstream_jobs SET locked_by = 'another-worker' WHERE run_id = ${run.id}`
        yield* Deferred.succeed(gate, undefined)
        while (!(yield* Queue.take(logs)).includes("was refused")) {
          // The pool's other lines.
        }
        // Decided as succeeded, not finished.
        expect(yield* counter(Metrics.names.attempts, { task: "test.held", outcome: "succeeded" })).toBe(1)
        expect(yield* counter(Metrics.names.runsFinished, { task: "test.held" })).toBe(0)
        expect(yield* histogramCount(Metrics.names.runDuration, "test.held")).toBe(0)
        expect((yield* (yield* Runs).get(run.id)).status).toBe("running")
      }).pipe(Effect.timeout("30 seconds"), Effect.provide(program))
    }), 60_000)

  it.scopedLive("a run the lease reclaim fails (its worker died on its last attempt) is counted, by the program that reclaimed it", () =>
    Effect.gen(function*() {
      const Echo = Task.make("test.echo", { input: Schema.Number, output: Schema.Number, run: Effect.succeed })
      // No workers here: the attempt is a dead worker's. Reclaimed when the test says (`reclaimNow`).
      const program = yield* Layer.build(RunstreamTest.layer({ tasks: [Echo], workers: false, reclaimInterval: "1 hour" }))
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const last = yield* runs.start(Echo, 1, { maxAttempts: 1 })
        const retried = yield* runs.start(Echo, 2, { maxAttempts: 2 })
        const claims = yield* (yield* RunQueue).claim({ workerId: "dead-worker", leaseMs: 30_000, queues: ["default"], limit: 10 })
        expect(claims.map((claim) => claim.runId).sort()).toEqual([last.id, retried.id].sort())
        // Its lease ran out long ago.
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE runstream_jobs SET locked_until = now() - interval '1 minute' WHERE locked_by = 'dead-worker'`
        yield* (yield* LeaseReclaim).reclaimNow
        const status = (id: RunId) => Effect.map(runs.get(id), (run) => run.status)
        expect(yield* status(last.id)).toBe("failed")
        expect(yield* status(retried.id)).toBe("queued")
        expect(yield* counter(Metrics.names.runsFinished, { task: "test.echo", outcome: "failed" })).toBe(1)
        expect(yield* counter(Metrics.names.runsFinished, { task: "test.echo", outcome: "retrying" })).toBe(0)
        expect(yield* histogramCount(Metrics.names.runDuration, "test.echo")).toBe(1)
      }).pipe(Effect.provide(program))
    }), 60_000)
})
