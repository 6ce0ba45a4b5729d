import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Demo from "../../src/demo/tasks.ts"
import { Runs } from "../../src/Runs.ts"
import * as Stats from "../../src/Stats.ts"
import { RunstreamTest } from "../../src/testing/index.ts"

describe("Stats", () => {
  layer(
    Stats.layer({ lookback: "1 hour", maxScanned: 3 }).pipe(Layer.provideMerge(RunstreamTest.layer({ tasks: Demo.all, workers: false }))),
    { excludeTestServices: true }
  )((it) => {
    it.effect("reads the newest runs of the lookback up to its bound, and says when it reached it", () =>
      Effect.gen(function*() {
        const runs = yield* Runs
        const sql = yield* SqlClient.SqlClient
        const stats = yield* Stats.Stats
        const started = yield* Effect.forEach([1, 2, 3, 4, 5], (n) => runs.start(Demo.Echo, n))
        // All five ended a moment ago; one more created two hours ago (its id says so), outside the lookback.
        yield* sql`DELETE FROM runstream_jobs`
        yield* sql`UPDATE runstream_runs SET status = 'succeeded', started_at = now(), finished_at = now()`
        yield* sql`INSERT INTO runstream_runs (id, task, queue, status, max_attempts, created_at, run_at, started_at, finished_at)
          SELECT '0190a000-0000-7000-8000-000000000001', 'demo.echo', 'default', 'succeeded', 1, now(), now(), now(), now()`

        const truncated = yield* stats.read
        expect(truncated.window.truncated).toBe(true)
        expect(truncated.runs).toEqual([{ task: "demo.echo", status: "succeeded", count: 3 }])

        // Two of the five go: the other three and nothing older (the sixth is outside the lookback).
        yield* sql`DELETE FROM runstream_runs WHERE id IN (${started[0]!.id}, ${started[1]!.id})`
        const complete = yield* stats.read
        expect(complete.window.truncated).toBe(false)
        expect(complete.runs).toEqual([{ task: "demo.echo", status: "succeeded", count: 3 }])
        expect(complete.finishedPerMinute.reduce((n, m) => n + m.succeeded, 0)).toBe(3)
        expect(complete.queues).toEqual([])
      }))
  })
})
