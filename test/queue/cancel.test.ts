import { describe, expect, it } from "@effect/vitest"
import { DateTime, Deferred, Effect, Exit, Option, Ref, Schema } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import { RunAlreadyFinished } from "../../src/domain/Errors.ts"
import { makeRunId } from "../../src/domain/Ids.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { fastWorkers, fixedBuffer, jobOf, logOf, patience, typesOf, waitForEvent, withWorkers } from "./support.ts"

/** Counts its executions; finishes at once. */
const counted = (executions: Ref.Ref<number>) =>
  Task.make("test.counted", {
    input: Schema.Void,
    output: Schema.Void,
    run: () => Ref.update(executions, (n) => n + 1)
  })

describe.concurrent("cancellation", () => {
  it.live("a queued run is cancelled at once and never executed", () =>
    Effect.gen(function*() {
      const executions = yield* Ref.make(0)
      const Counted = counted(executions)
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Counted, undefined)
        const cancelled = yield* runs.cancel(run.id)
        expect(cancelled.status).toBe("cancelled")
        expect(cancelled.finishedAt).not.toBeNull()
        expect(cancelled.attempt).toBe(0)
        expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.cancelled"])
        expect(Option.isNone(yield* jobOf(run.id))).toBe(true)

        // Workers that come later run what is queued, and not the cancelled run.
        yield* Effect.gen(function*() {
          const other = yield* runs.start(Counted, undefined)
          expect((yield* RunstreamTest.waitForRunCompletion(other.id, patience)).status).toBe("succeeded")
        }).pipe(withWorkers())
        expect(yield* Ref.get(executions)).toBe(1)
        expect((yield* runs.get(run.id)).status).toBe("cancelled")
        expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.cancelled"])
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Counted], workers: false })))
    }))

  it.live("a run delayed into the future is cancelled at once, before it is due", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const runAt = DateTime.add(yield* DateTime.now, { hours: 1 })
      const run = yield* runs.start(Echo, "later", { runAt })
      const cancelled = yield* runs.cancel(run.id)
      expect(cancelled.status).toBe("cancelled")
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("cancelled")
      expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.cancelled"])
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: fastWorkers }))))

  it.live("a running run is interrupted: its finalizer runs, run.cancelled is written, status cancelled", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<number>()
      const finalized = yield* Deferred.make<void>()
      const Blocks = Task.make("test.blocks", {
        input: Schema.Void,
        output: Schema.Void,
        run: (_, ctx) =>
          Effect.gen(function*() {
            yield* Effect.addFinalizer(() => Deferred.succeed(finalized, undefined))
            yield* Deferred.succeed(started, ctx.attempt)
            return yield* Effect.never
          }).pipe(Effect.scoped)
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Blocks, undefined)
        expect(yield* Deferred.await(started)).toBe(1)
        const requested = yield* runs.cancel(run.id)
        expect(requested.id).toBe(run.id)
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
        expect(done.status).toBe("cancelled")
        expect(done.attempt).toBe(1)
        expect(done.finishedAt).not.toBeNull()
        expect(yield* Deferred.isDone(finalized)).toBe(true)
        const log = yield* logOf(run.id)
        expect(typesOf(log)).toEqual(["run.queued", "run.started", "run.cancelled"])
        expect(log[2]!.data).toEqual({ attempt: 1 })
        expect(Option.isNone(yield* jobOf(run.id))).toBe(true)
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Blocks], workers: fastWorkers })))
    }))

  it.live("cancelling a finished run fails with RunAlreadyFinished and changes nothing", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Echo, { hello: "world" })
      yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      const exit = yield* Effect.exit(runs.cancel(run.id))
      expect(exit).toStrictEqual(Exit.fail(new RunAlreadyFinished({ runId: run.id, status: "succeeded" })))
      const after = yield* runs.get(run.id)
      expect(after.status).toBe("succeeded")
      expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.succeeded"])

      // and so does cancelling a cancelled run.
      const queued = yield* runs.start(Echo, null, { runAt: DateTime.add(yield* DateTime.now, { hours: 1 }) })
      yield* runs.cancel(queued.id)
      const again = yield* Effect.flip(runs.cancel(queued.id))
      expect(again).toStrictEqual(new RunAlreadyFinished({ runId: queued.id, status: "cancelled" }))
      expect(typesOf(yield* logOf(queued.id))).toEqual(["run.queued", "run.cancelled"])
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: fastWorkers }))))

  it.live("cancelling an unknown run fails with RunNotFound", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const runId = yield* makeRunId
      const error = yield* Effect.flip(runs.cancel(runId))
      expect(error._tag).toBe("RunNotFound")
      expect(error).toMatchObject({ runId })
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false }))))

  it.live("a run claimed into a busy pool's buffer is cancelled without its body ever running", () =>
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
        const first = yield* runs.start(Holds, "first")
        yield* Deferred.await(firstStarted)
        // The one runner is busy: the second run is claimed into the pool's buffer.
        const second = yield* runs.start(Holds, "second")
        yield* waitForEvent(second.id, "run.started")
        yield* runs.cancel(second.id)
        const cancelled = yield* RunstreamTest.waitForRunCompletion(second.id, patience)
        expect(cancelled.status).toBe("cancelled")
        expect(typesOf(yield* logOf(second.id))).toEqual(["run.queued", "run.started", "run.cancelled"])
        // ...while the first is still running.
        expect((yield* runs.get(first.id)).status).toBe("running")

        yield* Deferred.succeed(releaseFirst, undefined)
        expect((yield* RunstreamTest.waitForRunCompletion(first.id, patience)).status).toBe("succeeded")
        expect(yield* Ref.get(executed)).toEqual(["first"])
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Holds], workers: { ...fastWorkers, ...fixedBuffer, concurrency: 1 } })))
    }))
})
