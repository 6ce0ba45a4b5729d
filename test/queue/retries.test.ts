import { describe, expect, it } from "@effect/vitest"
import { Clock, DateTime, Duration, Effect, FastCheck as fc, Schema, TestClock } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import type { RunEvent } from "../../src/domain/RunEvent.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { dataOf, fastWorkers, logOf, patience, typesOf, waitForEvent } from "./support.ts"

class Boom extends Schema.TaggedError<Boom>()("Boom", { attempt: Schema.Number }) {
  override get message() {
    return `boom on attempt ${this.attempt}`
  }
}

/** Fails on attempts 1..failures, then succeeds with its attempt number. */
const flaky = (name: string, retry: Parameters<typeof Task.make>[1]["retry"]) =>
  Task.make(name, {
    input: Schema.Struct({ failures: Schema.Int }),
    output: Schema.Struct({ attempts: Schema.Int }),
    retry,
    run: ({ failures }, ctx) =>
      ctx.attempt <= failures ? Effect.fail(new Boom({ attempt: ctx.attempt })) : Effect.succeed({ attempts: ctx.attempt })
  })

const millisOf = (iso: unknown) => new Date(iso as string).getTime()
const atMillis = (event: RunEvent) => DateTime.toEpochMillis(event.at)

describe("Task.backoffDelay", () => {
  const policy: Task.RetryPolicy = {
    maxAttempts: 10,
    initialDelay: Duration.seconds(1),
    maxDelay: Duration.seconds(30),
    factor: 2
  }
  const ms = (attempt: number, random01: number) => Duration.toMillis(Task.backoffDelay(policy, attempt, random01))

  it("grows by the factor with each attempt, from half the delay at the lowest jitter", () => {
    expect([1, 2, 3, 4, 5].map((attempt) => ms(attempt, 0))).toEqual([500, 1000, 2000, 4000, 8000])
  })

  it("reaches the full delay at the highest jitter", () => {
    expect([1, 2, 3, 4, 5].map((attempt) => ms(attempt, 0.999999))).toEqual([1000, 2000, 4000, 8000, 16000])
  })

  it("is capped at maxDelay, jitter included", () => {
    expect(ms(6, 0.999999)).toBe(30_000)
    expect(ms(6, 0)).toBe(15_000)
    expect(ms(60, 0.5)).toBe(22_500)
    expect(ms(10_000, 0.999999)).toBe(30_000)
  })

  it.prop(
    "stays within [base/2, base] where base = min(initial * factor^(attempt-1), maxDelay)",
    [fc.integer({ min: 1, max: 200 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })],
    ([attempt, random01]) => {
      const base = Math.min(1000 * Math.pow(2, attempt - 1), 30_000)
      const delay = ms(attempt, random01)
      expect(delay).toBeGreaterThanOrEqual(Math.round(base / 2))
      expect(delay).toBeLessThanOrEqual(base)
    }
  )
})

describe.concurrent("retries", () => {
  const Flaky = flaky("test.flaky", { maxAttempts: 4, initialDelay: "50 millis", factor: 2, maxDelay: "1 second" })

  it.live("a task failing 3 times is retried with exponential backoff and succeeds on attempt 4", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Flaky, { failures: 3 })
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(4)
      expect(done.output).toEqual({ attempts: 4 })
      expect(done.error).toBeNull()

      const log = yield* logOf(run.id)
      expect(typesOf(log)).toEqual([
        "run.queued",
        "run.started",
        "run.retrying",
        "run.started",
        "run.retrying",
        "run.started",
        "run.retrying",
        "run.started",
        "run.succeeded"
      ])
      expect(log.map((event) => event.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9])
      const started = log.filter((event) => event.type === "run.started")
      expect(started.map((event) => dataOf(event)["attempt"])).toEqual([1, 2, 3, 4])

      const retrying = log.filter((event) => event.type === "run.retrying")
      retrying.forEach((event, i) => {
        const attempt = i + 1
        const data = dataOf(event)
        expect(data["attempt"]).toBe(attempt)
        expect(data["error"]).toEqual({ tag: "Boom", message: `boom on attempt ${attempt}`, retryable: true })
        // The delay is chosen when the attempt fails: 50ms * 2^(attempt-1), jittered into [1/2, 1].
        const delay = millisOf(data["retryAt"]) - atMillis(event)
        const base = 50 * Math.pow(2, attempt - 1)
        expect(delay).toBeGreaterThanOrEqual(base / 2)
        expect(delay).toBeLessThanOrEqual(base)
        // and the next attempt does not start before it is due.
        expect(atMillis(started[attempt]!)).toBeGreaterThanOrEqual(millisOf(data["retryAt"]))
      })
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Flaky], workers: fastWorkers }))))

  it.live("maxAttempts given at start overrides the task's retry policy", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Flaky, { failures: 5 }, { maxAttempts: 6 })
      expect(run.maxAttempts).toBe(6)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(6)
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Flaky], workers: fastWorkers }))))
})

describe("retry backoff under TestClock", () => {
  // Long enough that no real-time wait could hide a missing delay, and under
  // the listener's 5-second probe so adjusting the clock never fires it.
  const SlowFlaky = flaky("test.slow-flaky", { maxAttempts: 2, initialDelay: "4 seconds", factor: 2, maxDelay: "1 minute" })

  it.effect("a retried run is not claimed before its retryAt and is claimed once the clock reaches it", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(SlowFlaky, { failures: 1 })
      const retrying = yield* waitForEvent(run.id, "run.retrying")
      const retryAt = millisOf(dataOf(retrying)["retryAt"])
      const failedAt = atMillis(retrying)
      // Every time the queue uses comes from the Effect clock: the test clock here.
      expect(failedAt).toBe(yield* Clock.currentTimeMillis)
      expect(retryAt - failedAt).toBeGreaterThanOrEqual(2000)
      expect(retryAt - failedAt).toBeLessThanOrEqual(4000)

      // One millisecond before it is due. A run started now wakes the workers
      // and is claimed in a batch that would include the retry were it due
      // (concurrency 4): when it has finished, the retry has been passed over.
      // (Its explicit runAt keeps it from being handed straight to the idle worker.)
      yield* TestClock.adjust(retryAt - failedAt - 1)
      const marker = yield* runs.start(Echo, "marker", { runAt: DateTime.unsafeMake(yield* Clock.currentTimeMillis) })
      expect((yield* RunstreamTest.waitForRunCompletion(marker.id, patience)).status).toBe("succeeded")
      const waiting = yield* runs.get(run.id)
      expect(waiting.status).toBe("queued")
      expect(waiting.attempt).toBe(1)
      expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.retrying"])

      // The worker now sleeps until the retry is due, on the test clock.
      yield* TestClock.adjust(1)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(2)
      const log = yield* logOf(run.id)
      const secondStart = log.filter((event) => event.type === "run.started")[1]!
      expect(atMillis(secondStart)).toBe(retryAt)
    }).pipe(Effect.provide(RunstreamTest.layer({
      tasks: [SlowFlaky, Echo],
      // Polls and leases far beyond the adjustments: only wake-ups and due times move the workers.
      reclaimInterval: Duration.minutes(1),
      workers: {
        concurrency: 4,
        pollInterval: Duration.minutes(1),
        lease: Duration.minutes(1)
      }
    }))))
})
