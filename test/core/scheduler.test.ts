/**
 * `TimeSlicedScheduler`: fibers that keep yielding leave the event loop a
 * turn. With Effect's default scheduler a fiber's next steps run as
 * microtasks for 2,048 rounds before the loop gets one: a thousand busy
 * fibers then hold every socket (and `/healthz`) back for seconds.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Scheduler } from "effect"
import * as TimeSlicedScheduler from "../../src/internal/TimeSlicedScheduler.ts"

/**
 * How many of `fibers` fibers, each yielding `rounds` times, had finished when
 * a `setImmediate` queued at their start ran (the loop's first turn).
 */
const finishedBeforeTheLoopsTurn = (scheduler: Scheduler.Scheduler, fibers: number, rounds: number) =>
  Effect.gen(function*() {
    let finished = 0
    let atTurn: number | undefined
    setImmediate(() => {
      atTurn = finished
    })
    const busy = Effect.gen(function*() {
      for (let i = 0; i < rounds; i++) yield* Effect.yieldNow()
      finished++
    })
    yield* Effect.all(Array.from({ length: fibers }, () => busy), { concurrency: "unbounded", discard: true }).pipe(
      Effect.withScheduler(scheduler)
    )
    // Whatever happened, the loop has had its turn once they are all done.
    yield* Effect.async<void>((resume) => void setImmediate(() => resume(Effect.void)))
    return atTurn
  })

/**
 * The most fiber steps (each spinning `stepMs`) that ran between two turns of
 * the event loop, with `fibers` fibers ready at once, each taking `rounds` steps.
 */
const mostStepsBetweenTurns = (scheduler: Scheduler.Scheduler, fibers: number, rounds: number, stepMs: number) =>
  Effect.gen(function*() {
    let steps = 0
    let most = 0
    let done = false
    const beat = () => {
      most = Math.max(most, steps)
      steps = 0
      if (!done) setImmediate(beat)
    }
    setImmediate(beat)
    const step = Effect.sync(() => {
      const until = performance.now() + stepMs
      while (performance.now() < until) { /* a step's CPU work */ }
      steps++
    })
    const busy = Effect.gen(function*() {
      for (let i = 0; i < rounds; i++) {
        yield* step
        yield* Effect.yieldNow()
      }
    })
    yield* Effect.all(Array.from({ length: fibers }, () => busy), { concurrency: "unbounded", discard: true }).pipe(
      Effect.withScheduler(scheduler)
    )
    done = true
    return Math.max(most, steps)
  })

describe("TimeSlicedScheduler", () => {
  it.effect("runs at most a slice of steps between two turns of the loop, however many fibers are ready", () =>
    Effect.gen(function*() {
      // 10 ms slices of 0.2 ms steps: about 50 steps, whatever the number of fibers.
      const sliced = yield* mostStepsBetweenTurns(TimeSlicedScheduler.make(10), 1000, 3, 0.2)
      expect(sliced).toBeLessThan(200)
      // Effect's default scheduler runs them all before the loop's turn.
      const unsliced = yield* mostStepsBetweenTurns(Scheduler.defaultScheduler, 1000, 3, 0.2)
      expect(unsliced).toBeGreaterThanOrEqual(1000)
    }))

  it.effect("lets the event loop in while a thousand fibers keep yielding", () =>
    Effect.gen(function*() {
      const sliced = yield* finishedBeforeTheLoopsTurn(TimeSlicedScheduler.make(10), 1000, 100)
      expect(sliced).toBeLessThan(1000)
      // The same work on Effect's default scheduler: the loop waits for all of it.
      const unsliced = yield* finishedBeforeTheLoopsTurn(Scheduler.defaultScheduler, 1000, 100)
      expect(unsliced).toBe(1000)
    }))

  it.effect("runs every fiber to its end", () =>
    Effect.gen(function*() {
      const results = yield* Effect.all(
        Array.from({ length: 100 }, (_, i) => Effect.as(Effect.yieldNow(), i)),
        { concurrency: "unbounded" }
      ).pipe(Effect.withScheduler(TimeSlicedScheduler.make(1)))
      expect(results).toEqual(Array.from({ length: 100 }, (_, i) => i))
    }))
})
