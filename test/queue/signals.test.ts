/**
 * Signals (`ctx.waitForSignal`, `Runs.signal`, issue 20): a run waits for a
 * named signal without a worker, is woken when it comes, keeps one sent
 * before it waits, times out with a typed failure its body handles, and a
 * signal that races the attempt's waiting end is not lost. Side effects are
 * counted in memory, outside the database.
 */
import { describe, expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Context, Deferred, Effect, Exit, Layer, Option, Schedule, Schema, Scope, Stream, TestClock } from "effect"
import type { RunId } from "../../src/domain/Ids.ts"
import { type RunEvent, signalReceivedType, signalTimedOutType, signalWaitingType } from "../../src/domain/RunEvent.ts"
import { Runs } from "../../src/Runs.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import {
  Effects,
  fastWorkers,
  logOf,
  patience,
  programOn,
  rowCounts,
  sideEffect,
  slowTimers,
  typesOf,
  waitForEvent,
  withWorkers
} from "./support.ts"

const Approval = Schema.Struct({ by: Schema.String, ok: Schema.Boolean })

/** A step, a wait for `approve` (no timeout), a step: one attempt allowed, which waits must not use up. */
const Approve = Task.make("test.signal.approve", {
  input: Schema.Null,
  output: Schema.Struct({ approval: Approval, before: Schema.Int, after: Schema.Int }),
  retry: { maxAttempts: 1 },
  signals: { approve: Approval },
  run: (_, ctx) =>
    Effect.gen(function*() {
      const before = yield* ctx.step("before", sideEffect(ctx.runId, "before"), { output: Schema.Int })
      yield* sideEffect(ctx.runId, "outside")
      const approval = yield* ctx.waitForSignal("approve", Approval)
      const after = yield* ctx.step("after", sideEffect(ctx.runId, "after"), { output: Schema.Int })
      return { approval, before, after }
    })
})

/**
 * Waits an hour for `approve`, handles its timeout, then sleeps a minute (so
 * that a late signal can come to a live run) and says what the wait gave.
 */
const Deadline = Task.make("test.signal.deadline", {
  input: Schema.Null,
  output: Schema.String,
  retry: { maxAttempts: 1 },
  signals: { approve: Approval },
  run: (_, ctx) =>
    Effect.gen(function*() {
      const answer = yield* ctx.waitForSignal("approve", Approval, { timeout: "1 hour" }).pipe(
        Effect.map((approval) => `approved by ${approval.by}`),
        Effect.catchTag("SignalTimeout", (timeout) => Effect.succeed(`timed out: ${timeout.name}`))
      )
      yield* ctx.sleep("linger", "1 minute")
      return answer
    })
})

/** Holds the test's gate: a body's finalizer waits on it. */
class Gate extends Context.Tag("test/queue/signals/Gate")<Gate, Deferred.Deferred<void>>() {}

/**
 * Waits for `go`; the finalizer run by the suspension waits for the test's
 * gate, so the test decides when the attempt's waiting end is recorded.
 */
const Held = Task.make("test.signal.held", {
  input: Schema.Null,
  output: Schema.Int,
  signals: { go: Schema.Int },
  run: (_, ctx) =>
    Effect.flatMap(Gate, (gate) =>
      ctx.waitForSignal("go", Schema.Int).pipe(
        Effect.onInterrupt(() => Deferred.await(gate))
      ))
})

/** Waits for a signal it does not declare: fails at once, for good. */
const Undeclared = Task.make("test.signal.undeclared", {
  input: Schema.Null,
  output: Schema.Null,
  run: (_, ctx) => Effect.as(ctx.waitForSignal("surprise", Schema.Null), null)
})

/** Waits for `a` and `b` together: either wakes the run, the replay waits for the other. */
const Both = Task.make("test.signal.both", {
  input: Schema.Null,
  output: Schema.Int,
  signals: { a: Schema.Int, b: Schema.Int },
  run: (_, ctx) =>
    Effect.map(
      Effect.all([ctx.waitForSignal("a", Schema.Int), ctx.waitForSignal("b", Schema.Int)], { concurrency: "unbounded" }),
      ([a, b]) => a * 10 + b
    )
})

const tasks = [Approve, Deadline, Held, Undeclared, Both] as const

const program = (workers: Parameters<typeof RunstreamTest.layer>[0]["workers"] = fastWorkers) =>
  RunstreamTest.layer({ tasks, workers, reclaimInterval: "1 minute" }).pipe(
    Layer.provideMerge(Layer.sync(Effects, () => new Map())),
    Layer.provideMerge(Layer.effect(Gate, Deferred.make<void>()))
  )

/** The log is numbered 1..n without a gap. */
const expectContiguous = (log: ReadonlyArray<RunEvent>) => expect(log.map((event) => event.seq)).toEqual(log.map((_, i) => i + 1))

/** The run's kept signals. */
const signalsOf = (runId: RunId) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ name: string; data: unknown }>`
    SELECT name, data FROM runstream_signals WHERE run_id = ${runId} ORDER BY name`)

/** The job's row as a signal and a waiting end see it; `run_at` is the number Infinity for 'infinity'. */
const jobRow = (runId: RunId) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ run_at: Date | number; locked_by: string | null; waiting_for: string | null; signalled: boolean }>`
        SELECT run_at, locked_by, waiting_for, signalled FROM runstream_jobs WHERE run_id = ${runId}`,
      (rows) => Option.fromNullable(rows[0])
    ))

describe("ctx.waitForSignal", () => {
  it.live("a signal sent while the run waits wakes it: the data is returned, steps before it are not run again, no attempt used up", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const effects = yield* Effects
      const run = yield* runs.start(Approve, null)
      yield* waitForEvent(run.id, "run.waiting")
      const waiting = yield* runs.get(run.id)
      expect(waiting.status).toBe("waiting")
      expect(waiting.attempt).toBe(0)
      // No deadline: only the signal makes the job due.
      const job = Option.getOrThrow(yield* jobRow(run.id))
      expect(job).toMatchObject({ run_at: Infinity, locked_by: null, waiting_for: "signal:approve", signalled: false })

      const sent = yield* runs.signal(run.id, "approve", { by: "ada", ok: true })
      expect(sent).toEqual({ runId: run.id, name: "approve", created: true })
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.attempt).toBe(1)
      expect(done.output).toEqual({ approval: { by: "ada", ok: true }, before: 1, after: 1 })
      const ran = (step: string) => effects.get(`${run.id}/${step}`) ?? 0
      expect([ran("before"), ran("after"), ran("outside")]).toEqual([1, 1, 2])

      const log = yield* logOf(run.id)
      expectContiguous(log)
      expect(typesOf(log)).toEqual([
        "run.queued",
        "run.started",
        "step.completed",
        signalWaitingType,
        "run.waiting",
        "run.started",
        signalReceivedType,
        "step.completed",
        "run.succeeded"
      ])
      expect(log[3]!.data).toEqual({ name: "approve", position: 1, until: null })
      expect(log[4]!.data).toEqual({ attempt: 1, until: null, waitingFor: "signal:approve" })
      expect(log[6]!.data).toEqual({ name: "approve", position: 1, data: { by: "ada", ok: true } })
    }).pipe(Effect.provide(program())))

  it.live("a signal sent before the run waits is kept: the wait returns it at once, without a wait", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      // No workers yet: the run is queued when the signal comes.
      const run = yield* runs.start(Approve, null)
      expect(yield* runs.signal(run.id, "approve", { by: "early", ok: true })).toMatchObject({ created: true })
      // A second one of the name changes nothing.
      expect(yield* runs.signal(run.id, "approve", { by: "late", ok: false })).toMatchObject({ created: false })
      expect(yield* signalsOf(run.id)).toEqual([{ name: "approve", data: { by: "early", ok: true } }])
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience).pipe(withWorkers())
      expect(done.status).toBe("succeeded")
      expect(done.output).toMatchObject({ approval: { by: "early", ok: true } })
      const log = yield* logOf(run.id)
      expectContiguous(log)
      expect(typesOf(log)).toEqual(["run.queued", "run.started", "step.completed", signalReceivedType, "step.completed", "run.succeeded"])
    }).pipe(Effect.provide(program(false))))

  it.effect("under TestClock, past its timeout the wait fails with SignalTimeout, which the body handles; a signal that comes later is ignored by the replay", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const startedAt = yield* TestClock.currentTimeMillis
      const run = yield* runs.start(Deadline, null)
      yield* waitForEvent(run.id, "run.waiting")
      const job = Option.getOrThrow(yield* jobRow(run.id))
      expect(job.run_at).toEqual(new Date(startedAt + 3_600_000))
      expect(job.waiting_for).toBe("signal:approve")

      yield* TestClock.adjust("1 hour")
      // The replay at the deadline journals the timeout, handles it, and sleeps a minute.
      yield* waitForEvent(run.id, signalTimedOutType)
      yield* waitForEvent(run.id, "sleep.started")
      // Too late: kept (the run is not finished), but the journal has decided.
      expect(yield* runs.signal(run.id, "approve", { by: "late", ok: true })).toMatchObject({ created: true })
      yield* TestClock.adjust("1 minute")
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("succeeded")
      expect(done.output).toBe("timed out: approve")
      const log = yield* logOf(run.id)
      expectContiguous(log)
      expect(typesOf(log).filter((type) => type.startsWith("signal."))).toEqual([signalWaitingType, signalTimedOutType])
      expect(log.find((event) => event.type === signalWaitingType)!.data).toEqual({
        name: "approve",
        position: 0,
        until: new Date(startedAt + 3_600_000).toISOString()
      })
    }).pipe(Effect.provide(program({ concurrency: 4, pollInterval: "1 minute", lease: "1 minute" }).pipe(Layer.provide(slowTimers)))), 150_000)

  it.live("a finished run refuses a signal (RunAlreadyFinished); bad data, an undeclared name and a bad name are refused; nothing is written", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Approve, null)
      yield* waitForEvent(run.id, "run.waiting")
      const before = yield* rowCounts
      const refused = (name: string, data: unknown) => Effect.flip(runs.signal(run.id, name, data))
      const bad = yield* refused("approve", { by: 1, ok: "yes" })
      expect(bad._tag).toBe("InvalidInput")
      expect(bad.message).toContain("the data of signal 'approve' is invalid")
      expect(bad._tag === "InvalidInput" && bad.issues?.map((issue) => issue.path)).toEqual([["by"], ["ok"]])
      expect((yield* refused("reject", null)).message).toBe("task 'test.signal.approve' declares no signal 'reject'")
      expect((yield* refused("no/slash", null))._tag).toBe("InvalidInput")
      expect((yield* refused("", null))._tag).toBe("InvalidInput")
      // Data the run's log could not take as its signal.received event (RUNSTREAM_MAX_EVENT_BYTES, 64 KiB).
      expect(yield* refused("approve", { by: "x".repeat(70_000), ok: true })).toMatchObject({ _tag: "PayloadTooLarge" })
      expect((yield* Effect.flip(runs.signal("00000000-0000-7000-8000-000000000000" as RunId, "approve", null)))._tag).toBe("RunNotFound")
      expect(yield* signalsOf(run.id)).toEqual([])
      expect(yield* rowCounts).toEqual(before)
      expect((yield* runs.get(run.id)).status).toBe("waiting")

      yield* runs.cancel(run.id)
      const finished = yield* refused("approve", { by: "ada", ok: true })
      expect(finished).toMatchObject({ _tag: "RunAlreadyFinished", status: "cancelled" })
      expect(yield* signalsOf(run.id)).toEqual([])
    }).pipe(Effect.provide(program())))

  it.live("a run that waits for a signal is cancelled at once", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Approve, null)
      yield* waitForEvent(run.id, "run.waiting")
      const cancelled = yield* runs.cancel(run.id)
      expect(cancelled.status).toBe("cancelled")
      expect(yield* jobRow(run.id)).toEqual(Option.none())
      expect(typesOf(yield* logOf(run.id)).slice(-2)).toEqual(["run.waiting", "run.cancelled"])
    }).pipe(Effect.provide(program())))

  it.live("two signals at once to a waiting run: one is kept, the run resumes once", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Approve, null)
      yield* waitForEvent(run.id, "run.waiting")
      const sent = yield* Effect.all([
        runs.signal(run.id, "approve", { by: "one", ok: true }),
        runs.signal(run.id, "approve", { by: "two", ok: true })
      ], { concurrency: "unbounded" })
      expect(sent.map((s) => s.created).sort()).toEqual([false, true])
      const kept = sent.find((s) => s.created)!
      const by = kept === sent[0] ? "one" : "two"
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.output).toMatchObject({ approval: { by } })
      const log = yield* logOf(run.id)
      expectContiguous(log)
      expect(typesOf(log).filter((type) => type === "run.started")).toHaveLength(2)
      expect(typesOf(log).filter((type) => type === signalReceivedType)).toHaveLength(1)
    }).pipe(Effect.provide(program())))

  it.live("waits run together: the signal the run waits for wakes it, and the replay waits for the other", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Both, null)
      const first = yield* waitForEvent(run.id, "run.waiting")
      // The first wait to suspend names the run's wait and journaled it. (The other may
      // have been cut short by the suspension before journaling its own: then its signal
      // would be kept, not wake the run, and the replay would return it.)
      const named = (first.data as { waitingFor: string }).waitingFor === "signal:a" ? "a" : "b"
      const other = named === "a" ? "b" : "a"
      yield* runs.signal(run.id, named, 2)
      // Woken: the replay receives it, and waits again for the other.
      yield* runs.events(run.id).pipe(
        Stream.filter((event) => event.type === "run.waiting"),
        Stream.take(2),
        Stream.runDrain,
        Effect.timeoutFail({ duration: patience, onTimeout: () => new Error("not woken by the signal it waits for") })
      )
      yield* runs.signal(run.id, other, 3)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.output).toBe(named === "a" ? 23 : 32)
      const log = yield* logOf(run.id)
      expectContiguous(log)
      expect(typesOf(log).filter((type) => type === "run.waiting")).toHaveLength(2)
      expect(typesOf(log).filter((type) => type === signalReceivedType)).toHaveLength(2)
    }).pipe(Effect.provide(program())))

  it.live("a signal committed while the attempt's waiting end waits for the job's lock wakes the run at once", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const sql = yield* SqlClient.SqlClient
      const gate = yield* Gate
      const run = yield* runs.start(Held, null)
      // The attempt journaled its wait and is held in its finalizer: its end is not recorded yet.
      yield* waitForEvent(run.id, signalWaitingType)
      yield* Effect.gen(function*() {
        // The signal's transaction takes the job's row lock and writes; it commits only
        // once the waiting end's statement (taken after this transaction began) waits for that lock.
        const sent = yield* runs.signal(run.id, "go", 7)
        expect(sent.created).toBe(true)
        yield* Deferred.succeed(gate, undefined)
        yield* sql<{ n: number }>`
          SELECT pg_stat_clear_snapshot(), (SELECT count(*)::integer FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              -- The ends' statement, by its input's columns (the text shown is cut at 1 KiB).
              AND query LIKE '%attempt integer, kind text%') AS n`.pipe(
          Effect.map((rows) => rows[0]!.n),
          Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (n) => n > 0 }),
          Effect.timeoutFail({ duration: patience, onTimeout: () => new Error("the waiting end never waited for the lock") })
        )
      }).pipe(sql.withTransaction)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, "20 seconds")
      expect(done.status).toBe("succeeded")
      expect(done.output).toBe(7)
      const log = yield* logOf(run.id)
      expectContiguous(log)
      expect(typesOf(log)).toEqual([
        "run.queued",
        "run.started",
        signalWaitingType,
        "run.waiting",
        "run.started",
        signalReceivedType,
        "run.succeeded"
      ])
    }).pipe(Effect.provide(program())))

  it.live("a program that does not have the run's task refuses its signals (UnknownTask): it cannot check them", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const owner = yield* Layer.buildWithScope(
        programOn({ tasks: [Approve], workers: false }).pipe(Layer.provide(Layer.sync(Effects, () => new Map()))),
        scope
      )
      // Another program on the same database, without the task (a server of other tasks).
      const other = yield* Layer.buildWithScope(programOn({ tasks: [Undeclared], workers: false }), scope)
      const run = yield* Effect.provide(Effect.flatMap(Runs, (runs) => runs.start(Approve, null)), owner)
      const refused = yield* Effect.provide(
        Effect.flip(Effect.flatMap(Runs, (runs) => runs.signal(run.id, "approve", { by: "ada", ok: true }))),
        other
      )
      expect(refused).toMatchObject({ _tag: "UnknownTask", task: Approve.name })
      expect(yield* Effect.provide(signalsOf(run.id), owner)).toEqual([])
      const sent = yield* Effect.provide(Effect.flatMap(Runs, (runs) => runs.signal(run.id, "approve", { by: "ada", ok: true })), owner)
      expect(sent.created).toBe(true)
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(TestDatabase.layerUrl)))

  it.live("a body that waits for a signal its task does not declare fails for good with SignalNotDeclared", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const run = yield* runs.start(Undeclared, null)
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.status).toBe("failed")
      expect(done.attempt).toBe(1)
      expect(done.error).toMatchObject({ tag: "SignalNotDeclared", retryable: false })
    }).pipe(Effect.provide(program())))
})
