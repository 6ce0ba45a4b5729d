/**
 * Journaled steps (`ctx.step`, issue 20): a step runs once per run, its
 * result recorded in the run's log (`step.completed`), and a later attempt
 * that replays the body gets the recorded result instead of running it again.
 * Side effects are counted in memory, outside the database.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Schedule, Schema } from "effect"
import { InvalidInput } from "../../src/domain/Errors.ts"
import { type RunEvent, stepCompletedType } from "../../src/domain/RunEvent.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { Effects, fastWorkers, logOf, patience, sideEffect, typesOf } from "./support.ts"


class Boom extends Schema.TaggedError<Boom>()("Boom", { attempt: Schema.Number }) {}

const fastRetry = { maxAttempts: 3, initialDelay: "20 millis", factor: 1, maxDelay: "20 millis" } as const

/** Steps a and b, then a failure on the first attempt, then step c: the second attempt runs c alone. */
const FailsAfterTwo = Task.make("test.steps.fails-after-two", {
  input: Schema.Null,
  output: Schema.Struct({ a: Schema.String, b: Schema.Number, c: Schema.Number, attempt: Schema.Int }),
  retry: fastRetry,
  run: (_, ctx) =>
    Effect.gen(function*() {
      const a = yield* ctx.step("a", Effect.as(sideEffect(ctx.runId, "a"), `a of attempt ${ctx.attempt}`), {
        output: Schema.String
      })
      // Not a step: runs again on each attempt.
      yield* sideEffect(ctx.runId, "outside")
      const b = yield* ctx.step("b", Effect.as(sideEffect(ctx.runId, "b"), ctx.attempt * 10), { output: Schema.Number })
      if (ctx.attempt === 1) return yield* new Boom({ attempt: ctx.attempt })
      const c = yield* ctx.step("c", Effect.as(sideEffect(ctx.runId, "c"), ctx.attempt * 100), { output: Schema.Number })
      return { a, b, c, attempt: ctx.attempt }
    })
})

/** Attempt 1 records step "first" and fails; attempt 2 calls "second" first (the code "changed"), and swallows the error. */
const Changes = Task.make("test.steps.changes", {
  input: Schema.Null,
  output: Schema.Struct({ value: Schema.Number }),
  retry: fastRetry,
  run: (_, ctx) =>
    Effect.gen(function*() {
      if (ctx.attempt === 1) {
        yield* ctx.step("first", sideEffect(ctx.runId, "first"), { output: Schema.Number })
        return yield* new Boom({ attempt: ctx.attempt })
      }
      const value = yield* ctx.step("second", sideEffect(ctx.runId, "second"), { output: Schema.Number }).pipe(
        Effect.catchTag("NonDeterministic", () => Effect.succeed(-1))
      )
      return { value }
    })
})

/** Attempt 1 records a number and fails; attempt 2 reads it with a string schema (the output's schema "changed"). */
const SchemaChanges = Task.make("test.steps.schema-changes", {
  input: Schema.Null,
  output: Schema.Null,
  retry: fastRetry,
  run: (_, ctx) =>
    Effect.gen(function*() {
      if (ctx.attempt === 1) {
        yield* ctx.step("value", Effect.succeed(1), { output: Schema.Number })
        return yield* new Boom({ attempt: ctx.attempt })
      }
      yield* ctx.step("value", Effect.succeed("one"), { output: Schema.String })
      return null
    })
})

/** Calls step "x" twice. */
const Twice = Task.make("test.steps.twice", {
  input: Schema.Null,
  output: Schema.Null,
  retry: fastRetry,
  run: (_, ctx) =>
    Effect.gen(function*() {
      yield* ctx.step("x", sideEffect(ctx.runId, "x"), { output: Schema.Number })
      yield* ctx.step("x", sideEffect(ctx.runId, "x"), { output: Schema.Number })
      return null
    })
})

/**
 * A step whose effect fails on its first two tries, retried in place twice (a
 * count), then run again; a step failing once, retried by a schedule.
 */
const RetriedInPlace = Task.make("test.steps.retried", {
  input: Schema.Null,
  output: Schema.Struct({ tries: Schema.Int, again: Schema.Int, scheduled: Schema.Int }),
  retry: fastRetry,
  run: (_, ctx) =>
    Effect.gen(function*() {
      const flaky = ctx.step(
        "flaky",
        Effect.flatMap(sideEffect(ctx.runId, "flaky"), (n) => n < 3 ? Effect.fail(new Boom({ attempt: n })) : Effect.succeed(n)),
        { output: Schema.Int, retry: 2 }
      )
      const tries = yield* flaky
      // The same step effect run again: its result is the recorded one, the effect does not run.
      const again = yield* flaky
      const scheduled = yield* ctx.step(
        "scheduled",
        Effect.flatMap(sideEffect(ctx.runId, "scheduled"), (n) => n < 2 ? Effect.fail(new Boom({ attempt: n })) : Effect.succeed(n)),
        { output: Schema.Int, retry: Schedule.recurs(1) }
      )
      return { tries, again, scheduled }
    })
})

/** Three steps started together; the second fails on the first attempt. */
const Concurrent = Task.make("test.steps.concurrent", {
  input: Schema.Null,
  output: Schema.Array(Schema.Int),
  retry: fastRetry,
  run: (_, ctx) =>
    Effect.all([
      ctx.step("p0", sideEffect(ctx.runId, "p0"), { output: Schema.Int }),
      ctx.step(
        "p1",
        Effect.zipRight(sideEffect(ctx.runId, "p1"), ctx.attempt === 1 ? Effect.fail(new Boom({ attempt: 1 })) : Effect.succeed(7)),
        { output: Schema.Int }
      ),
      ctx.step("p2", sideEffect(ctx.runId, "p2"), { output: Schema.Int })
    ], { concurrency: "unbounded", mode: "default" })
})

/** A step whose output is over the event limit (64 KiB), and a task emitting the journal's own event type. */
const TooLarge = Task.make("test.steps.too-large", {
  input: Schema.Null,
  output: Schema.Null,
  retry: { maxAttempts: 1 },
  run: (_, ctx) => Effect.as(ctx.step("big", Effect.succeed("x".repeat(70_000)), { output: Schema.String }), null)
})

const Impostor = Task.make("test.steps.impostor", {
  input: Schema.Null,
  output: Schema.String,
  retry: { maxAttempts: 1 },
  run: (_, ctx) =>
    ctx.emit(stepCompletedType, { name: "a", position: 0, output: 1 }).pipe(
      Effect.as("emitted"),
      Effect.catchIf((error) => error instanceof InvalidInput, (error) => Effect.succeed(error.message))
    )
})

const tasks = [FailsAfterTwo, Changes, SchemaChanges, Twice, RetriedInPlace, Concurrent, TooLarge, Impostor] as const

const program = RunstreamTest.layer({ tasks, workers: fastWorkers }).pipe(
  Layer.provideMerge(Layer.sync(Effects, () => new Map()))
)

/** Runs `task` to its end; its run, its log, and how often each step's effect ran. */
const runToEnd = <T extends Task.Any>(task: T) =>
  Effect.gen(function*() {
    const runs = yield* Runs
    const effects = yield* Effects
    const started = yield* runs.start(task, null as Task.InputOf<T>)
    const run = yield* RunstreamTest.waitForRunCompletion(started.id, patience)
    const log = yield* logOf(started.id)
    const ran = (step: string) => effects.get(`${started.id}/${step}`) ?? 0
    return { run, log, ran }
  })

const stepsOf = (log: ReadonlyArray<RunEvent>) => log.filter((event) => event.type === stepCompletedType).map((event) => event.data)

/** The log is numbered 1..n without a gap. */
const expectContiguous = (log: ReadonlyArray<RunEvent>) =>
  expect(log.map((event) => event.seq)).toEqual(log.map((_, i) => i + 1))

describe("ctx.step", () => {
  layer(program, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.effect("a completed step is not run again when a later attempt replays the body; what is outside steps is", () =>
      Effect.gen(function*() {
        const { log, ran, run } = yield* runToEnd(FailsAfterTwo)
        expect(run.status).toBe("succeeded")
        // a and b return what attempt 1 recorded; c is attempt 2's.
        expect(run.output).toEqual({ a: "a of attempt 1", b: 10, c: 200, attempt: 2 })
        expect([ran("a"), ran("b"), ran("c"), ran("outside")]).toEqual([1, 1, 1, 2])
        expectContiguous(log)
        expect(typesOf(log)).toEqual([
          "run.queued",
          "run.started",
          stepCompletedType,
          stepCompletedType,
          "run.retrying",
          "run.started",
          stepCompletedType,
          "run.succeeded"
        ])
        expect(stepsOf(log)).toEqual([
          { name: "a", position: 0, output: "a of attempt 1" },
          { name: "b", position: 1, output: 10 },
          { name: "c", position: 2, output: 200 }
        ])
      }))

    it.effect("a replay that calls another step where the journal has one fails the run with NonDeterministic, even if the body swallows it", () =>
      Effect.gen(function*() {
        const { log, ran, run } = yield* runToEnd(Changes)
        expect(run.status).toBe("failed")
        // Permanent: attempt 2 of 3 is the last.
        expect(run.attempt).toBe(2)
        expect(run.error).toMatchObject({ tag: "NonDeterministic", retryable: false })
        expect(run.error?.message).toContain("step 0 is 'first' in the journal, 'second' in this replay")
        expect([ran("first"), ran("second")]).toEqual([1, 0])
        expectContiguous(log)
        expect(stepsOf(log)).toEqual([{ name: "first", position: 0, output: 1 }])
      }))

    it.effect("a recorded output that no longer decodes with the step's schema is NonDeterministic", () =>
      Effect.gen(function*() {
        const { run } = yield* runToEnd(SchemaChanges)
        expect(run.status).toBe("failed")
        expect(run.attempt).toBe(2)
        expect(run.error).toMatchObject({ tag: "NonDeterministic", retryable: false })
        expect(run.error?.message).toContain("the recorded output of step 'value' does not decode")
      }))

    it.effect("a step name used twice in a run fails the run with DuplicateStep, at once; the second call runs nothing", () =>
      Effect.gen(function*() {
        const { log, ran, run } = yield* runToEnd(Twice)
        expect(run.status).toBe("failed")
        expect(run.attempt).toBe(1)
        expect(run.error).toMatchObject({ tag: "DuplicateStep", retryable: false })
        expect(ran("x")).toBe(1)
        expect(stepsOf(log)).toEqual([{ name: "x", position: 0, output: 1 }])
      }))

    it.effect("a step's own retry tries it in place; run again, a completed step returns its recorded result", () =>
      Effect.gen(function*() {
        const { log, ran, run } = yield* runToEnd(RetriedInPlace)
        expect(run.status).toBe("succeeded")
        expect(run.attempt).toBe(1)
        expect(run.output).toEqual({ tries: 3, again: 3, scheduled: 2 })
        expect([ran("flaky"), ran("scheduled")]).toEqual([3, 2])
        expectContiguous(log)
        expect(stepsOf(log)).toEqual([{ name: "flaky", position: 0, output: 3 }, { name: "scheduled", position: 1, output: 2 }])
      }))

    it.effect("steps run together keep the places the body called them in; only the failed one runs again", () =>
      Effect.gen(function*() {
        const { log, ran, run } = yield* runToEnd(Concurrent)
        expect(run.status).toBe("succeeded")
        expect(run.attempt).toBe(2)
        expect(run.output).toEqual([1, 7, 1])
        expect([ran("p0"), ran("p1"), ran("p2")]).toEqual([1, 2, 1])
        expectContiguous(log)
        const steps = stepsOf(log) as ReadonlyArray<{ readonly name: string; readonly position: number }>
        expect(steps.map(({ name, position }) => [name, position]).sort()).toEqual([["p0", 0], ["p1", 1], ["p2", 2]])
      }))

    it.effect("an output over the event limit fails with PayloadTooLarge; the journal's event type is refused to emit", () =>
      Effect.gen(function*() {
        const big = yield* runToEnd(TooLarge)
        expect(big.run.status).toBe("failed")
        expect(big.run.error).toMatchObject({ tag: "PayloadTooLarge" })
        expect(stepsOf(big.log)).toEqual([])
        const impostor = yield* runToEnd(Impostor)
        expect(impostor.run.output).toContain("reserved")
        expect(stepsOf(impostor.log)).toEqual([])
      }))
  })
})
