/**
 * Poison runs: bodies that misbehave in ways that could take a worker, or the
 * other runs of a group commit, down with them. Each ends its own run with the
 * cause recorded, and the worker (with a single runner) goes on to the next run.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Schema } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import { InvalidInput } from "../../src/domain/Errors.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { rowCounts, fastWorkers, logOf, patience, typesOf } from "./support.ts"

/** One runner, no prefetch: a run that held the worker would stop every later run. */
const oneRunner = { ...fastWorkers, concurrency: 1, prefetch: 0 } as const

/** Nested `depth` levels deep: more than JSON.stringify's stack allows at 100,000. */
const deep = (depth: number): unknown => {
  let value: unknown = 0
  for (let i = 0; i < depth; i++) value = [value]
  return value
}

/** Echo, started after the poison run: proves the worker took the next run. */
const expectWorkerRunsOn = Effect.gen(function*() {
  const runs = yield* Runs
  const next = yield* runs.start(Echo, { after: "poison" })
  const done = yield* RunstreamTest.waitForRunCompletion(next.id, patience)
  expect(done.status).toBe("succeeded")
  expect(done.output).toEqual({ after: "poison" })
})

describe.concurrent("poison runs", () => {
  it.live("a body whose cleanup never ends is ended by its timeout; the run fails with TaskTimeout and the worker runs on", () =>
    Effect.gen(function*() {
      const HangsInCleanup = Task.make("test.hangs-in-cleanup", {
        input: Schema.Void,
        output: Schema.Void,
        timeout: "100 millis",
        retry: { maxAttempts: 1 },
        run: () => Effect.never.pipe(Effect.onInterrupt(() => Effect.never))
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(HangsInCleanup, undefined)
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
        expect(done.status).toBe("failed")
        expect(done.error).toEqual({ tag: "TaskTimeout", message: "the attempt took longer than 100 ms", retryable: true })
        yield* expectWorkerRunsOn
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [HangsInCleanup, Echo], workers: oneRunner })))
    }))

  it.live("a running run whose cleanup never ends is cancelled all the same, and the worker runs on", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const HangsInCleanup = Task.make("test.hangs-in-cleanup", {
        input: Schema.Void,
        output: Schema.Void,
        run: () => Effect.zipRight(Deferred.succeed(started, undefined), Effect.never.pipe(Effect.onInterrupt(() => Effect.never)))
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(HangsInCleanup, undefined)
        yield* Deferred.await(started)
        yield* runs.cancel(run.id)
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
        expect(done.status).toBe("cancelled")
        expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.cancelled"])
        yield* expectWorkerRunsOn
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [HangsInCleanup, Echo], workers: oneRunner })))
    }))

  it.live("an output Postgres cannot store (too deep, U+0000, too large) fails its run alone with OutputInvalid", () =>
    Effect.gen(function*() {
      const BadOutput = Task.make("test.bad-output", {
        input: Schema.Literal("deep", "nul", "large", "deepForPostgres"),
        output: Schema.Unknown,
        retry: { maxAttempts: 1 },
        run: (kind) =>
          Effect.succeed(
            kind === "deep"
              ? deep(100_000)
              : kind === "nul"
              ? { text: "a\u0000b" }
              : kind === "large"
              ? "x".repeat(200_000)
              // JSON.stringify copes; refused all the same: past some depth Postgres
              // refuses jsonb (stack depth), and with it the whole batch.
              : deep(1_500)
          )
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const started = yield* Effect.forEach(["deep", "nul", "large", "deepForPostgres"] as const, (kind) => runs.start(BadOutput, kind))
        for (const run of started) {
          const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
          expect(done.status).toBe("failed")
          expect(done.error?.tag).toBe("OutputInvalid")
          expect(done.output).toBeNull()
        }
        const [deepRun, nulRun, largeRun, deepForPostgres] = yield* Effect.forEach(started, (run) => runs.get(run.id))
        expect(deepRun!.error?.message).toContain("output cannot be written as JSON")
        expect(nulRun!.error?.message).toContain("U+0000")
        expect(largeRun!.error?.message).toContain("output")
        expect(deepForPostgres!.error?.message).toContain("output is nested deeper than 1000 levels")
        yield* expectWorkerRunsOn
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [BadOutput, Echo], workers: oneRunner })))
    }))

  it.live("an output that can never be stored or encoded fails its run at once, without a retry", () =>
    Effect.gen(function*() {
      const WrongOutput = Task.make("test.wrong-output", {
        input: Schema.Void,
        output: Schema.Struct({ n: Schema.Number }),
        run: () => Effect.succeed({ n: "not a number" } as unknown as { n: number })
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        // Inputs may be larger than the 64 KiB an output may take: Echo's can never be stored.
        const tooLarge = yield* runs.start(Echo, { text: "x".repeat(900_000) })
        const wrong = yield* runs.start(WrongOutput, undefined)
        for (const run of [tooLarge, wrong]) {
          const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
          expect(done.status).toBe("failed")
          expect(done.attempt).toBe(1)
          expect(done.error).toMatchObject({ tag: "OutputInvalid", retryable: false })
          expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.failed"])
        }
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [WrongOutput, Echo], workers: oneRunner })))
    }))

  it.live("emitting event data that cannot be stored fails the emit with InvalidInput, which the body may handle", () =>
    Effect.gen(function*() {
      const Emits = Task.make("test.bad-emits", {
        input: Schema.Void,
        output: Schema.Array(Schema.String),
        run: (_, ctx) =>
          Effect.forEach(
            [deep(100_000), { text: "\ud800" }, { ok: true }],
            (data) =>
              ctx.emit("note", data).pipe(
                Effect.as("written"),
                Effect.catchTag("InvalidInput", (error) => Effect.succeed(error.message))
              )
          )
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Emits, undefined)
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
        expect(done.status).toBe("succeeded")
        const [tooDeep, surrogate, ok] = done.output as ReadonlyArray<string>
        expect(tooDeep).toContain("event data cannot be written as JSON")
        expect(surrogate).toContain("unpaired surrogates")
        expect(ok).toBe("written")
        const log = yield* logOf(run.id)
        expect(typesOf(log)).toEqual(["run.queued", "run.started", "note", "run.succeeded"])
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Emits], workers: oneRunner })))
    }))

  it.live("an error message Postgres cannot store is recorded with the characters replaced", () =>
    Effect.gen(function*() {
      const FailsOddly = Task.make("test.fails-oddly", {
        input: Schema.Void,
        output: Schema.Void,
        retry: { maxAttempts: 1 },
        run: () => Effect.fail(new Task.PermanentError({ message: "bad\u0000byte and a lone \udc00" }))
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(FailsOddly, undefined)
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
        expect(done.status).toBe("failed")
        expect(done.error).toEqual({ tag: "PermanentError", message: "bad\uFFFDbyte and a lone \uFFFD", retryable: false })
        yield* expectWorkerRunsOn
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [FailsOddly, Echo], workers: oneRunner })))
    }))

  it.live("an idempotency key Postgres cannot store is refused with InvalidInput and nothing is written", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const before = yield* rowCounts
      for (const idempotencyKey of ["key\u0000", "key\ud800"]) {
        const error = yield* Effect.flip(runs.start(Echo, {}, { idempotencyKey }))
        expect(error).toBeInstanceOf(InvalidInput)
        expect(error.message).toContain("idempotencyKey")
      }
      expect(yield* rowCounts).toEqual(before)
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo] }))))
})
