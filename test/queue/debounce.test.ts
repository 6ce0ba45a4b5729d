import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Deferred, Duration, Effect, Fiber, Option, Schedule, Schema, TestClock } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import { IdempotencyConflict } from "../../src/domain/Errors.ts"
import type { RunId } from "../../src/domain/Ids.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import * as Task from "../../src/Task.ts"
import { jobOf, logOf, patience, programOn, typesOf, waitForEvent } from "./support.ts"

/** Workers that move only when the test clock does (or a start wakes them). */
const clockWorkers = { concurrency: 4, pollInterval: "1 minute", lease: "1 minute" } as const

const underTestClock = RunstreamTest.layer({ tasks: [Echo], reclaimInterval: "1 minute", workers: clockWorkers })

const debounced = (key: string, delayMs: number, mode?: "trailing" | "leading") => ({ debounce: { key, delayMs, mode } })

/** Runs and jobs of Echo, and the debounce keys its jobs hold. */
const tables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ runs: number; jobs: number; keys: ReadonlyArray<string> | null }>`
    SELECT (SELECT count(*)::integer FROM runstream_runs) AS runs,
      (SELECT count(*)::integer FROM runstream_jobs) AS jobs,
      (SELECT array_agg(debounce_key ORDER BY debounce_key) FROM runstream_jobs WHERE debounce_key IS NOT NULL) AS keys`
  return { runs: row!.runs, jobs: row!.jobs, keys: row!.keys ?? [] }
})

const startedAt = (runId: RunId) =>
  Effect.map(logOf(runId), (log) => {
    const started = log.find((event) => event.type === "run.started")
    return started === undefined ? undefined : DateTime.toEpochMillis(started.at)
  })

/** Proves the workers are awake and idle: a plain run started now finishes. */
const marker = Effect.gen(function*() {
  const runs = yield* Runs
  const run = yield* runs.start(Echo, "marker")
  expect((yield* RunstreamTest.waitForRunCompletion(run.id, patience)).status).toBe("succeeded")
})

/** A task with a concurrency limit whose runs hold their place until the test ends. */
const LimitedHold = Task.make("test.limited-hold", {
  input: Schema.String,
  output: Schema.String,
  concurrency: { limit: 1 },
  run: () => Effect.never
})

describe("debounce", () => {
  it.live("a run of a task with limits, once claimed, is not folded into: the next start with the key begins a new run", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const first = yield* runs.start(LimitedHold, "one", debounced("k", 1))
      yield* waitForEvent(first.id, "run.started")
      expect((yield* tables).keys).toEqual([])
      const [next] = yield* runs.startMany([{ task: LimitedHold.name, input: "two", options: debounced("k", 1) }])
      expect(next!.created).toBe(true)
      expect(next!.run.id).not.toBe(first.id)
      expect((yield* runs.get(first.id)).input).toBe("one")
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [LimitedHold], workers: { concurrency: 2, shutdownGrace: "1 second" } }))))

  it.effect("trailing: starts within the delay fold into one run, started delayMs after the last, with the last input", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const [first] = yield* runs.startMany([{ task: Echo.name, input: "a", options: debounced("k", 1000) }])
      expect(first!.created).toBe(true)
      expect(first!.folded).toBeUndefined()
      expect(DateTime.toEpochMillis(first!.run.runAt)).toBe(1000)

      yield* TestClock.adjust(Duration.millis(600))
      const [second] = yield* runs.startMany([{ task: Echo.name, input: "b", options: debounced("k", 1000) }])
      yield* TestClock.adjust(Duration.millis(600))
      const [third] = yield* runs.startMany([{ task: Echo.name, input: "c", options: debounced("k", 1000) }])
      for (const folded of [second!, third!]) {
        expect(folded.run.id).toBe(first!.run.id)
        expect(folded.created).toBe(false)
        expect(folded.folded).toBe(true)
      }
      expect(third!.run.input).toBe("c")
      expect(DateTime.toEpochMillis(third!.run.runAt)).toBe(2200)
      expect(yield* tables).toEqual({ runs: 1, jobs: 1, keys: ["k"] })

      // Idle workers, past the first start's delay: still waiting (not handed over, not claimed).
      yield* TestClock.adjust(Duration.millis(999))
      yield* marker
      expect((yield* runs.get(first!.run.id)).status).toBe("queued")

      yield* TestClock.adjust(Duration.millis(1))
      const done = yield* RunstreamTest.waitForRunCompletion(first!.run.id, patience)
      expect(done.output).toBe("c")
      expect(yield* startedAt(done.id)).toBe(2200)
      expect(typesOf(yield* logOf(done.id))).toEqual(["run.queued", "run.started", "run.succeeded"])
    }).pipe(Effect.provide(underTestClock)))

  it.effect("leading: the folded run keeps the first input, and starts delayMs after the last start", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const first = yield* runs.start(Echo, "first", debounced("k", 500, "leading"))
      yield* TestClock.adjust(Duration.millis(400))
      const second = yield* runs.start(Echo, "second", debounced("k", 500, "leading"))
      expect(second.id).toBe(first.id)
      expect(second.input).toBe("first")
      expect(DateTime.toEpochMillis(second.runAt)).toBe(900)

      yield* TestClock.adjust(Duration.millis(499))
      yield* marker
      expect((yield* runs.get(first.id)).status).toBe("queued")
      yield* TestClock.adjust(Duration.millis(1))
      const done = yield* RunstreamTest.waitForRunCompletion(first.id, patience)
      expect(done.output).toBe("first")
      expect(yield* startedAt(done.id)).toBe(900)
    }).pipe(Effect.provide(underTestClock)))

  it.effect("once the run is claimed, the next start with the key begins a new run; keys are per task", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const first = yield* runs.start(Echo, "one", debounced("k", 100))
      yield* TestClock.adjust(Duration.millis(100))
      expect((yield* RunstreamTest.waitForRunCompletion(first.id, patience)).output).toBe("one")
      expect(yield* tables).toEqual({ runs: 1, jobs: 0, keys: [] })

      const [next] = yield* runs.startMany([{ task: Echo.name, input: "two", options: debounced("k", 100) }])
      expect(next!.created).toBe(true)
      expect(next!.run.id).not.toBe(first.id)
      // Another key, and a start without one, are runs of their own.
      const other = yield* runs.start(Echo, "three", debounced("other", 100))
      const plain = yield* runs.start(Echo, "plain")
      expect(new Set([next!.run.id, other.id, plain.id]).size).toBe(3)
      yield* RunstreamTest.waitForRunCompletion(plain.id, patience)
      expect(yield* tables).toEqual({ runs: 4, jobs: 2, keys: ["k", "other"] })
    }).pipe(Effect.provide(underTestClock)))

  it.live("a run claimed while a start folds into it: the fold waits for the claim, finds the key gone, and starts a new run", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const sql = yield* SqlClient.SqlClient
      const first = yield* runs.start(Echo, "one", debounced("k", 60_000))
      const locked = yield* Deferred.make<void>()
      const commit = yield* Deferred.make<void>()
      // A claim (as Claiming.claim writes it) by a transaction that waits before its commit.
      const claim = yield* Effect.gen(function*() {
        yield* sql`UPDATE runstream_jobs SET locked_by = 'elsewhere', locked_until = now() + interval '1 hour',
          attempt = attempt + 1, debounce_key = NULL WHERE run_id = ${first.id}`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(commit)
      }).pipe(sql.withTransaction, Effect.fork)
      yield* Deferred.await(locked)
      const start = yield* Effect.fork(runs.startMany([{ task: Echo.name, input: "two", options: debounced("k", 60_000) }]))
      // The start's fold waits on the job's row lock.
      yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'`.pipe(
        Effect.repeat({ schedule: Schedule.spaced("10 millis"), until: (rows) => rows[0]!.n > 0 })
      )
      yield* Deferred.succeed(commit, undefined)
      yield* Fiber.join(claim)
      const [second] = yield* Fiber.join(start)
      expect(second!.created).toBe(true)
      expect(second!.run.id).not.toBe(first.id)
      expect(second!.run.input).toBe("two")
      expect((yield* runs.get(first.id)).input).toBe("one")
      expect(Option.getOrThrow(yield* jobOf(first.id)).locked_by).toBe("elsewhere")
      expect(yield* tables).toEqual({ runs: 2, jobs: 2, keys: ["k"] })
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false }))))

  it.live("many concurrent starts with one key, from two programs, fold into exactly one run", () =>
    Effect.gen(function*() {
      const starts = 24
      const startAll = (label: string) =>
        Effect.flatMap(Runs, (runs) =>
          Effect.all(
            Array.from({ length: starts }, (_, i) =>
              runs.startMany([{ task: Echo.name, input: `${label}${i}`, options: debounced("burst", 60_000) }])),
            { concurrency: "unbounded" }
          )).pipe(Effect.provide(programOn({ tasks: [Echo], workers: false })))
      const [a, b] = yield* Effect.all([startAll("a"), startAll("b")], { concurrency: "unbounded" })
      const all = [...a!, ...b!].map((created) => created[0]!)
      expect(new Set(all.map((created) => created.run.id)).size).toBe(1)
      expect(all.filter((created) => created.created)).toHaveLength(1)
      expect(all.filter((created) => created.folded === true)).toHaveLength(2 * starts - 1)
      const counts = yield* tables.pipe(Effect.provide(programOn({ tasks: [Echo], workers: false })))
      expect(counts).toEqual({ runs: 1, jobs: 1, keys: ["burst"] })
    }).pipe(Effect.provide(TestDatabase.layerUrl)), { timeout: 60_000 })

  it.effect("idempotency keys are looked up first; a folded start's own key is not kept", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const a = { task: Echo.name, input: "a", options: { idempotencyKey: "ka", ...debounced("k", 1000) } }
      const [first] = yield* runs.startMany([a])
      yield* TestClock.adjust(Duration.millis(100))
      const [second] = yield* runs.startMany([{ task: Echo.name, input: "b", options: { idempotencyKey: "kb", ...debounced("k", 1000) } }])
      expect(second!.folded).toBe(true)
      expect(second!.run.id).toBe(first!.run.id)

      // A's retry: answered by its key, not folded (the run keeps b's input and its start).
      yield* TestClock.adjust(Duration.millis(100))
      const [retry] = yield* runs.startMany([a])
      expect(retry).toMatchObject({ created: false })
      expect(retry!.folded).toBeUndefined()
      expect(retry!.run.input).toBe("b")
      expect(DateTime.toEpochMillis(retry!.run.runAt)).toBe(1100)
      // The key with another input: refused, as without debounce.
      const conflict = yield* Effect.flip(runs.startMany([{ ...a, input: "other" }]))
      expect(conflict).toBeInstanceOf(IdempotencyConflict)

      // Once claimed: A's retry still answers the run; B's key was not kept, so B's retry folds into nothing and starts anew.
      yield* TestClock.adjust(Duration.millis(1000))
      yield* RunstreamTest.waitForRunCompletion(first!.run.id, patience)
      const [late] = yield* runs.startMany([a])
      expect(late!.run.id).toBe(first!.run.id)
      const [lateB] = yield* runs.startMany([{ task: Echo.name, input: "b", options: { idempotencyKey: "kb", ...debounced("k", 1000) } }])
      expect(lateB!.created).toBe(true)
      expect(lateB!.run.id).not.toBe(first!.run.id)
      expect(lateB!.run.idempotencyKey).toBe("kb")
    }).pipe(Effect.provide(underTestClock)))

  it.effect("a batch mixing debounced and plain starts: one transaction, folds within the batch", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const created = yield* runs.startMany([
        { task: Echo.name, input: "plain" },
        { task: Echo.name, input: "x1", options: debounced("x", 1000) },
        { task: Echo.name, input: "y", options: debounced("y", 1000) },
        { task: Echo.name, input: "x2", options: debounced("x", 1000) }
      ])
      expect(created.map((c) => [c.created, c.folded ?? false])).toEqual([[true, false], [true, false], [true, false], [false, true]])
      expect(created[3]!.run.id).toBe(created[1]!.run.id)
      expect(created[3]!.run.input).toBe("x2")
      expect(yield* tables).toEqual({ runs: 3, jobs: 3, keys: ["x", "y"] })

      // A refused start in such a batch writes nothing.
      const refused = yield* Effect.flip(runs.startMany([
        { task: Echo.name, input: "z", options: debounced("z", 1000) },
        { task: Echo.name, input: "bad", options: { debounce: { key: "z", delayMs: -1 } } }
      ]))
      expect(refused._tag).toBe("InvalidInput")
      expect(yield* tables).toEqual({ runs: 3, jobs: 3, keys: ["x", "y"] })
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Echo], workers: false }))))
})
