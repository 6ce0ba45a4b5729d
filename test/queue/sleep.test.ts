/**
 * Durable sleep (`ctx.sleep`, issue 20): the run records its wake-up time in
 * its log (`sleep.started`), ends its attempt `waiting` (`run.waiting`),
 * holds no worker, and is claimed again at that time; the replay returns
 * the steps' recorded results and passes the sleep. Side effects are
 * counted in memory, outside the database.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, DateTime, Duration, Effect, Layer, Option, Schema, Stream, TestClock } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import { type RunEvent, sleepStartedType, stepCompletedType } from "../../src/domain/RunEvent.ts"
import { Runs } from "../../src/Runs.ts"
import * as Stats from "../../src/Stats.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { Effects, fastWorkers, jobOf, logOf, patience, sideEffect, slowTimers, typesOf, waitForEvent } from "./support.ts"


/** Step a, a sleep of an hour, step b; one attempt allowed: the wait must not use it up. */
const Naps = Task.make("test.sleep.naps", {
  input: Schema.Null,
  output: Schema.Struct({ a: Schema.Int, b: Schema.Int, attempts: Schema.Array(Schema.Int) }),
  retry: { maxAttempts: 1 },
  run: (_, ctx) =>
    Effect.gen(function*() {
      const a = yield* ctx.step("a", sideEffect(ctx.runId, "a"), { output: Schema.Int })
      yield* sideEffect(ctx.runId, "outside")
      yield* ctx.sleep("nap", "1 hour")
      const b = yield* ctx.step("b", sideEffect(ctx.runId, "b"), { output: Schema.Int })
      return { a, b, attempts: [ctx.attempt] }
    })
})

/** Two sleeps run together, of one and two minutes: the run wakes at one minute, sleeps again until two. */
const TwoNaps = Task.make("test.sleep.two-naps", {
  input: Schema.Null,
  output: Schema.Null,
  retry: { maxAttempts: 1 },
  run: (_, ctx) =>
    Effect.as(
      Effect.all([ctx.sleep("short", "1 minute"), ctx.sleep("long", "2 minutes")], { concurrency: "unbounded", discard: true }),
      null
    )
})

/** A sleep until a time already past: returns at once, journaled, without a wait. */
const PastDue = Task.make("test.sleep.past-due", {
  input: Schema.Null,
  output: Schema.String,
  run: (_, ctx) =>
    Effect.gen(function*() {
      yield* ctx.sleepUntil("then", new Date(0))
      // No date: refused, nothing recorded.
      const never = yield* Effect.flip(ctx.sleep("forever", Duration.infinity))
      return `awake; ${never._tag}`
    })
})

/**
 * Attempt 1 sleeps (for no time: recorded, not waited); the replay calls a
 * step where the journal holds the sleep.
 */
const Changes = Task.make("test.sleep.changes", {
  input: Schema.Null,
  output: Schema.Null,
  retry: { maxAttempts: 3, initialDelay: "20 millis", factor: 1 },
  run: (_, ctx) =>
    Effect.gen(function*() {
      if (ctx.attempt === 1) {
        yield* ctx.sleep("x", Duration.zero)
        return yield* new Boom()
      }
      yield* ctx.step("x", Effect.succeed(1), { output: Schema.Int })
      return null
    })
})

class Boom extends Schema.TaggedError<Boom>()("Boom", {}) {}

/** Sleeps a long time: for cancel and for the pool's free places. */
const Sleeper = Task.make("test.sleep.sleeper", {
  input: Schema.Null,
  output: Schema.Null,
  run: (_, ctx) => Effect.as(ctx.sleep("long", "1 hour"), null)
})

/** One run at a time per key: a short real sleep, or none. */
const OnePerKey = Task.make("test.sleep.one-per-key", {
  input: Schema.Struct({ sleepMs: Schema.Int }),
  output: Schema.Int,
  concurrency: { limit: 1 },
  run: ({ sleepMs }, ctx) => Effect.as(sleepMs > 0 ? ctx.sleep("nap", Duration.millis(sleepMs)) : Effect.void, ctx.attempt)
})

const tasks = [Naps, TwoNaps, PastDue, Changes, Sleeper, OnePerKey, Echo] as const

const program = (workers: Parameters<typeof RunstreamTest.layer>[0]["workers"] = fastWorkers) =>
  RunstreamTest.layer({ tasks, workers, reclaimInterval: "1 minute" }).pipe(
    Layer.provideMerge(Layer.sync(Effects, () => new Map()))
  )

/** The log is numbered 1..n without a gap. */
const expectContiguous = (log: ReadonlyArray<RunEvent>) => expect(log.map((event) => event.seq)).toEqual(log.map((_, i) => i + 1))

const startedAts = (log: ReadonlyArray<RunEvent>) =>
  log.filter((event) => event.type === "run.started").map((event) => DateTime.toEpochMillis(event.at))

describe("ctx.sleep", () => {
  it.effect("under TestClock, a run that sleeps an hour waits without a worker and completes at that hour; its steps are not run again, its attempt not used up", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const effects = yield* Effects
      const startedAt = yield* TestClock.currentTimeMillis
      const run = yield* runs.start(Naps, null)
      yield* waitForEvent(run.id, "run.waiting")

      const waiting = yield* runs.get(run.id)
      expect(waiting.status).toBe("waiting")
      // The attempt was given back: the next claim makes it 1 again.
      expect(waiting.attempt).toBe(0)
      const job = Option.getOrThrow(yield* jobOf(run.id))
      expect(job.locked_by).toBeNull()
      expect(job.run_at.getTime()).toBe(startedAt + 3_600_000)

      // A run started now is claimed by a worker that would take the sleeper too, were it due.
      yield* TestClock.adjust(Duration.millis(3_600_000 - 1))
      const marker = yield* runs.start(Echo, "marker")
      expect((yield* RunstreamTest.waitForRunCompletion(marker.id, patience)).status).toBe("succeeded")
      expect((yield* runs.get(run.id)).status).toBe("waiting")

      yield* TestClock.adjust(Duration.millis(1))
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(1)
      expect(done.output).toEqual({ a: 1, b: 1, attempts: [1] })
      const ran = (step: string) => effects.get(`${run.id}/${step}`) ?? 0
      expect([ran("a"), ran("b"), ran("outside")]).toEqual([1, 1, 2])

      const log = yield* logOf(run.id)
      expectContiguous(log)
      expect(typesOf(log)).toEqual([
        "run.queued",
        "run.started",
        stepCompletedType,
        sleepStartedType,
        "run.waiting",
        "run.started",
        stepCompletedType,
        "run.succeeded"
      ])
      const until = new Date(startedAt + 3_600_000).toISOString()
      expect(log[3]!.data).toEqual({ name: "nap", position: 1, until })
      expect(log[4]!.data).toEqual({ attempt: 1, until, waitingFor: "sleep:nap" })
      expect(log[5]!.data).toEqual({ attempt: 1 })
      // Resumed at the hour exactly, on the clock the workers read.
      expect(startedAts(log)).toEqual([startedAt, startedAt + 3_600_000])
      // An hour of the test clock walks through every timer of the program: about 10 s (`slowTimers`).
    }).pipe(Effect.provide(program({ concurrency: 4, pollInterval: "1 minute", lease: "1 minute" }).pipe(Layer.provide(slowTimers)))), 150_000)

  it.effect("under TestClock, sleeps run together wake the run at the earliest; the replay sleeps again until the other", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const startedAt = yield* TestClock.currentTimeMillis
      const run = yield* runs.start(TwoNaps, null)
      yield* waitForEvent(run.id, "run.waiting")
      yield* TestClock.adjust("1 minute")
      // The second wait's event: the body woke, found "long" not due, and suspended again.
      const waits = yield* runs.events(run.id).pipe(
        Stream.filter((event) => event.type === "run.waiting"),
        Stream.take(2),
        Stream.runCollect
      )
      expect(Chunk.unsafeLast(waits).data).toMatchObject({ until: new Date(startedAt + 120_000).toISOString(), waitingFor: "sleep:long" })
      yield* TestClock.adjust("1 minute")
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(1)
      const log = yield* logOf(run.id)
      expectContiguous(log)
      expect(typesOf(log).filter((type) => type === sleepStartedType)).toHaveLength(2)
      expect(startedAts(log)).toEqual([startedAt, startedAt + 60_000, startedAt + 120_000])
    }).pipe(Effect.provide(program({ concurrency: 4, pollInterval: "1 minute", lease: "1 minute" }))))

  it.live("a sleep until a time past returns at once: journaled, no wait", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(PastDue, null)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.output).toBe("awake; InvalidInput")
      expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", sleepStartedType, "run.succeeded"])
    }).pipe(Effect.provide(program())))

  it.live("a replay that calls a step where the journal holds a sleep fails with NonDeterministic", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Changes, null)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("failed")
      expect(done.error).toMatchObject({ tag: "NonDeterministic", retryable: false })
      expect(done.error?.message).toContain("'x' is a sleep in the journal, a step in this replay")
    }).pipe(Effect.provide(program())))

  it.live("a waiting run is cancelled at once: its job goes, no worker runs it again", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Sleeper, null)
      yield* waitForEvent(run.id, "run.waiting")
      const cancelled = yield* runs.cancel(run.id)
      expect(cancelled.status).toBe("cancelled")
      expect(cancelled.finishedAt).not.toBeNull()
      expect(yield* jobOf(run.id)).toEqual(Option.none())
      const log = yield* logOf(run.id)
      expectContiguous(log)
      expect(typesOf(log)).toEqual(["run.queued", "run.started", sleepStartedType, "run.waiting", "run.cancelled"])
    }).pipe(Effect.provide(program())))

  it.live("a run under a concurrency limit gives its key's slot back while it sleeps, and takes it again to wake", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const sleeper = yield* runs.start(OnePerKey, { sleepMs: 2_000 }, { concurrencyKey: "k" })
      yield* waitForEvent(sleeper.id, "run.waiting")
      // The key's only slot is free: another run of the key runs while the first one sleeps.
      const other = yield* runs.start(OnePerKey, { sleepMs: 0 }, { concurrencyKey: "k" })
      expect((yield* RunstreamTest.waitForRunCompletion(other.id, patience)).status).toBe("succeeded")
      expect((yield* runs.get(sleeper.id)).status).toBe("waiting")
      const done = yield* RunstreamTest.waitForRunCompletion(sleeper.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.output).toBe(1)
      const log = yield* logOf(sleeper.id)
      expectContiguous(log)
      expect(typesOf(log)).toEqual(["run.queued", "run.started", sleepStartedType, "run.waiting", "run.started", "run.succeeded"])
    }).pipe(Effect.provide(program())))

  it.live("200 sleeping runs hold no place: a pool of 4 runs other runs at once", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const sleepers = yield* Effect.forEach(Array.from({ length: 200 }), () => runs.start(Sleeper, null), { concurrency: 8 })
      yield* Effect.forEach(sleepers, (run) => waitForEvent(run.id, "run.waiting"), { concurrency: 20, discard: true })
      const echoes = yield* Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) => runs.start(Echo, i), { concurrency: 8 })
      const done = yield* Effect.forEach(echoes, (run) => RunstreamTest.waitForRunCompletion(run.id, patience), { concurrency: 20 })
      expect(done.map((run) => run.status)).toEqual(echoes.map(() => "succeeded"))
      const still = yield* Effect.forEach(sleepers, (run) => runs.get(run.id), { concurrency: 20 })
      expect(new Set(still.map((run) => run.status))).toEqual(new Set(["waiting"]))
      // The stats tell them from queued runs (the jobs table alone).
      const stats = yield* (yield* Stats.Stats).read
      expect(stats.runs.find((row) => row.task === Sleeper.name && row.status === "waiting")?.count).toBe(200)
      expect(stats.runs.find((row) => row.task === Sleeper.name && row.status === "queued")).toBeUndefined()
    }).pipe(Effect.provide(Stats.layer().pipe(Layer.provideMerge(program({ ...fastWorkers, concurrency: 4 }))))), 120_000)
})
