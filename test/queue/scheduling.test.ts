import { describe, expect, it } from "@effect/vitest"
import { DateTime, Deferred, Duration, Effect, Option, Ref, Schedule, Schema, Stream, TestClock } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import type { Run } from "../../src/domain/Run.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import * as Workers from "../../src/Workers.ts"
import { fastWorkers, fixedBuffer, jobOf, logOf, patience, programOn, typesOf, withWorkers } from "./support.ts"

/** Appends its input to `order` when it executes. */
const recording = (order: Ref.Ref<ReadonlyArray<string>>) =>
  Task.make("test.records", {
    input: Schema.String,
    output: Schema.String,
    run: (label) => Effect.as(Ref.update(order, (labels) => [...labels, label]), label)
  })

const startedAt = (runId: Run["id"]) =>
  Effect.map(logOf(runId), (log) => {
    const started = log.find((event) => event.type === "run.started")
    return started === undefined ? undefined : DateTime.toEpochMillis(started.at)
  })

describe.concurrent("priorities", () => {
  it.live("waiting runs are executed highest priority first, then earliest runAt first", () =>
    Effect.gen(function*() {
      const order = yield* Ref.make<ReadonlyArray<string>>([])
      const Records = recording(order)
      const now = yield* DateTime.now
      const ago = (seconds: number) => DateTime.subtract(now, { seconds })
      const starts = [
        { label: "p0", options: { priority: 0, runAt: ago(5) } },
        { label: "p10-later", options: { priority: 10, runAt: ago(1) } },
        { label: "p-5", options: { priority: -5, runAt: ago(9) } },
        { label: "p10-earlier", options: { priority: 10, runAt: ago(2) } },
        { label: "p3", options: { priority: 3 } },
        { label: "p1000000", options: { priority: 1_000_000 } }
      ]

      // A program without workers queues the runs...
      const queued = yield* Effect.gen(function*() {
        const runs = yield* Runs
        return yield* Effect.forEach(starts, ({ label, options }) => runs.start(Records, label, options))
      }).pipe(Effect.provide(programOn({ tasks: [Records], workers: false })))
      expect(queued.map((run) => run.priority)).toEqual([0, 10, -5, 10, 3, 1_000_000])

      // ...then a program with one worker on the same database executes them.
      const finished = yield* Effect.forEach(queued, (run) => RunstreamTest.waitForRunCompletion(run.id, patience)).pipe(
        Effect.provide(programOn({ tasks: [Records], workers: { ...fastWorkers, concurrency: 1 } }))
      )
      expect(finished.map((run) => run.status)).toEqual(Array(starts.length).fill("succeeded"))
      expect(yield* Ref.get(order)).toEqual(["p1000000", "p10-earlier", "p10-later", "p3", "p0", "p-5"])
    }).pipe(Effect.provide(TestDatabase.layerUrl)))
  it.live("a large batch of waiting runs is executed in priority order", () =>
    Effect.gen(function*() {
      const order = yield* Ref.make<ReadonlyArray<string>>([])
      const Records = recording(order)
      const now = yield* DateTime.now
      // 60 runs, priorities shuffled, each runAt distinct so the order is total.
      const specs = Array.from({ length: 60 }, (_, i) => ({
        label: `r${i}`,
        priority: (i * 37) % 60 - 30,
        runAt: DateTime.subtract(now, { seconds: 60 - i })
      }))
      const expected = [...specs]
        .sort((a, b) => b.priority - a.priority || DateTime.toEpochMillis(a.runAt) - DateTime.toEpochMillis(b.runAt))
        .map((spec) => spec.label)

      const queued = yield* Effect.gen(function*() {
        const runs = yield* Runs
        return yield* Effect.forEach(specs, (spec) => runs.start(Records, spec.label, { priority: spec.priority, runAt: spec.runAt }))
      }).pipe(Effect.provide(programOn({ tasks: [Records], workers: false })))

      yield* Effect.forEach(queued, (run) => RunstreamTest.waitForRunCompletion(run.id, patience)).pipe(
        Effect.provide(programOn({ tasks: [Records], workers: { ...fastWorkers, concurrency: 1 } }))
      )
      expect(yield* Ref.get(order)).toEqual(expected)
    }).pipe(Effect.provide(TestDatabase.layerUrl)))

  it.live("a high-priority run started while a worker is busy runs before the lower-priority runs waiting in its buffer", () =>
    Effect.gen(function*() {
      const order = yield* Ref.make<ReadonlyArray<string>>([])
      const firstStarted = yield* Deferred.make<void>()
      const releaseFirst = yield* Deferred.make<void>()
      const Records = Task.make("test.records", {
        input: Schema.String,
        output: Schema.String,
        run: (label) =>
          Effect.gen(function*() {
            yield* Ref.update(order, (labels) => [...labels, label])
            if (label === "first") {
              yield* Deferred.succeed(firstStarted, undefined)
              yield* Deferred.await(releaseFirst)
            }
            return label
          })
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const first = yield* runs.start(Records, "first")
        yield* Deferred.await(firstStarted)
        const low = yield* Effect.forEach(["low-1", "low-2", "low-3", "low-4"], (label) => runs.start(Records, label))
        const high = yield* runs.start(Records, "high", { priority: 10 })
        // The worker prefetches (a fixed buffer: its only runner is busy, so an
        // adaptive one would stay empty): let it claim all of them into its
        // buffer (each claim writes run.started) before the busy runner frees up.
        yield* Effect.forEach([...low, high], (run) =>
          runs.events(run.id).pipe(
            Stream.filter((event) => event.type === "run.started"),
            Stream.runHead
          ), { concurrency: "unbounded" })
        // A claim's run.started can be published (by a relay drain already under
        // way) before the pool has read the claim's answer and buffered its runs:
        // wait until the pool holds all six.
        const workers = yield* Workers.Workers
        yield* workers.inFlight.pipe(
          Effect.repeat({ until: (n) => n === 6, schedule: Schedule.spaced("10 millis") }),
          Effect.timeoutFail({ duration: patience, onTimeout: () => new Error("the pool never held the six runs") })
        )
        yield* Deferred.succeed(releaseFirst, undefined)
        yield* Effect.forEach([first, ...low, high], (run) => RunstreamTest.waitForRunCompletion(run.id, patience))
        const executed = yield* Ref.get(order)
        expect(executed.slice(0, 2)).toEqual(["first", "high"])
        expect([...executed.slice(2)].sort()).toEqual(["low-1", "low-2", "low-3", "low-4"])
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Records], workers: { ...fastWorkers, ...fixedBuffer, concurrency: 1 } })))
    }))
})

describe.concurrent("delayed runs", () => {
  it.live("a run with runAt in the future is passed over until it is due, then starts", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const runAt = DateTime.add(yield* DateTime.now, { seconds: 3 })
      const delayed = yield* runs.start(Echo, "delayed", { runAt })
      expect(DateTime.toEpochMillis(delayed.runAt)).toBe(DateTime.toEpochMillis(runAt))
      const immediate = yield* runs.start(Echo, "immediate")
      expect((yield* RunstreamTest.waitForRunCompletion(immediate.id, patience)).status).toBe("succeeded")

      const done = yield* RunstreamTest.waitForRunCompletion(delayed.id, patience)
      expect(done.status).toBe("succeeded")
      expect(typesOf(yield* logOf(delayed.id))).toEqual(["run.queued", "run.started", "run.succeeded"])
      // Claimed no earlier than runAt: the workers' clock is this clock. That it
      // is still queued when the immediate run has finished is shown under
      // TestClock below, where no busy machine can make the immediate run late.
      expect(yield* startedAt(delayed.id)).toBeGreaterThanOrEqual(DateTime.toEpochMillis(runAt))
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: fastWorkers }))))

  it.effect("under TestClock, a delayed run is still queued when a later immediate run has finished, and starts when the clock reaches runAt", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const runAt = DateTime.add(yield* DateTime.now, { seconds: 4 })
      const delayed = yield* runs.start(Echo, "delayed", { runAt })

      // A run started now wakes the workers; it is claimed in a batch that
      // would hold the delayed run too, were it due (concurrency 4).
      yield* TestClock.adjust(Duration.millis(3999))
      const marker = yield* runs.start(Echo, "marker")
      expect((yield* RunstreamTest.waitForRunCompletion(marker.id, patience)).status).toBe("succeeded")
      expect((yield* runs.get(delayed.id)).status).toBe("queued")
      expect(typesOf(yield* logOf(delayed.id))).toEqual(["run.queued"])

      // The worker sleeps until runAt on the test clock.
      yield* TestClock.adjust(Duration.millis(1))
      const done = yield* RunstreamTest.waitForRunCompletion(delayed.id, patience)
      expect(done.status).toBe("succeeded")
      expect(yield* startedAt(delayed.id)).toBe(DateTime.toEpochMillis(runAt))
    }).pipe(Effect.provide(RunstreamTest.layer({
      tasks: [Echo],
      reclaimInterval: "1 minute",
      workers: { concurrency: 4, pollInterval: "1 minute", lease: "1 minute" }
    }))))
})

describe.concurrent("named queues", () => {
  it.live("a worker on queue 'a' takes the runs of 'a' only", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const onB = yield* runs.start(Echo, "b", { queue: "b" })
      const onDefault = yield* runs.start(Echo, "default")
      expect(onDefault.queue).toBe("default")
      const onA = yield* runs.start(Echo, "a", { queue: "a" })
      const doneA = yield* RunstreamTest.waitForRunCompletion(onA.id, patience)
      expect(doneA.status).toBe("succeeded")
      expect(doneA.queue).toBe("a")

      for (const run of [onB, onDefault]) {
        expect((yield* runs.get(run.id)).status).toBe("queued")
        expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued"])
        expect(Option.map(yield* jobOf(run.id), (job) => job.locked_by)).toEqual(Option.some(null))
      }

      // A worker on 'b' takes the run of 'b', and still not the default queue's.
      const doneB = yield* RunstreamTest.waitForRunCompletion(onB.id, patience).pipe(withWorkers({ queues: ["b"] }))
      expect(doneB.status).toBe("succeeded")
      expect((yield* runs.get(onDefault.id)).status).toBe("queued")
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: { ...fastWorkers, queues: ["a"] } }))))
})

describe("run.queued", () => {
  it.live("gives runAt as ISO 8601 in UTC with a Z, the same instant as the run's", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const runAt = DateTime.unsafeMake("2031-05-04T03:02:01.234Z")
      for (const run of [yield* runs.start(Echo, "later", { runAt }), yield* runs.start(Echo, "now")]) {
        const [queued] = yield* logOf(run.id)
        const data = queued!.data as { readonly runAt: string }
        expect(data.runAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
        expect(data.runAt).toBe(DateTime.formatIso(run.runAt))
      }
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false }))))
})
