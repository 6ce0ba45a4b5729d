/**
 * Schedules over REST (issue 19): create, list, get, change, pause, resume,
 * delete; refusals with 400 and nothing written; code-declared schedules
 * owned by their code.
 */
import { HttpServer } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Mailbox, Queue, Stream } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import * as Server from "../../src/http/Server.ts"
import { Runs } from "../../src/Runs.ts"
import * as RunSchedule from "../../src/schedules/RunSchedule.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { BaseUrl, call, Gate, post, quiet, tasks } from "./support.ts"

const Declared = RunSchedule.every("code-owned", "1 hour", Echo, { from: "code" })

const program = Layer.effect(BaseUrl, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
  Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1" })),
  Layer.provideMerge(RunstreamTest.layer({ tasks, workers: false, schedules: [Declared] })),
  Layer.provide(Layer.effect(Gate, Queue.unbounded<void>())),
  Layer.provide(quiet)
)

const json = (method: string, path: string, body: unknown) =>
  call(path, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) })

const scheduleCount = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_schedules`, (rows) => rows[0]!.n))

/** Waits until no ticker holds the schedule (a pass in flight has committed). */
const settled = (name: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1 FROM runstream_schedules WHERE name = ${name} FOR UPDATE`.pipe(sql.withTransaction))

describe("HTTP API: schedules", () => {
  layer(program, { excludeTestServices: true })((it) => {
    it.effect("creates a cron schedule in a time zone, lists it and gets it", () =>
      Effect.gen(function*() {
        const created = yield* post("/v1/schedules", {
          name: "nightly-report",
          task: "demo.count",
          input: { to: 3 },
          cron: "0 3 * * *",
          timezone: "Europe/Berlin",
          options: { queue: "reports", priority: 5 }
        })
        expect(created.status).toBe(201)
        expect(created.body.schedule).toMatchObject({
          name: "nightly-report",
          task: "demo.count",
          input: { to: 3 },
          cron: "0 3 * * *",
          every: null,
          everyMs: null,
          timezone: "Europe/Berlin",
          catchUp: "latest",
          options: { queue: "reports", priority: 5 },
          source: "api",
          paused: false,
          lastTickAt: null,
          lastRunId: null,
          skippedTicks: 0,
          lastError: null
        })
        // 03:00 in Berlin is 01:00 or 02:00 UTC.
        expect(created.body.schedule.nextTickAt).toMatch(/T0[12]:00:00\.000Z$/)

        const got = yield* call("/v1/schedules/nightly-report")
        expect(got.status).toBe(200)
        expect(got.body.schedule).toEqual(created.body.schedule)
        expect(got.body.runs).toEqual([])

        const listed = yield* call("/v1/schedules?limit=1000")
        expect(listed.status).toBe(200)
        expect(listed.body.schedules.map((s: any) => s.name)).toEqual(expect.arrayContaining(["code-owned", "nightly-report"]))
        const page = yield* call("/v1/schedules?limit=1")
        expect(page.body.schedules.length).toBe(1)
        expect(page.body.nextCursor).not.toBeNull()
        const next = yield* call(`/v1/schedules?limit=1&cursor=${page.body.nextCursor}`)
        expect(next.body.schedules[0].name > page.body.schedules[0].name).toBe(true)
      }))

    it.effect("refuses a bad definition with 400 naming the problem, and writes nothing", () =>
      Effect.gen(function*() {
        const before = yield* scheduleCount
        const refused = (body: Record<string, unknown>) => post("/v1/schedules", { name: "refused", task: "demo.echo", ...body })
        const cases: ReadonlyArray<readonly [Record<string, unknown>, string, RegExp]> = [
          [{ cron: "0 3 * *" }, "invalid_schedule", /invalid cron expression '0 3 \* \*'/],
          [{ cron: "0 25 * * *" }, "invalid_schedule", /invalid cron expression '0 25 \* \* \*'/],
          [{ cron: "0 3 * * *", timezone: "Europe/Atlantis" }, "invalid_schedule", /unknown time zone 'Europe\/Atlantis'/],
          [{ every: "500 millis" }, "invalid_schedule", /every '500 millis' must be .*from 1 second/],
          [{ every: "whenever" }, "invalid_schedule", /every 'whenever' is not a duration/],
          [{ cron: "* * * * *", every: "1 minute" }, "invalid_schedule", /exactly one of cron and every/],
          [{}, "invalid_schedule", /exactly one of cron and every/],
          [{ every: "1 minute", task: "no.such" }, "unknown_task", /task 'no.such' is not registered/],
          [{ every: "1 minute", task: "demo.count", input: { to: "x" } }, "invalid_input", /input of task 'demo.count' is invalid: to:/],
          [{ every: "1 minute", catchUp: "sometimes" }, "invalid_input", /catchUp/],
          [{ every: "1 minute", options: { priority: 1.5 } }, "invalid_input", /priority/],
          [{ every: "1 minute", name: "no spaces" }, "invalid_input", /a schedule name is 1-100 of/]
        ]
        for (const [body, code, message] of cases) {
          const answer = yield* refused(body)
          expect({ body, status: answer.status, code: answer.body.error.code }).toEqual({ body, status: 400, code })
          expect(answer.body.error.message).toMatch(message)
        }
        const typed = yield* refused({ every: "1 minute", task: "demo.count", input: { to: "x" } })
        expect(typed.body.error.issues).toEqual([{ path: ["to"], message: expect.stringMatching(/Expected/) }])
        expect(yield* scheduleCount).toBe(before)
      }))

    it.effect("a taken name answers 409 schedule_exists", () =>
      Effect.gen(function*() {
        expect((yield* post("/v1/schedules", { name: "twice", task: "demo.echo", every: "1 hour" })).status).toBe(201)
        const again = yield* post("/v1/schedules", { name: "twice", task: "demo.echo", every: "2 hours" })
        expect(again.status).toBe(409)
        expect(again.body.error.code).toBe("schedule_exists")
        expect((yield* call("/v1/schedules/twice")).body.schedule.every).toBe("1 hour")
      }))

    it.effect("changes, pauses, resumes and deletes an API schedule", () =>
      Effect.gen(function*() {
        const created = (yield* post("/v1/schedules", { name: "changing", task: "demo.echo", input: 1, every: "1 hour" })).body.schedule
        // The same timing keeps the next tick; a new input is checked and stored.
        const sameTiming = yield* json("PATCH", "/v1/schedules/changing", { input: { n: 2 }, catchUp: "all" })
        expect(sameTiming.status).toBe(200)
        expect(sameTiming.body.schedule).toMatchObject({ input: { n: 2 }, catchUp: "all", nextTickAt: created.nextTickAt })
        // A cron replaces the interval.
        const toCron = yield* json("PATCH", "/v1/schedules/changing", { cron: "*/5 * * * * *", timezone: "America/New_York" })
        expect(toCron.body.schedule).toMatchObject({ cron: "*/5 * * * * *", every: null, everyMs: null, timezone: "America/New_York" })
        expect(Number(new Date(toCron.body.schedule.nextTickAt).getUTCSeconds()) % 5).toBe(0)
        const badPatch = yield* json("PATCH", "/v1/schedules/changing", { timezone: "Nowhere/Else" })
        expect(badPatch.status).toBe(400)
        expect(badPatch.body.error.code).toBe("invalid_schedule")
        expect((yield* call("/v1/schedules/changing")).body.schedule.timezone).toBe("America/New_York")

        const paused = yield* post("/v1/schedules/changing/pause", {})
        expect(paused.status).toBe(200)
        expect(paused.body.schedule.paused).toBe(true)
        const resumed = yield* post("/v1/schedules/changing/resume", {})
        expect(resumed.body.schedule.paused).toBe(false)

        const deleted = yield* call("/v1/schedules/changing", { method: "DELETE" })
        expect(deleted.status).toBe(204)
        expect((yield* call("/v1/schedules/changing")).status).toBe(404)
      }))

    it.effect("a schedule declared in code is owned by it: PATCH and DELETE answer 409, pause and resume work", () =>
      Effect.gen(function*() {
        const declared = (yield* call("/v1/schedules/code-owned")).body.schedule
        expect(declared).toMatchObject({ source: "code", every: "1 hour", everyMs: 3_600_000, input: { from: "code" } })
        const patched = yield* json("PATCH", "/v1/schedules/code-owned", { every: "1 minute" })
        expect(patched.status).toBe(409)
        expect(patched.body.error.code).toBe("schedule_declared_in_code")
        expect(patched.body.error.message).toMatch(/declared in code/)
        const deleted = yield* call("/v1/schedules/code-owned", { method: "DELETE" })
        expect(deleted.status).toBe(409)
        expect(deleted.body.error.code).toBe("schedule_declared_in_code")
        expect((yield* post("/v1/schedules/code-owned/pause", {})).body.schedule.paused).toBe(true)
        expect((yield* post("/v1/schedules/code-owned/resume", {})).body.schedule.paused).toBe(false)
        expect((yield* call("/v1/schedules/code-owned")).body.schedule.every).toBe("1 hour")
      }))

    it.effect("a forced delete removes a code-declared schedule", () =>
      Effect.gen(function*() {
        // Declared by no program here: written as code-owned by hand.
        const sql = yield* SqlClient.SqlClient
        yield* post("/v1/schedules", { name: "orphan", task: "demo.echo", every: "1 hour" })
        yield* sql`UPDATE runstream_schedules SET source = 'code' WHERE name = 'orphan'`
        expect((yield* call("/v1/schedules/orphan", { method: "DELETE" })).status).toBe(409)
        expect((yield* call("/v1/schedules/orphan?force=true", { method: "DELETE" })).status).toBe(204)
        expect((yield* call("/v1/schedules/orphan")).status).toBe(404)
      }))

    it.effect("an unknown schedule answers 404 schedule_not_found everywhere", () =>
      Effect.gen(function*() {
        for (
          const answer of [
            yield* call("/v1/schedules/nope"),
            yield* json("PATCH", "/v1/schedules/nope", { input: 1 }),
            yield* call("/v1/schedules/nope", { method: "DELETE" }),
            yield* post("/v1/schedules/nope/pause", {}),
            yield* post("/v1/schedules/nope/resume", {})
          ]
        ) {
          expect(answer.status).toBe(404)
          expect(answer.body.error.code).toBe("schedule_not_found")
        }
      }))

    it.effect("a schedule's tick starts a run keyed by the tick, listed with the schedule", () =>
      Effect.gen(function*() {
        const runs = yield* Runs
        const queued = Mailbox.toStream(yield* runs.subscribeAll({ task: "demo.echo" }))
        const created = yield* post("/v1/schedules", { name: "every-second", task: "demo.echo", input: { beat: true }, every: "1 second" })
        expect(created.status).toBe(201)
        const first = yield* queued.pipe(
          Stream.filter((event) => event.type === "run.queued"),
          Stream.runHead,
          Effect.map((event) => event._tag === "Some" ? event.value : undefined)
        )
        const run = yield* runs.get(first!.runId)
        expect(run.idempotencyKey).toMatch(/^schedule:every-second:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$/)
        expect(run.input).toEqual({ beat: true })
        yield* settled("every-second")
        const detail = (yield* call("/v1/schedules/every-second")).body
        const keys = detail.runs.map((entry: any) => entry.run.idempotencyKey)
        expect(keys).toContain(run.idempotencyKey)
        expect(detail.runs.every((entry: any) => entry.run.idempotencyKey === `schedule:every-second:${entry.tick}`)).toBe(true)
        expect(detail.schedule.lastTickAt).not.toBeNull()
        expect(new Date(detail.schedule.nextTickAt).getTime()).toBeGreaterThan(new Date(detail.schedule.lastTickAt).getTime())
        yield* call("/v1/schedules/every-second", { method: "DELETE" })
      }).pipe(Effect.scoped))

    it.effect("the OpenAPI document has the schedules' routes", () =>
      Effect.gen(function*() {
        const spec = (yield* call("/openapi.json")).body
        expect(Object.keys(spec.paths["/v1/schedules"]).sort()).toEqual(["get", "post"])
        expect(Object.keys(spec.paths["/v1/schedules/{name}"]).sort()).toEqual(["delete", "get", "patch"])
        expect(spec.paths["/v1/schedules/{name}/pause"].post).toBeDefined()
        expect(spec.components.schemas["Schedule"]).toBeDefined()
      }))
  })
})
