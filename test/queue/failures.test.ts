import { describe, expect, it } from "@effect/vitest"
import { type Duration, Effect, Ref, Schema } from "effect"
import { Flaky } from "../../src/demo/tasks.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { dataOf, fastWorkers, logOf, patience, typesOf } from "./support.ts"

const fastRetry = { initialDelay: "10 millis", maxDelay: "50 millis" } as const

describe.concurrent("failed runs", () => {
  it.live("a run that fails on every attempt fails once its attempts are used up, with the last error", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Flaky, { failures: 100 })
      expect(run.maxAttempts).toBe(3)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("failed")
      expect(done.attempt).toBe(3)
      expect(done.output).toBeNull()
      expect(done.finishedAt).not.toBeNull()
      expect(done.error).toEqual({ tag: "FlakyFailure", message: "attempt 3 failed on purpose", retryable: true })

      const log = yield* logOf(run.id)
      expect(typesOf(log)).toEqual([
        "run.queued",
        "run.started",
        "run.retrying",
        "run.started",
        "run.retrying",
        "run.started",
        "run.failed"
      ])
      const failed = log.filter((event) => event.type === "run.failed")
      expect(failed).toHaveLength(1)
      expect(dataOf(failed[0]!)).toEqual({ attempt: 3, error: done.error })
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Flaky], workers: fastWorkers }))))

  it.live("a PermanentError fails the run on attempt 1 without a retry", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(0)
      const Refuses = Task.make("test.refuses", {
        input: Schema.Struct({ reason: Schema.String }),
        output: Schema.Void,
        retry: { ...fastRetry, maxAttempts: 5 },
        run: ({ reason }) =>
          Effect.zipRight(Ref.update(calls, (n) => n + 1), Effect.fail(new Task.PermanentError({ message: reason })))
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Refuses, { reason: "not allowed" })
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
        expect(done.status).toBe("failed")
        expect(done.attempt).toBe(1)
        expect(done.error).toEqual({ tag: "PermanentError", message: "not allowed", retryable: false })
        expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.failed"])
        expect(yield* Ref.get(calls)).toBe(1)
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Refuses], workers: fastWorkers })))
    }))

  it.live("a defect in the body is recorded as a retryable Defect", () =>
    Effect.gen(function*() {
      const Crashes = Task.make("test.crashes", {
        input: Schema.Void,
        output: Schema.Void,
        retry: { ...fastRetry, maxAttempts: 2 },
        run: () => Effect.dieMessage("kaput")
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Crashes, undefined)
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
        expect(done.status).toBe("failed")
        expect(done.attempt).toBe(2)
        expect(done.error?.tag).toBe("Defect")
        expect(done.error?.message).toContain("kaput")
        expect(done.error?.retryable).toBe(true)
        expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.retrying", "run.started", "run.failed"])
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Crashes], workers: fastWorkers })))
    }))
})

describe.concurrent("per-attempt timeout", () => {
  /** A body that never finishes on its own, counting how often it is ended. */
  const hanging = (name: string, ended: Ref.Ref<number>, timeout?: Duration.DurationInput) =>
    Task.make(name, {
      input: Schema.Void,
      output: Schema.Void,
      retry: { ...fastRetry, maxAttempts: 2 },
      ...(timeout === undefined ? {} : { timeout }),
      run: () => Effect.never.pipe(Effect.onInterrupt(() => Ref.update(ended, (n) => n + 1)))
    })

  const expectTimedOut = (runId: Parameters<Runs["Type"]["get"]>[0], timeoutMs: number, ended: Ref.Ref<number>) =>
    Effect.gen(function*() {
      const done = yield* RunstreamTest.waitForRunCompletion(runId, patience)
      expect(done.status).toBe("failed")
      expect(done.attempt).toBe(2)
      expect(done.error).toEqual({
        tag: "TaskTimeout",
        message: `the attempt took longer than ${timeoutMs} ms`,
        retryable: true
      })
      const log = yield* logOf(runId)
      expect(typesOf(log)).toEqual(["run.queued", "run.started", "run.retrying", "run.started", "run.failed"])
      expect((dataOf(log[2]!)["error"] as { tag: string }).tag).toBe("TaskTimeout")
      // Each attempt's body was ended (interrupted), not left running.
      expect(yield* Ref.get(ended)).toBe(2)
    })

  it.live("the task's timeout ends an attempt that never finishes; it is retried, then the run fails with TaskTimeout", () =>
    Effect.gen(function*() {
      const ended = yield* Ref.make(0)
      const Hangs = hanging("test.hangs", ended, "150 millis")
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Hangs, undefined)
        expect(run.timeoutMs).toBe(150)
        yield* expectTimedOut(run.id, 150, ended)
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Hangs], workers: fastWorkers })))
    }))

  it.live("timeoutMs given at start bounds each attempt of a task without a timeout", () =>
    Effect.gen(function*() {
      const ended = yield* Ref.make(0)
      const Hangs = hanging("test.hangs", ended)
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Hangs, undefined, { timeoutMs: 120 })
        expect(run.timeoutMs).toBe(120)
        yield* expectTimedOut(run.id, 120, ended)
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Hangs], workers: fastWorkers })))
    }))

  it.live("timeoutMs given at start takes precedence over the task's timeout", () =>
    Effect.gen(function*() {
      const ended = yield* Ref.make(0)
      const Hangs = hanging("test.hangs", ended, "1 hour")
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Hangs, undefined, { timeoutMs: 100 })
        expect(run.timeoutMs).toBe(100)
        yield* expectTimedOut(run.id, 100, ended)
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Hangs], workers: fastWorkers })))
    }))
})
