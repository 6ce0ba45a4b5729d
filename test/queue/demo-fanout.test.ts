/**
 * `demo.fanout` (the demo of child runs in `dev`): its children run, it sums
 * their counts from one wait, and a failed child becomes its output.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Demo from "../../src/demo/tasks.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { fastWorkers, logOf, patience } from "./support.ts"

const program = RunstreamTest.layer({ tasks: Demo.all, workers: fastWorkers })

const childrenOf = (runId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ task: string; status: string }>`SELECT task, status FROM runstream_runs WHERE parent_id = ${runId} ORDER BY created_at, id`)

describe("demo.fanout", () => {
  it.live("sums its children's counts from one wait", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const parent = yield* runs.start(Demo.FanOut, { children: 4, to: 3 })
      const done = yield* RunstreamTest.waitForRunCompletion(parent.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.output).toEqual({ total: 12, failed: null })
      expect(yield* childrenOf(parent.id)).toEqual(Array.from({ length: 4 }, () => ({ task: "demo.count", status: "succeeded" })))
      const log = yield* logOf(parent.id)
      expect(log.filter((event) => event.type === "child.started")).toHaveLength(4)
      // At most one wait (none if every child had ended by then), whatever the children.
      expect(log.filter((event) => event.type === "run.waiting").length).toBeLessThanOrEqual(1)
    }).pipe(Effect.provide(program)))

  it.live("a failed child is the parent's output, by name", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const parent = yield* runs.start(Demo.FanOut, { children: 3, to: 1, failAt: 2 })
      const done = yield* RunstreamTest.waitForRunCompletion(parent.id, patience)
      expect(done.output).toEqual({ total: 0, failed: "child-2" })
      expect((yield* childrenOf(parent.id)).map((child) => child.status).sort()).toEqual(["failed", "succeeded", "succeeded"])
    }).pipe(Effect.provide(program)))
})
