import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Schedule, Schema, Scope, TestClock } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import { RunNotFound } from "../../src/domain/Errors.ts"
import { type RunId, uuidv7 } from "../../src/domain/Ids.ts"
import type { RunStatus } from "../../src/domain/Run.ts"
import * as Retention from "../../src/Retention.ts"
import { type FeedBatch, RunFollowers } from "../../src/RunFollowers.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"

const day = 24 * 60 * 60 * 1000

/** A run as the test writes it straight into the tables: created and finished at test-clock times. */
interface Seed {
  readonly task?: string
  readonly status: RunStatus
  readonly createdAt: number
  readonly finishedAt?: number
  readonly events?: number
}

/** Writes runs (with `events` events each, and a job when waiting or running); returns their ids in order. */
const seed = (runs: ReadonlyArray<Seed>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = runs.map((run) => ({
      id: uuidv7(run.createdAt),
      task: run.task ?? Echo.name,
      status: run.status,
      created_at: new Date(run.createdAt),
      finished_at: run.finishedAt === undefined ? null : new Date(run.finishedAt),
      last_seq: run.events ?? 2
    }))
    const input = JSON.stringify(rows)
    yield* sql`
      WITH input AS (
        SELECT * FROM jsonb_to_recordset(${input}::jsonb)
          AS t(id uuid, task text, status text, created_at timestamptz, finished_at timestamptz, last_seq integer)
      ), runs AS (
        INSERT INTO runstream_runs (id, task, queue, status, input, max_attempts, created_at, run_at, finished_at, last_seq)
        SELECT id, task, 'default', status, '"x"', 1, created_at, created_at, finished_at, last_seq FROM input
      ), events AS (
        INSERT INTO runstream_events (run_id, seq, type, data, at)
        SELECT id, g, 'e', NULL, created_at FROM input, generate_series(1, last_seq) AS g
      )
      INSERT INTO runstream_jobs (run_id, task, queue, priority, run_at, locked_by, locked_until, attempt)
      SELECT id, task, 'default', 0, created_at, CASE WHEN status = 'running' THEN 'w' END,
        CASE WHEN status = 'running' THEN created_at + interval '1000 days' END, 0
      FROM input WHERE status IN ('queued', 'running')`
    return rows.map((row) => row.id as RunId)
  })

/** The runs left and their events, by id. */
const left = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ id: RunId; events: number }>`
    SELECT r.id, (SELECT count(*)::integer FROM runstream_events e WHERE e.run_id = r.id) AS events
    FROM runstream_runs r ORDER BY r.id`
  const orphans = yield* sql<{ n: number }>`
    SELECT count(*)::integer AS n FROM runstream_events e WHERE NOT EXISTS (SELECT 1 FROM runstream_runs r WHERE r.id = e.run_id)`
  expect(orphans[0]!.n).toBe(0)
  return new Map(rows.map((row) => [row.id, row.events]))
})

const Kept = Task.make("test.kept", { input: Schema.Unknown, output: Schema.Unknown, retention: "off", run: Effect.succeed })
const Brief = Task.make("test.brief", { input: Schema.Unknown, output: Schema.Unknown, retention: "1 day", run: Effect.succeed })

/** A program without workers on a fresh database, and a retention on it that deletes only when asked. */
const manual = (retention: Option.Option<Duration.DurationInput> = Option.some("7 days"), overrides = false) =>
  Layer.provideMerge(
    Retention.layer({ retention, interval: Duration.infinity }),
    overrides
      ? RunstreamTest.layer({ tasks: [Echo, Kept, Brief], workers: false })
      : RunstreamTest.layer({ tasks: [Echo], workers: false })
  )

/**
 * Runs `self` on `layer` with the test clock at `now`, set before the program
 * starts: moving it by days later would run every periodic fiber of the
 * program (relay, reclaim, polls) for each of their ticks in between.
 */
const at = <A, E, ROut, E2>(now: number, layer: Layer.Layer<ROut, E2>) => (self: Effect.Effect<A, E, ROut>) =>
  Effect.zipRight(TestClock.setTime(now), Effect.provide(self, layer))

const now = 30 * day

describe.concurrent("retention", () => {
  it.effect("deletes finished runs older than the retention and their events, and nothing else", () =>
    Effect.gen(function*() {
      const retention = yield* Retention.Retention
      const [succeeded, failed, cancelled, queued, running, lateFinish, recent] = yield* seed([
        { status: "succeeded", createdAt: now - 20 * day, finishedAt: now - 20 * day, events: 3 },
        { status: "failed", createdAt: now - 19 * day, finishedAt: now - 19 * day, events: 4 },
        { status: "cancelled", createdAt: now - 18 * day, finishedAt: now - 8 * day, events: 2 },
        { status: "queued", createdAt: now - 17 * day, events: 1 },
        { status: "running", createdAt: now - 16 * day, events: 2 },
        // Created long ago, finished lately: kept until its retention from its end, a second from now.
        { status: "succeeded", createdAt: now - 15 * day, finishedAt: now - 7 * day + 1000, events: 5 },
        { status: "succeeded", createdAt: now - 2 * day, finishedAt: now - 2 * day, events: 3 }
      ])

      expect(yield* retention.deleteNow).toEqual({ held: true, runs: 3, events: 9, batches: 1 })
      expect(yield* left).toEqual(new Map([[queued!, 1], [running!, 2], [lateFinish!, 5], [recent!, 3]]))
      for (const id of [succeeded!, failed!, cancelled!]) {
        expect(yield* Effect.flip(Effect.flatMap(Runs, (runs) => runs.get(id)))).toBeInstanceOf(RunNotFound)
      }
      // Nothing more until its time: the late finisher, behind the walk's cursor, is looked at again.
      expect((yield* retention.deleteNow).runs).toBe(0)
      yield* TestClock.adjust(Duration.millis(1001))
      expect((yield* retention.deleteNow).runs).toBe(1)
      expect([...(yield* left).keys()]).toEqual([queued, running, recent])
    }).pipe(at(now, manual())))

  it.effect("a task's own retention: shorter, or off", () =>
    Effect.gen(function*() {
      const retention = yield* Retention.Retention
      const [kept, plain, brief] = yield* seed([
        { task: Kept.name, status: "succeeded", createdAt: now - 29 * day, finishedAt: now - 29 * day },
        { status: "succeeded", createdAt: now - 8 * day, finishedAt: now - 7 * day + 500 },
        { task: Brief.name, status: "succeeded", createdAt: now - 3 * day, finishedAt: now - 3 * day },
        { task: Brief.name, status: "succeeded", createdAt: now - 3 * day + 1, finishedAt: now - 1 * day + 500 }
      ])
      expect((yield* retention.deleteNow).runs).toBe(1)
      expect((yield* left).has(brief!)).toBe(false)
      expect((yield* left).size).toBe(3)
      yield* TestClock.adjust(Duration.millis(501))
      expect((yield* retention.deleteNow).runs).toBe(2)
      expect([...(yield* left).keys()]).toEqual([kept])
      expect(plain).toBeDefined()
    }).pipe(at(now, manual(Option.some("7 days"), true))))

  it.effect("off: nothing is deleted", () =>
    Effect.gen(function*() {
      const retention = yield* Retention.Retention
      yield* seed([{ status: "succeeded", createdAt: day, finishedAt: day }])
      expect(yield* retention.deleteNow).toEqual({ held: true, runs: 0, events: 0, batches: 0 })
      expect((yield* left).size).toBe(1)
    }).pipe(at(now, manual(Option.none()))))

  it.effect("a backlog goes in bounded statements: at most 1,000 runs, and a budget of events, each", () =>
    Effect.gen(function*() {
      const retention = yield* Retention.Retention
      // 2,500 old runs, one of them with more events than a statement's budget.
      yield* seed(Array.from({ length: 2500 }, (_, i) => ({
        status: "succeeded" as const,
        createdAt: now - 20 * day + i,
        finishedAt: now - 20 * day + i,
        events: i === 1200 ? Retention.eventBudget + 10 : 1
      })))
      yield* seed([{ status: "queued", createdAt: now - 10 * day }])
      const result = yield* retention.deleteNow
      expect(result.runs).toBe(2500)
      expect(result.events).toBe(2499 + Retention.eventBudget + 10)
      // 1,000 + (200, cut before the big run) + (the big run alone) + ...: more than three statements.
      expect(result.batches).toBeGreaterThanOrEqual(4)
      expect((yield* left).size).toBe(1)
    }).pipe(at(now, manual())), { timeout: 60_000 })

  it.effect("one process at a time: the lease's holder deletes, others skip until it stops or its lease lapses", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      // Runs created one after another, as a walk meets them.
      let created = now - 20 * day
      const old = (n: number) =>
        seed(Array.from({ length: n }, () => ({ status: "succeeded" as const, createdAt: created++, finishedAt: now - 20 * day })))
      const instance = (scope: Scope.Scope) =>
        Retention.make({ retention: Option.some(Duration.days(7)), interval: Duration.infinity }).pipe(Scope.extend(scope))
      const scopeA = yield* Scope.make()
      const scopeB = yield* Scope.make()
      const a = yield* instance(scopeA)
      const b = yield* instance(scopeB)

      // Two passes at once over one backlog: one holds the lease and deletes it all.
      yield* old(3000)
      const both = yield* Effect.all([a.deleteNow, b.deleteNow], { concurrency: "unbounded" })
      expect(both.map((pass) => pass.held).sort()).toEqual([false, true])
      expect(both[0]!.runs + both[1]!.runs).toBe(3000)
      const [holder, other] = both[0]!.held ? [a, b] : [b, a]
      const [holderScope] = both[0]!.held ? [scopeA] : [scopeB]

      // The holder keeps its lease from pass to pass.
      yield* old(5)
      expect(yield* other.deleteNow).toEqual({ held: false, runs: 0, events: 0, batches: 0 })
      expect((yield* holder.deleteNow).runs).toBe(5)

      // Its lease lapses (a process that froze): the other takes over.
      yield* old(5)
      yield* sql`UPDATE runstream_leases SET until = ${new Date(now - 1)}`
      expect((yield* other.deleteNow).runs).toBe(5)
      expect((yield* holder.deleteNow).held).toBe(false)

      // The holder now (the other) stops, and gives its lease back at once.
      yield* old(5)
      const otherScope = holderScope === scopeA ? scopeB : scopeA
      yield* Scope.close(otherScope, Exit.void)
      expect((yield* holder.deleteNow).runs).toBe(5)
      yield* Scope.close(holderScope, Exit.void)
    }).pipe(at(now, RunstreamTest.layer({ tasks: [Echo], workers: false }))))

  it.live("the scheduled pass of a program with workers deletes old runs (real clock)", () =>
    Effect.gen(function*() {
      const now = Date.now()
      yield* seed([
        { status: "succeeded", createdAt: now - 20 * day, finishedAt: now - 20 * day },
        { status: "succeeded", createdAt: now - 60_000, finishedAt: now - 60_000 }
      ])
      // Waits on the database for the pass (it runs once a second).
      yield* left.pipe(
        Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (runs) => runs.size === 1 }),
        Effect.timeout("30 seconds")
      )
      expect((yield* left).size).toBe(1)
    }).pipe(Effect.provide(RunstreamTest.layer({
      tasks: [Echo],
      workers: { lease: "30 seconds" },
      retention: { retention: Option.some("7 days"), interval: "1 second" }
    }))))
})

describe("retention: definitions", () => {
  it.effect("RUNSTREAM_RETENTION: durations in bounds or off; anything else refused at start-up, naming the variable", () =>
    Effect.gen(function*() {
      const read = (value: string | undefined) =>
        Effect.either(Effect.withConfigProvider(
          Retention.RetentionConfig,
          ConfigProvider.fromMap(new Map(value === undefined ? [] : [["RUNSTREAM_RETENTION", value]]))
        ))
      const ok = (value: string | undefined) =>
        Effect.map(read(value), (either) => either._tag === "Right" ? Option.map(either.right.retention, Duration.toMillis) : "refused")
      expect(yield* ok(undefined)).toEqual(Option.some(7 * day))
      expect(yield* ok("12 hours")).toEqual(Option.some(12 * 60 * 60 * 1000))
      expect(yield* ok("off")).toEqual(Option.none())
      expect(yield* ok("0")).toEqual(Option.none())
      for (const bad of ["forever", "7", "-1 days", "30 seconds", "40000 days", ""]) {
        expect.soft(yield* ok(bad), bad).toBe("refused")
      }
      const interval = (value: string) =>
        Effect.either(Effect.withConfigProvider(
          Retention.RetentionConfig,
          ConfigProvider.fromMap(new Map([["RUNSTREAM_RETENTION_INTERVAL", value]]))
        ))
      expect((yield* interval("10 seconds"))._tag).toBe("Right")
      for (const bad of ["0 millis", "2 days", "often"]) {
        const either = yield* interval(bad)
        expect.soft(either._tag, bad).toBe("Left")
        expect.soft(String(either._tag === "Left" ? either.left : ""), bad).toContain("RUNSTREAM_RETENTION_INTERVAL")
      }
      const refused = yield* read("a week")
      expect(refused._tag).toBe("Left")
      expect(String(refused._tag === "Left" ? refused.left : "")).toContain("RUNSTREAM_RETENTION")
      expect(String(refused._tag === "Left" ? refused.left : "")).toContain("must be a duration")
    }))

  it.effect("a task's retention that is no retention stops the registry at start-up, naming the task", () =>
    Effect.gen(function*() {
      const Bad = Task.make("test.bad", {
        input: Schema.Unknown,
        output: Schema.Unknown,
        retention: "a while" as Duration.DurationInput,
        run: Effect.succeed
      })
      const exit = yield* Effect.exit(Layer.build(Task.layerRegistry(Bad)).pipe(Effect.scoped))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain("task 'test.bad': retention must be a duration")
    }))
})

describe.concurrent("retention and followers", () => {
  it.effect("a follower reading a run's log when it is deleted ends cleanly; a follower after gets RunNotFound", () =>
    Effect.gen(function*() {
      const followers = yield* RunFollowers
      const retention = yield* Retention.Retention
      const [runId] = yield* seed([{ status: "succeeded", createdAt: now - 20 * day, finishedAt: now - 20 * day, events: 6 }])

      // Pages of 2 events: the follower waits after its first page until the run is gone.
      const delivered: Array<number> = []
      const firstPage = yield* Deferred.make<void>()
      const deleted = yield* Deferred.make<void>()
      const follower = yield* Effect.fork(followers.follow(runId!, { after: 0 }, {
        offer: () => false,
        write: (batch: FeedBatch) =>
          Effect.gen(function*() {
            delivered.push(...batch.events.map((event) => event.seq))
            yield* Deferred.succeed(firstPage, undefined)
            yield* Deferred.await(deleted)
          })
      }))
      yield* Deferred.await(firstPage)
      expect((yield* retention.deleteNow).runs).toBe(1)
      yield* Deferred.succeed(deleted, undefined)
      // It ends, without error, with what it had read.
      yield* Fiber.join(follower)
      expect(delivered).toEqual([1, 2])
      const again = yield* Effect.flip(followers.follow(runId!, { after: 2 }, { offer: () => true, write: () => Effect.void }))
      expect(again).toBeInstanceOf(RunNotFound)
    }).pipe(at(now, manual().pipe(Layer.provide(Layer.setConfigProvider(
      ConfigProvider.fromMap(new Map([["RUNSTREAM_EVENT_PAGE_SIZE", "2"]])).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
    ))))))
})
