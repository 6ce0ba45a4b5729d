import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Option, Schema } from "effect"
import { Echo, Sleep } from "../../src/demo/tasks.ts"
import { EventLog } from "../../src/EventLog.ts"
import { isTerminalType } from "../../src/domain/RunEvent.ts"
import { RunQueue } from "../../src/queue/RunQueue.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { Workers } from "../../src/Workers.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { dataOf, jobOf, logOf, patience, typesOf, withWorkers } from "./support.ts"

/** A worker that claims and then vanishes: it never heartbeats, never finishes. */
const ghost = { workerId: "ghost-worker" }

const claimAsGhost = (leaseMs: number) =>
  Effect.flatMap(RunQueue, (queue) => queue.claim({ ...ghost, queues: ["default"], limit: 10, leaseMs }))

describe.concurrent("lease expiry and fencing", () => {
  it.live("a run held by a vanished worker is reclaimed and completed by another; the vanished worker's late writes are refused", () =>
    Effect.gen(function*() {
      const secondStarted = yield* Deferred.make<number>()
      const release = yield* Deferred.make<void>()
      const Guarded = Task.make("test.guarded", {
        input: Schema.Void,
        output: Schema.Struct({ attempt: Schema.Int }),
        run: (_, ctx) =>
          Effect.gen(function*() {
            yield* Deferred.succeed(secondStarted, ctx.attempt)
            yield* Deferred.await(release)
            return { attempt: ctx.attempt }
          })
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const queue = yield* RunQueue
        const log = yield* EventLog
        const run = yield* runs.start(Guarded, undefined)
        const claims = yield* claimAsGhost(300)
        expect(claims.map((claim) => [claim.runId, claim.attempt])).toEqual([[run.id, 1]])
        expect((yield* runs.get(run.id)).status).toBe("running")
        expect(Option.map(yield* jobOf(run.id), (job) => job.locked_by)).toEqual(Option.some(ghost.workerId))

        const late = (attempt: number) =>
          queue.recordEnds(ghost, [{ runId: run.id, attempt, outcome: { _tag: "succeeded", output: { attempt: 1 } } }])

        yield* Effect.gen(function*() {
          // The pool reclaims the expired lease and runs attempt 2.
          expect(yield* Deferred.await(secondStarted)).toBe(2)
          const running = yield* runs.get(run.id)
          expect(running.status).toBe("running")
          expect(running.attempt).toBe(2)

          // While attempt 2 runs, the vanished worker can neither end the run
          // (for its own attempt or the current one) nor append to its log.
          expect([...(yield* late(1))]).toEqual([])
          expect([...(yield* late(2))]).toEqual([])
          expect(yield* log.append([{ runId: run.id, attempt: 1, type: "stale", data: { from: "ghost" } }])).toEqual([undefined])
          const beat = yield* queue.heartbeat({ ...ghost, runs: [{ runId: run.id, attempt: 1 }], leaseMs: 60_000 })
          expect([...beat.held]).toEqual([])

          yield* Deferred.succeed(release, undefined)
          const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
          expect(done.status).toBe("succeeded")
          expect(done.attempt).toBe(2)
          expect(done.output).toEqual({ attempt: 2 })
        }).pipe(withWorkers())

        // After the end, too.
        expect([...(yield* late(1))]).toEqual([])
        expect(yield* log.append([{ runId: run.id, attempt: 1, type: "stale", data: null }])).toEqual([undefined])

        const events = yield* logOf(run.id)
        expect(typesOf(events)).toEqual(["run.queued", "run.started", "run.retrying", "run.started", "run.succeeded"])
        expect(events.map((event) => event.seq)).toEqual([1, 2, 3, 4, 5])
        expect(events.filter((event) => isTerminalType(event.type))).toHaveLength(1)
        expect(dataOf(events[2]!)["error"]).toEqual({
          tag: "LeaseExpired",
          message: "the worker stopped renewing its lease",
          retryable: true
        })
        expect(dataOf(events[3]!)["attempt"]).toBe(2)
        const final = yield* runs.get(run.id)
        expect(final.status).toBe("succeeded")
        expect(final.output).toEqual({ attempt: 2 })
        expect(final.lastSeq).toBe(5)
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Guarded], workers: false, reclaimInterval: "200 millis" })))
    }))

  // No workers in these programs: the lease reclaim is the program's own (`LeaseReclaim`).
  it.live("a run whose last attempt's lease expires fails with LeaseExpired, in a program without workers", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Echo, "never runs", { maxAttempts: 1 })
      expect(yield* claimAsGhost(200)).toHaveLength(1)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("failed")
      expect(done.attempt).toBe(1)
      expect(done.error).toEqual({ tag: "LeaseExpired", message: "the worker stopped renewing its lease", retryable: true })
      expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.failed"])
      expect(Option.isNone(yield* jobOf(run.id))).toBe(true)
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false, reclaimInterval: "200 millis" }))))

  it.live("a run cancelled while a vanished worker holds it is cancelled when the lease expires, in a program without workers", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Echo, "never runs")
      // The lease lapses after the cancel (a reclaim before it would retry the run).
      expect(yield* claimAsGhost(60_000)).toHaveLength(1)
      const requested = yield* runs.cancel(run.id)
      expect(requested.status).toBe("running")
      const sql = yield* SqlClient.SqlClient
      const lapsed = new Date((yield* Clock.currentTimeMillis) - 60_000)
      yield* sql`UPDATE runstream_jobs SET locked_until = ${lapsed} WHERE run_id = ${run.id}`
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("cancelled")
      expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.cancelled"])
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false, reclaimInterval: "200 millis" }))))

  it.live("heartbeats keep a run that outlives its lease from being reclaimed", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Sleep, { ms: 9000 })
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(1)
      expect(typesOf(yield* logOf(run.id))).toEqual(["run.queued", "run.started", "run.succeeded"])
    }).pipe(Effect.provide(RunstreamTest.layer({
      tasks: [Sleep],
      // Renewed every 1.3 s; expiring would take a stall of over 2.6 s.
      reclaimInterval: "100 millis",
      workers: { lease: "4 seconds", pollInterval: "200 millis" }
    }))))

  it.live("a pool that lost a lease and claims the run again keeps control of the new attempt", () =>
    Effect.gen(function*() {
      const firstStarted = yield* Deferred.make<void>()
      const releaseFirst = yield* Deferred.make<void>()
      const secondStarted = yield* Deferred.make<void>()
      const secondEnded = yield* Deferred.make<void>()
      const Lapses = Task.make("test.lapses", {
        input: Schema.Void,
        output: Schema.Struct({ attempt: Schema.Int }),
        run: (_, ctx) =>
          ctx.attempt === 1
            ? Effect.zipRight(Deferred.succeed(firstStarted, undefined), Effect.as(Deferred.await(releaseFirst), { attempt: 1 }))
            : Effect.zipRight(Deferred.succeed(secondStarted, undefined), Effect.never).pipe(
              Effect.onInterrupt(() => Deferred.succeed(secondEnded, undefined))
            )
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const sql = yield* SqlClient.SqlClient
        const run = yield* runs.start(Lapses, undefined)
        yield* Deferred.await(firstStarted)

        // The pool misses its heartbeats (a stall, a network cut): its lease
        // lapses, the reclaimer ends attempt 1 and the same pool claims attempt 2
        // while attempt 1's body is still running here.
        const lapsed = new Date((yield* Clock.currentTimeMillis) - 60_000)
        yield* sql`UPDATE runstream_jobs SET locked_until = ${lapsed} WHERE run_id = ${run.id}`
        yield* Deferred.await(secondStarted)
        expect((yield* runs.get(run.id)).attempt).toBe(2)

        // Attempt 1's body ends; its success is refused. A run started now
        // waits for a free runner (both are busy), so once it has finished,
        // attempt 1's execution has fully ended.
        const probe = yield* runs.start(Echo, "probe")
        yield* Deferred.succeed(releaseFirst, undefined)
        expect((yield* RunstreamTest.waitForRunCompletion(probe.id, patience)).status).toBe("succeeded")

        // The pool must still count and control attempt 2: a cancel reaches it.
        // The probe may still count too: its end is committed (and may be
        // published by a relay drain already under way) a moment before the
        // pool reads the commit's answer and releases it.
        const inFlight = yield* Effect.flatMap(Workers, (workers) => workers.inFlight)
        expect(inFlight).toBeGreaterThanOrEqual(1)
        expect(inFlight).toBeLessThanOrEqual(2)
        yield* runs.cancel(run.id)
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
        expect(done.status).toBe("cancelled")
        expect(done.attempt).toBe(2)
        expect(yield* Deferred.isDone(secondEnded)).toBe(true)
        expect(typesOf(yield* logOf(run.id))).toEqual([
          "run.queued",
          "run.started",
          "run.retrying",
          "run.started",
          "run.cancelled"
        ])
      }).pipe(Effect.provide(RunstreamTest.layer({
        tasks: [Lapses, Echo],
        // Heartbeats every 20 s: none comes between the lapse and the reclaim.
        reclaimInterval: "100 millis",
        workers: { concurrency: 2, lease: "1 minute", pollInterval: "200 millis" }
      })))
    }))

  it.live("a pool's heartbeat never stops a newer attempt when it finds an older one gone (many fast retries)", () =>
    Effect.gen(function*() {
      // Each attempt times out at once and is retried within milliseconds, so
      // attempts end and begin while heartbeats (every 500 ms) are in flight.
      const Hangs = Task.make("test.hangs", {
        input: Schema.Void,
        output: Schema.Void,
        retry: { maxAttempts: 25, initialDelay: "1 millis", maxDelay: "2 millis" },
        run: () => Effect.never
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const started = yield* Effect.forEach(Array.from({ length: 40 }), () => runs.start(Hangs, undefined, { timeoutMs: 40 }))
        const done = yield* Effect.forEach(started, (run) => RunstreamTest.waitForRunCompletion(run.id, patience), {
          concurrency: "unbounded"
        })
        expect(done.map((run) => run.error?.tag)).toEqual(Array(started.length).fill("TaskTimeout"))
        // No attempt was taken for a lost lease: the only worker never stopped renewing.
        const logs = yield* Effect.forEach(started, (run) => logOf(run.id))
        const expired = logs.flat().filter((event) =>
          event.type === "run.retrying" && (dataOf(event)["error"] as { tag: string }).tag === "LeaseExpired"
        )
        expect(expired).toHaveLength(0)
      }).pipe(Effect.provide(RunstreamTest.layer({
        tasks: [Hangs],
        reclaimInterval: "100 millis",
        workers: { concurrency: 50, lease: "1500 millis", pollInterval: "10 millis" }
      })))
    }))
})
