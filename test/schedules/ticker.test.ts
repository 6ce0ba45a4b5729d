import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Cause, DateTime, Duration, Effect, Exit, Layer, Option, Schema, TestClock } from "effect"
import * as Database from "../../src/Database.ts"
import { Echo } from "../../src/demo/tasks.ts"
import * as RunSchedule from "../../src/schedules/RunSchedule.ts"
import { Schedules } from "../../src/schedules/Schedules.ts"
import * as Task from "../../src/Task.ts"
import * as Runstream from "../../src/Runstream.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"

/**
 * The schedule once no ticker holds it: a pass started by the program's own
 * fiber has committed (its row lock is waited for, not polled).
 */
const settled = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`SELECT 1 FROM runstream_schedules WHERE name = ${name} FOR UPDATE`.pipe(sql.withTransaction)
    return yield* Effect.flatMap(Schedules, (schedules) => schedules.get(name))
  })

/** Moves the test clock to `iso`, then runs a tick pass (the fiber may run one too: either way, once). */
const tickAt = (iso: string) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(new Date(iso).getTime())
    yield* Effect.flatMap(Schedules, (schedules) => schedules.tickNow)
  })

const iso = (time: DateTime.DateTime | null) => time === null ? null : DateTime.formatIso(time)
const keysOf = (runs: ReadonlyArray<{ readonly run: { readonly idempotencyKey: string | null } }>) =>
  runs.map(({ run }) => run.idempotencyKey)

/**
 * A program without workers on a fresh database, its clock set first (the
 * first ticks are computed from it). Tests move the clock by seconds: each
 * timer the jump passes (the ticker's, the listener's probe every 5 seconds)
 * costs a round of real work.
 */
const programAt = <A, E, R>(start: string, schedules: ReadonlyArray<RunSchedule.RunSchedule>, body: Effect.Effect<A, E, R>) =>
  Effect.zipRight(
    TestClock.setTime(new Date(start).getTime()),
    body.pipe(Effect.provide(RunstreamTest.layer({
      tasks: [Echo],
      workers: false,
      schedules,
      reclaimInterval: Duration.days(400),
      // The ticker sleeps until the next tick; no polls in between.
      schedulePoll: Duration.days(400)
    })))
  )

describe.concurrent("the ticker under TestClock", () => {
  it.effect("America/New_York, spring forward: 02:05 does not exist, the tick is at 03:05 EDT, once", () =>
    programAt(
      // Before 02:00 EST: a tick looked for from inside the gap (03:00-03:05 EDT) is the next day's.
      "2026-03-08T06:59:50Z",
      [RunSchedule.cron("ny-0205", "5 2 * * *", Echo, { day: "daily" }, { timezone: "America/New_York" })],
      Effect.gen(function*() {
        const first = yield* settled("ny-0205")
        expect(iso(first.schedule.nextTickAt)).toBe("2026-03-08T07:05:00.000Z")
        expect(first.schedule.source).toBe("code")

        yield* tickAt("2026-03-08T07:04:59.999Z")
        expect((yield* settled("ny-0205")).runs).toEqual([])

        yield* tickAt("2026-03-08T07:05:00Z")
        const ticked = yield* settled("ny-0205")
        expect(keysOf(ticked.runs)).toEqual(["schedule:ny-0205:2026-03-08T07:05:00.000Z"])
        expect(ticked.runs[0]!.run.input).toEqual({ day: "daily" })
        expect(iso(ticked.schedule.lastTickAt)).toBe("2026-03-08T07:05:00.000Z")
        expect(ticked.schedule.lastRunId).toBe(ticked.runs[0]!.run.id)
        expect(iso(ticked.schedule.nextTickAt)).toBe("2026-03-09T06:05:00.000Z") // 02:05 EDT
        expect(ticked.schedule.skippedTicks).toBe(0)
      })
    ))

  it.effect("America/New_York, fall back: 01:30 happens twice and ticks once, the first time", () =>
    programAt(
      "2026-11-01T05:29:50Z",
      [RunSchedule.cron("ny-0130", "30 1 * * *", Echo, null, { timezone: "America/New_York" })],
      Effect.gen(function*() {
        yield* tickAt("2026-11-01T05:30:00Z") // 01:30 EDT
        const ticked = yield* settled("ny-0130")
        expect(keysOf(ticked.runs)).toEqual(["schedule:ny-0130:2026-11-01T05:30:00.000Z"])
        // Not 06:30Z the same day (01:30 EST, the second 01:30).
        expect(iso(ticked.schedule.nextTickAt)).toBe("2026-11-02T06:30:00.000Z")
      })
    ))

  it.effect("Europe/Berlin, spring forward: 02:05 ticks at 03:05 CEST", () =>
    programAt(
      "2026-03-29T00:59:50Z",
      [RunSchedule.cron("berlin-0205", "5 2 * * *", Echo, null, { timezone: "Europe/Berlin" })],
      Effect.gen(function*() {
        expect(iso((yield* settled("berlin-0205")).schedule.nextTickAt)).toBe("2026-03-29T01:05:00.000Z")
        yield* tickAt("2026-03-29T01:05:00Z")
        const ticked = yield* settled("berlin-0205")
        expect(keysOf(ticked.runs)).toEqual(["schedule:berlin-0205:2026-03-29T01:05:00.000Z"])
        expect(iso(ticked.schedule.nextTickAt)).toBe("2026-03-30T00:05:00.000Z") // 02:05 CEST
      })
    ))

  it.effect("Europe/Berlin, fall back: 02:30 ticks once though it happens twice", () =>
    programAt(
      "2026-10-25T00:29:50Z",
      [RunSchedule.cron("berlin-0230", "30 2 * * *", Echo, null, { timezone: "Europe/Berlin" })],
      Effect.gen(function*() {
        yield* tickAt("2026-10-25T00:30:00Z") // 02:30 CEST
        const ticked = yield* settled("berlin-0230")
        expect(keysOf(ticked.runs)).toEqual(["schedule:berlin-0230:2026-10-25T00:30:00.000Z"])
        expect(iso(ticked.schedule.nextTickAt)).toBe("2026-10-26T01:30:00.000Z") // not 01:30Z today (02:30 CET)
      })
    ))

  it.effect("a seconds field and an every schedule tick on their seconds", () =>
    programAt(
      "2026-01-01T00:00:00Z",
      [
        RunSchedule.cron("quarter-minute", "*/15 * * * * *", Echo, 1),
        RunSchedule.every("every-20s", "20 seconds", Echo, 2)
      ],
      Effect.gen(function*() {
        for (const second of [15, 20, 30, 40]) yield* tickAt(`2026-01-01T00:00:${second}Z`)
        expect(keysOf((yield* settled("quarter-minute")).runs)).toEqual([
          "schedule:quarter-minute:2026-01-01T00:00:30.000Z",
          "schedule:quarter-minute:2026-01-01T00:00:15.000Z"
        ])
        expect(keysOf((yield* settled("every-20s")).runs)).toEqual([
          "schedule:every-20s:2026-01-01T00:00:40.000Z",
          "schedule:every-20s:2026-01-01T00:00:20.000Z"
        ])
      })
    ))

  it.effect("missed ticks: latest starts the latest once, none starts none, all starts each; the rest are counted", () =>
    programAt(
      "2026-01-01T05:30:00Z",
      [
        RunSchedule.cron("latest", "0 * * * *", Echo, "l"),
        RunSchedule.cron("none", "0 * * * *", Echo, "n", { catchUp: "none" }),
        RunSchedule.cron("all", "0 * * * *", Echo, "a", { catchUp: "all" })
      ],
      Effect.gen(function*() {
        // Everything was down since 00:30: the ticks of 01:00 to 05:00 were missed.
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE runstream_schedules SET next_tick_at = '2026-01-01T01:00:00Z'`
        yield* Effect.flatMap(Schedules, (schedules) => schedules.tickNow)
        const latest = yield* settled("latest")
        expect(keysOf(latest.runs)).toEqual(["schedule:latest:2026-01-01T05:00:00.000Z"])
        expect(latest.schedule.skippedTicks).toBe(4)
        const none = yield* settled("none")
        expect(none.runs).toEqual([])
        expect(none.schedule.skippedTicks).toBe(5)
        expect(none.schedule.lastTickAt).toBeNull()
        const all = yield* settled("all")
        expect(keysOf(all.runs)).toEqual([5, 4, 3, 2, 1].map((h) => `schedule:all:2026-01-01T0${h}:00:00.000Z`))
        expect(all.schedule.skippedTicks).toBe(0)
        for (const { schedule } of [latest, none, all]) expect(iso(schedule.nextTickAt)).toBe("2026-01-01T06:00:00.000Z")
      })
    ))

  it.effect("paused, no tick starts; resumed, it ticks from the next tick after now", () =>
    programAt(
      "2026-01-01T00:00:00Z",
      [RunSchedule.every("beat", "10 seconds", Echo, null)],
      Effect.gen(function*() {
        const schedules = yield* Schedules
        expect((yield* schedules.pause("beat")).paused).toBe(true)
        yield* tickAt("2026-01-01T00:00:35Z")
        expect((yield* settled("beat")).runs).toEqual([])
        const resumed = yield* schedules.resume("beat")
        expect(resumed.paused).toBe(false)
        expect(iso(resumed.nextTickAt)).toBe("2026-01-01T00:00:40.000Z")
        expect(resumed.skippedTicks).toBe(0)
        yield* tickAt("2026-01-01T00:00:40Z")
        expect(keysOf((yield* settled("beat")).runs)).toEqual(["schedule:beat:2026-01-01T00:00:40.000Z"])
      })
    ))
})

describe.concurrent("declared schedules", () => {
  const Typed = Task.make("test.typed", {
    input: Schema.Struct({ to: Schema.Int }),
    output: Schema.Void,
    run: () => Effect.void
  })

  const startWith = (schedules: ReadonlyArray<RunSchedule.RunSchedule>) =>
    Effect.exit(Effect.provide(Effect.void, RunstreamTest.layer({ tasks: [Echo, Typed], workers: false, schedules })))

  const refusalOf = (exit: Exit.Exit<unknown, unknown>) =>
    Option.match(Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none(), {
      onNone: () => "started",
      onSome: (error) => `${(error as { _tag: string })._tag}: ${(error as Error).message}`
    })

  it.effect("a bad definition fails the program's start with InvalidSchedule naming the schedule and the problem", () =>
    Effect.gen(function*() {
      const Unregistered = Task.make("test.unregistered", { input: Schema.Unknown, output: Schema.Unknown, run: Effect.succeed })
      expect(refusalOf(yield* startWith([RunSchedule.cron("c", "0 3 * *", Echo, null)])))
        .toMatch(/^InvalidSchedule: schedule 'c': invalid cron expression '0 3 \* \*'/)
      expect(refusalOf(yield* startWith([RunSchedule.cron("z", "0 3 * * *", Echo, null, { timezone: "Europe/Atlantis" })])))
        .toMatch(/^InvalidSchedule: schedule 'z': unknown time zone 'Europe\/Atlantis'/)
      expect(refusalOf(yield* startWith([RunSchedule.every("e", "200 millis", Echo, null)])))
        .toMatch(/^InvalidSchedule: schedule 'e': every '200 millis' must be .* from 1 second/)
      expect(refusalOf(yield* startWith([RunSchedule.every("u", "1 minute", Unregistered, null)])))
        .toMatch(/^InvalidSchedule: schedule 'u': task 'test.unregistered' is not registered/)
      expect(refusalOf(yield* startWith([RunSchedule.every("i", "1 minute", Typed, { to: 1.5 } as any)])))
        .toMatch(/^InvalidSchedule: schedule 'i': input of task 'test.typed' is invalid: to: Expected an integer/)
      expect(refusalOf(yield* startWith([RunSchedule.every("bad name", "1 minute", Echo, null)])))
        .toMatch(/^InvalidSchedule: a schedule name is/)
      expect(refusalOf(yield* startWith([RunSchedule.every("twice", "1 minute", Echo, 1), RunSchedule.every("twice", "2 minutes", Echo, 2)])))
        .toMatch(/^InvalidSchedule: schedule 'twice' is declared twice/)
      expect(refusalOf(yield* startWith([RunSchedule.every("fine", "1 minute", Typed, { to: 1 })]))).toBe("started")
    }))
})

describe.concurrent("declared schedules across restarts", () => {
  /** A program without workers on the database in context (`TestDatabase.layerUrl`), started at `start` on the test clock. */
  const startAt = <A, E, R>(start: string, schedules: ReadonlyArray<RunSchedule.RunSchedule>, body: Effect.Effect<A, E, R>) =>
    Effect.zipRight(
      TestClock.setTime(new Date(start).getTime()),
      body.pipe(Effect.provide(
        Runstream.layerRuntime({ schedules, reclaimInterval: Duration.days(400), schedulePoll: Duration.days(400) }).pipe(
          Layer.provideMerge(Task.layerRegistry(Echo)),
          Layer.provideMerge(Database.layerClient({ maxConnections: 4, connectTimeout: TestDatabase.connectTimeout }))
        )
      ))
    )

  it.effect("a restart with the same timing keeps the next tick (none lost, none repeated); a new timing ticks from now", () =>
    Effect.gen(function*() {
      const hourly = RunSchedule.cron("report", "0 * * * *", Echo, 1)
      // First start at 00:30: next tick 01:00.
      yield* startAt("2026-01-01T00:30:00Z", [hourly], settled("report"))
      // Down from 00:40 to 03:10: the restart keeps 01:00 due, and the missed ticks are caught up (latest).
      const restarted = yield* startAt(
        "2026-01-01T03:10:00Z",
        [RunSchedule.cron("report", "0 * * * *", Echo, 2)],
        // (The program's own ticker may have run this pass already: either way, once.)
        Effect.zipRight(Effect.flatMap(Schedules, (schedules) => schedules.tickNow), settled("report"))
      )
      // Had the restart reset the next tick to 04:00, nothing would have started.
      expect(keysOf(restarted.runs)).toEqual(["schedule:report:2026-01-01T03:00:00.000Z"])
      expect(restarted.runs[0]!.run.input).toBe(2)
      expect(restarted.schedule.input).toBe(2)
      expect(restarted.schedule.skippedTicks).toBe(2)
      expect(iso(restarted.schedule.nextTickAt)).toBe("2026-01-01T04:00:00.000Z")
      // A new timing: the next tick after now, not the old one.
      const retimed = yield* startAt(
        "2026-01-01T03:20:00Z",
        [RunSchedule.cron("report", "*/15 * * * *", Echo, 2)],
        settled("report")
      )
      expect(iso(retimed.schedule.nextTickAt)).toBe("2026-01-01T03:30:00.000Z")
    }).pipe(Effect.provide(TestDatabase.layerUrl)))

  it.effect("code declaring a name the API created takes it over; a pause survives the restart", () =>
    Effect.gen(function*() {
      yield* startAt("2026-01-01T00:00:00Z", [], Effect.gen(function*() {
        const schedules = yield* Schedules
        yield* schedules.create({ name: "shared", task: "demo.echo", input: "api", every: "1 minute" })
        yield* schedules.pause("shared")
      }))
      const taken = yield* startAt("2026-01-01T00:05:00Z", [RunSchedule.every("shared", "1 minute", Echo, "code")], settled("shared"))
      expect(taken.schedule).toMatchObject({ source: "code", input: "code", paused: true })
    }).pipe(Effect.provide(TestDatabase.layerUrl)))

  it.effect("a tick whose start is refused (its stored input no longer fits the task) is skipped, with the reason kept", () =>
    programAt(
      "2026-01-01T00:00:00Z",
      [],
      Effect.gen(function*() {
        const schedules = yield* Schedules
        yield* schedules.create({ name: "stale", task: "demo.echo", input: { ok: true }, every: "10 seconds" })
        // As if the task's schema had changed: the input is more deeply nested than any input may be.
        const sql = yield* SqlClient.SqlClient
        const deep = "[".repeat(1001) + "]".repeat(1001)
        yield* sql`UPDATE runstream_schedules SET input = ${deep}::jsonb WHERE name = 'stale'`
        yield* tickAt("2026-01-01T00:00:10Z")
        const after = yield* settled("stale")
        expect(after.runs).toEqual([])
        expect(after.schedule.skippedTicks).toBe(1)
        expect(after.schedule.lastError).toMatch(/input/)
        expect(iso(after.schedule.nextTickAt)).toBe("2026-01-01T00:00:20.000Z")
      })
    ))
})
