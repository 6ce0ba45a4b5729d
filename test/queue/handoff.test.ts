/**
 * Runs taken at their start by an idle worker of the same program
 * (`queue/Claiming.ts`'s handoff): created running and leased in the start's own
 * statement, handed over after its commit, never more than the free runners,
 * and never a run that is not due, not served, or not created.
 */
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Deferred, Effect, Option, Schema } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { Workers } from "../../src/Workers.ts"
import { fastWorkers, jobOf, logOf, patience, typesOf } from "./support.ts"

const taken = Effect.flatMap(Workers, (workers) => workers.takenAtStart)

/** Starts Echo runs one at a time, each to its end, until one is taken at its start (the worker may be between claims). */
const startUntilTaken = Effect.gen(function*() {
  const runs = yield* Runs
  for (let i = 0; i < 20; i++) {
    const before = yield* taken
    const run = yield* runs.start(Echo, `probe ${i}`)
    yield* RunstreamTest.waitForRunCompletion(run.id, patience)
    if ((yield* taken) === before + 1) return run
  }
  return yield* Effect.dieMessage("no run was taken at its start in 20 tries")
})

describe.concurrent("runs taken at their start", () => {
  it.live("an idle worker takes a run in the start's own statement: running, attempt 1, run.started at the same instant", () =>
    Effect.gen(function*() {
      const run = yield* startUntilTaken
      expect(run.status).toBe("running")
      expect(run.attempt).toBe(1)
      expect(run.startedAt).toEqual(run.createdAt)
      const log = yield* logOf(run.id)
      expect(typesOf(log)).toEqual(["run.queued", "run.started", "run.succeeded"])
      expect(log.map((event) => event.seq)).toEqual([1, 2, 3])
      expect(log[1]!.data).toEqual({ attempt: 1 })
      expect(log[1]!.at).toEqual(log[0]!.at)
      const done = yield* (yield* Runs).get(run.id)
      expect(done).toMatchObject({ status: "succeeded", attempt: 1, lastSeq: 3 })
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: fastWorkers }))))

  it.live("a run due later, or on a queue the pool does not serve, is enqueued, not taken", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      yield* startUntilTaken
      const before = yield* taken
      const later = yield* runs.start(Echo, "later", { runAt: DateTime.unsafeMake(Date.now() + 3_600_000) })
      const elsewhere = yield* runs.start(Echo, "elsewhere", { queue: "elsewhere" })
      expect(yield* taken).toBe(before)
      for (const run of [later, elsewhere]) {
        expect(run.status).toBe("queued")
        expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued"])
        expect(Option.map(yield* jobOf(run.id), (job) => job.locked_by)).toEqual(Option.some(null))
      }
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: fastWorkers }))))

  it.live("a repeated idempotency key takes nothing and gives its reservation back", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      yield* startUntilTaken
      const first = yield* runs.start(Echo, "once", { idempotencyKey: "handoff-once" })
      yield* RunstreamTest.waitForRunCompletion(first.id, patience)
      const before = yield* taken
      const again = yield* runs.start(Echo, "once", { idempotencyKey: "handoff-once" })
      expect(again.id).toBe(first.id)
      expect(yield* taken).toBe(before)
      // One runner: a reservation kept by the repeat would stop every later handover.
      yield* startUntilTaken
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: { ...fastWorkers, concurrency: 1 } }))))

  it.live("no more runs are taken than there are free runners; the others are claimed as usual", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const Gated = Task.make("test.gated", {
        input: Schema.Number,
        output: Schema.Number,
        run: (n) => Effect.as(Deferred.await(gate), n)
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        yield* startUntilTaken
        const before = yield* taken
        const started = []
        for (let i = 0; i < 5; i++) started.push(yield* runs.start(Gated, i))
        expect((yield* taken) - before).toBeLessThanOrEqual(2)
        expect(started.filter((run) => run.status === "running").length).toBe((yield* taken) - before)
        yield* Deferred.succeed(gate, undefined)
        const ends = yield* Effect.forEach(started, (run) => RunstreamTest.waitForRunCompletion(run.id, patience), { concurrency: "unbounded" })
        expect(ends.map((run) => run.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded", "succeeded"])
        for (const run of started) {
          const seqs = (yield* logOf(run.id)).map((event) => event.seq)
          expect(seqs).toEqual(seqs.map((_, i) => i + 1))
        }
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo, Gated], workers: { ...fastWorkers, concurrency: 2 } })))
    }))
})
