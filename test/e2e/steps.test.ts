/**
 * The headline test of issue 20's journaled steps, with real processes: a
 * worker process running a five-step workflow is killed with SIGKILL after
 * step 3 (its entry committed, step 4 under way); another worker process
 * resumes the run, and steps 1-3 are not run again. Side effects are lines
 * of a file, outside the database.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted, Stream } from "effect"
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { bundle } from "../../scripts/bundle.ts"
import * as EventBus from "../../src/bus/index.ts"
import * as Database from "../../src/Database.ts"
import { DatabaseUrl } from "../../src/Database.ts"
import { stepCompletedType } from "../../src/domain/RunEvent.ts"
import { Runs } from "../../src/Runs.ts"
import * as Runstream from "../../src/Runstream.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import * as Child from "./Child.ts"
import { Workflow5 } from "./StepsWorkflow.ts"

const root = new URL("../..", import.meta.url).pathname

/** The worker program bundled once (beside `node_modules`): two processes start faster than with tsx. */
const bundled = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = join(root, "bundle", `steps-test-${process.pid}`)
    mkdirSync(dir, { recursive: true })
    await bundle(join(root, "test", "e2e", "steps-worker.ts"), join(dir, "steps-worker.mjs"))
    return dir
  }),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => relative(root, join(dir, "steps-worker.mjs"))))

/** A file for the steps' side effects, in a directory removed at the end. */
const sideEffectsFile = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = mkdtempSync(join(tmpdir(), "runstream-steps-"))
    chmodSync(dir, 0o755)
    writeFileSync(join(dir, "steps.log"), "")
    return dir
  }),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => join(dir, "steps.log")))

/** This test's own program on the database: starts and watches the run, reclaims expired leases; no workers. */
const watcher = Runstream.layerRuntime({ bus: EventBus.layerPostgres, reclaimInterval: "200 millis" }).pipe(
  Layer.provideMerge(Task.layerRegistry(Workflow5)),
  Layer.provideMerge(Database.layerClient({ maxConnections: 4, connectTimeout: TestDatabase.connectTimeout }))
)

describe("journaled steps across processes", () => {
  it.scopedLive("a 5-step workflow whose worker is killed after step 3 is resumed by another: steps 1-3 not run again", () =>
    Effect.gen(function*() {
      const url = Redacted.value((yield* DatabaseUrl).url)
      const runs = yield* Runs
      const program = yield* bundled
      const file = yield* sideEffectsFile
      const env = {
        DATABASE_URL: url,
        STEPS_FILE: file,
        RUNSTREAM_LEASE: "2 seconds",
        RUNSTREAM_RECLAIM_INTERVAL: "200 millis",
        RUNSTREAM_WORKER_POLL: "200 millis"
      }
      // The first worker stops in step 4, before its side effect.
      const first = yield* Child.start(program, { ...env, STEPS_HOLD_AT: "4" })
      yield* first.waitFor(/workers ready/, "120 seconds")
      const run = yield* runs.start(Workflow5, { base: 100 })

      // Step 3's entry is committed: kill the worker, in the middle of step 4.
      yield* runs.events(run.id).pipe(
        Stream.filter((event) => event.type === stepCompletedType && (event.data as { name: string }).name === "step-3"),
        Stream.runHead,
        Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error("step 3 did not complete in time") })
      )
      yield* first.kill("SIGKILL")
      expect((yield* first.exited).signal).toBe("SIGKILL")

      const second = yield* Child.start(program, env)
      yield* second.waitFor(/workers ready/, "120 seconds")
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, "120 seconds")
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(2)
      expect(done.output).toEqual({ total: 115 })

      // Steps 1-3 ran once, on the killed worker's attempt; 4 and 5 once, on the next.
      const lines = readFileSync(file, "utf8").trim().split("\n")
      expect(lines).toEqual([
        `${run.id} step-1 attempt-1`,
        `${run.id} step-2 attempt-1`,
        `${run.id} step-3 attempt-1`,
        `${run.id} step-4 attempt-2`,
        `${run.id} step-5 attempt-2`
      ])

      // The log: contiguous, exactly one step.completed per step, in order.
      const log = yield* runs.readEvents(run.id, { after: 0 })
      expect(log.map((event) => event.seq)).toEqual(log.map((_, i) => i + 1))
      const steps = log.filter((event) => event.type === stepCompletedType).map((event) => event.data)
      expect(steps).toEqual([101, 103, 106, 110, 115].map((output, i) => ({ name: `step-${i + 1}`, position: i, output })))
      expect(log.at(-1)!.type).toBe("run.succeeded")
      yield* Effect.logInfo(`steps across processes: ${log.map((event) => event.type).join(", ")}`)
    }).pipe(Effect.provide(watcher), Effect.provide(TestDatabase.layerUrl)), { timeout: 300_000 })
})
