import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Logger, Option, Ref, Schema, Scope } from "effect"
import { Sleep } from "../../src/demo/tasks.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import * as Workers from "../../src/Workers.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import { dataOf, fastWorkers, fixedBuffer, jobOf, logOf, patience, programOn, typesOf, waitForEvent, withWorkers } from "./support.ts"

describe.concurrent("graceful shutdown", () => {
  it.live("a run still in flight when the grace period ends is handed back at once and finished by another program", () =>
    Effect.gen(function*() {
      // A lease far longer than the test: only a hand-back lets anyone else take the run.
      const workers = { lease: "10 minutes", pollInterval: "200 millis", shutdownGrace: "100 millis" } as const

      const first = yield* Scope.make()
      const program1 = yield* Layer.buildWithScope(programOn({ tasks: [Sleep], workers }), first)
      const run = yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Sleep, { ms: 3000 })
        yield* waitForEvent(run.id, "run.started")
        return run
      }).pipe(Effect.provide(program1))

      yield* Scope.close(first, Exit.void)

      yield* Effect.gen(function*() {
        const runs = yield* Runs
        // Closed before the body could finish: the run is back in the queue, its attempt not used up.
        const handedBack = yield* runs.get(run.id)
        expect(handedBack.status).toBe("queued")
        expect(handedBack.attempt).toBe(0)
        const log = yield* logOf(run.id)
        expect(typesOf(log)).toEqual(["run.queued", "run.started", "run.released"])
        expect(dataOf(log[2]!)).toEqual({ attempt: 1, reason: "worker shutdown" })
        const job = yield* jobOf(run.id)
        expect(Option.map(job, (j) => [j.locked_by, j.locked_until, j.attempt])).toEqual(Option.some([null, null, 0]))

        // The second program's workers take it at once and finish it on attempt 1.
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience).pipe(withWorkers(workers))
        expect(done.status).toBe("succeeded")
        expect(done.attempt).toBe(1)
        expect(done.output).toEqual({ slept: 3000 })
        const events = yield* logOf(run.id)
        expect(typesOf(events)).toEqual(["run.queued", "run.started", "run.released", "run.started", "run.succeeded"])
        expect(events.filter((e) => e.type === "run.started").map((e) => dataOf(e)["attempt"])).toEqual([1, 1])
      }).pipe(Effect.provide(programOn({ tasks: [Sleep], workers: false })))
    }).pipe(Effect.provide(TestDatabase.layerUrl)))

  it.live("a run that finishes within the grace period finishes normally", () =>
    Effect.gen(function*() {
      // `run.started` records the claim, not the body's first step: a run claimed
      // but not begun is handed back at shutdown. This one is closed on once its body runs.
      const begun = yield* Deferred.make<void>()
      const Naps = Task.make("test.naps", {
        input: Schema.Void,
        output: Schema.Struct({ slept: Schema.Number }),
        run: () => Effect.zipRight(Deferred.succeed(begun, undefined), Effect.as(Effect.sleep(400), { slept: 400 }))
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* Effect.gen(function*() {
          const run = yield* runs.start(Naps, undefined)
          yield* Deferred.await(begun)
          return run
        }).pipe(withWorkers({ shutdownGrace: "20 seconds" }))
        // The workers are closed: closing waited for the body and recorded its end.
        const done = yield* runs.get(run.id)
        expect(done.status).toBe("succeeded")
        expect(done.attempt).toBe(1)
        expect(done.output).toEqual({ slept: 400 })
        expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.succeeded"])
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Naps], workers: false })))
    }))

  it.live("runs claimed but not started yet are handed back at once, while the running one finishes within the grace period", () =>
    Effect.gen(function*() {
      const firstStarted = yield* Deferred.make<void>()
      const releaseFirst = yield* Deferred.make<void>()
      const executed = yield* Ref.make<ReadonlyArray<string>>([])
      const Holds = Task.make("test.holds", {
        input: Schema.String,
        output: Schema.String,
        run: (label) =>
          Effect.gen(function*() {
            yield* Ref.update(executed, (labels) => [...labels, label])
            if (label === "first") {
              yield* Deferred.succeed(firstStarted, undefined)
              yield* Deferred.await(releaseFirst)
            }
            return label
          })
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const scope = yield* Scope.make()
        yield* Layer.buildWithScope(Workers.layer({ ...fastWorkers, ...fixedBuffer, concurrency: 1, shutdownGrace: "30 seconds" }), scope)
        const first = yield* runs.start(Holds, "first")
        yield* Deferred.await(firstStarted)
        // The one runner is busy: the second run is claimed into the pool's buffer.
        const second = yield* runs.start(Holds, "second")
        yield* waitForEvent(second.id, "run.started")

        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        const released = yield* waitForEvent(second.id, "run.released")
        expect(dataOf(released)).toEqual({ attempt: 1, reason: "worker shutdown" })
        const handedBack = yield* runs.get(second.id)
        expect(handedBack.status).toBe("queued")
        expect(handedBack.attempt).toBe(0)
        expect((yield* runs.get(first.id)).status).toBe("running")

        yield* Deferred.succeed(releaseFirst, undefined)
        yield* Fiber.join(closing)
        const done = yield* runs.get(first.id)
        expect(done.status).toBe("succeeded")
        expect(typesOf(yield* logOf(first.id))).toEqual(["run.queued", "run.started", "run.succeeded"])
        expect(yield* Ref.get(executed)).toEqual(["first"])
        expect(typesOf(yield* logOf(second.id))).toEqual(["run.queued", "run.started", "run.released"])
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Holds], workers: false })))
    }))

  it.live("says at once what the shutdown waits for: how many runs, how long at most", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const said = yield* Deferred.make<string>()
      const Holds = Task.make("test.holds-until-released", {
        input: Schema.Void,
        output: Schema.Void,
        run: () => Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release))
      })
      const listening = Logger.add(Logger.make(({ message }) => {
        const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
        if (text.startsWith("shutting down")) Deferred.unsafeDone(said, Exit.succeed(text))
      }))
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const scope = yield* Scope.make()
        yield* Layer.buildWithScope(Workers.layer({ ...fastWorkers, shutdownGrace: "30 seconds" }), scope)
        yield* runs.start(Holds, undefined)
        yield* Deferred.await(started)
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        // Said while the run still holds the shutdown, long before the grace period ends.
        const text = yield* Deferred.await(said)
        expect(text).toContain("1 run(s)")
        expect(text).toContain("30s")
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(closing)
      }).pipe(Effect.provide(Layer.merge(RunstreamTest.layer({ tasks: [Holds], workers: false }), listening)))
    }))

  it.live("a run claimed just before the workers close is handed back, never left leased (40 cycles)", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const leftRunning: Array<number> = []
      for (let i = 0; i < 40; i++) {
        // A queue per cycle: each pool sees only its own run.
        const queue = `cycle-${i}`
        const scope = yield* Scope.make()
        yield* Layer.buildWithScope(
          Workers.layer({ ...fastWorkers, queues: [queue], lease: "10 minutes", shutdownGrace: "50 millis" }),
          scope
        )
        const run = yield* runs.start(Sleep, { ms: 60_000 }, { queue })
        yield* waitForEvent(run.id, "run.started")
        yield* Scope.close(scope, Exit.void)
        if ((yield* runs.get(run.id)).status !== "queued") leftRunning.push(i)
      }
      expect(leftRunning).toEqual([])
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Sleep], workers: false }))))
})
