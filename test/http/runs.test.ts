import { describe, expect, layer } from "@effect/vitest"
import { Validator } from "@seriousme/openapi-schema-validator"
import { Chunk, Effect, Option, Queue, Stream } from "effect"
import { SqlClient } from "@effect/sql"
import { type RunId, uuidv7 } from "../../src/domain/Ids.ts"
import * as Retention from "../../src/Retention.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import * as Sse from "./sse.ts"
import { call, follow, Gate, open, post, program } from "./support.ts"

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Waits, in-process, until the run's log holds event `seq`. */
const logHas = (runId: string, seq: number) =>
  Effect.flatMap(Runs, (runs) => runs.events(runId as RunId, { after: seq - 1 }).pipe(Stream.take(1), Stream.runDrain))

const start = (task: string, input: unknown, options: Record<string, unknown> = {}) =>
  Effect.map(post("/v1/runs", { task, input, ...options }), (answer) => {
    expect(answer.status).toBe(201)
    return answer.body.run as { id: string; status: string; lastSeq: number }
  })

describe("HTTP API: runs", () => {
  layer(program(), { excludeTestServices: true })((it) => {
    it.scoped("streams a run from run.queued to run.succeeded as SSE, then closes", () =>
      Effect.gen(function*() {
        const run = yield* start("demo.count", { to: 3 })
        const response = yield* open(`/v1/runs/${run.id}/events`)
        expect(response.status).toBe(200)
        expect(response.headers.get("content-type")).toBe("text/event-stream")
        expect(response.headers.get("cache-control")).toBe("no-cache")
        expect(response.headers.get("x-accel-buffering")).toBe("no")
        const frames = (yield* Sse.collect(Sse.frames(response.body!))).filter((frame) => frame.comments.length === 0)
        expect(frames[0]).toEqual({ comments: [], retry: 3000 })
        const events = frames.slice(1)
        expect(events.map((frame) => frame.id)).toEqual(range(1, 6).map(String))
        expect(events.map((frame) => frame.event)).toEqual(["run.queued", "run.started", "tick", "tick", "tick", "run.succeeded"])
        const data = events.map((frame) => JSON.parse(frame.data!))
        expect(data.map((event) => event.seq)).toEqual(range(1, 6))
        expect(data.every((event) => event.runId === run.id && event.type === event.type && typeof event.at === "string")).toBe(true)
        expect(Object.keys(data[2]).sort()).toEqual(["at", "data", "runId", "seq", "type"])
        expect(data[2].data).toEqual({ n: 1 })
        expect(data[5].data.output).toEqual({ count: 3 })
      }))

    it.scoped("resumes after Last-Event-ID mid-run with no gap and no duplicate", () =>
      Effect.gen(function*() {
        const gate = yield* Gate
        const run = yield* start("test.stepper", { steps: 3 })
        const seen = yield* Effect.scoped(Effect.gen(function*() {
          const stream = yield* follow(`/v1/runs/${run.id}/events`)
          const first = [yield* stream.next, yield* stream.next]
          yield* Queue.offer(gate, undefined)
          return [...first, yield* stream.next]
        }))
        expect(seen.map((event) => event.data.seq)).toEqual([1, 2, 3])
        // Disconnected: step 2 is committed meanwhile.
        yield* Queue.offer(gate, undefined)
        yield* logHas(run.id, 4)
        // `after` is what the first request had in its URL; Last-Event-ID wins over it.
        const resumed = yield* follow(`/v1/runs/${run.id}/events?after=0`, { "last-event-id": "3" })
        const next = yield* resumed.next
        yield* Queue.offer(gate, undefined)
        const rest = yield* Stream.runCollect(Stream.repeatEffectOption(resumed.next))
        const events = [next, ...Chunk.toArray(rest)]
        expect(events.map((event) => event.data.seq)).toEqual([4, 5, 6])
        expect(events.map((event) => event.id)).toEqual(["4", "5", "6"])
        expect(events.map((event) => event.event)).toEqual(["step", "step", "run.succeeded"])
      }))

    it.scoped("resumes from ?after=N", () =>
      Effect.gen(function*() {
        const run = yield* start("demo.count", { to: 2 })
        const response = yield* open(`/v1/runs/${run.id}/events?after=2`)
        const events = yield* Sse.collect(Sse.events(response.body!))
        expect(events.map((event) => event.data.seq)).toEqual([3, 4, 5])
      }))

    it.scoped("answers 204 to a resume at or past a finished run's terminal event", () =>
      Effect.gen(function*() {
        const run = yield* start("demo.echo", { hello: "world" })
        const done = yield* RunstreamTest.waitForRunCompletion(run.id as RunId)
        expect(done.lastSeq).toBe(3)
        for (const [path, headers] of [
          [`/v1/runs/${run.id}/events`, { "last-event-id": "3" }],
          [`/v1/runs/${run.id}/events?after=3`, {}],
          [`/v1/runs/${run.id}/events?after=99`, {}]
        ] as const) {
          const response = yield* open(path, headers)
          expect(response.status).toBe(204)
          expect(yield* Effect.promise(() => response.text())).toBe("")
        }
        const replay = yield* open(`/v1/runs/${run.id}/events?after=2`)
        expect((yield* Sse.collect(Sse.events(replay.body!))).map((event) => event.event)).toEqual(["run.succeeded"])
      }))

    it.effect("answers 201, then 200 with the same run, for a repeated idempotency key", () =>
      Effect.gen(function*() {
        const body = { task: "demo.echo", input: { n: 1 }, idempotencyKey: "order-42" }
        const first = yield* post("/v1/runs", body)
        const second = yield* post("/v1/runs", body)
        expect(first.status).toBe(201)
        expect(second.status).toBe(200)
        expect(second.body.run.id).toBe(first.body.run.id)
        expect(second.body.run.idempotencyKey).toBe("order-42")
      }))

    it.effect("answers 409 idempotency_conflict for a key reused with another input or task", () =>
      Effect.gen(function*() {
        const first = yield* post("/v1/runs", { task: "demo.echo", input: { n: 1 }, idempotencyKey: "order-43" })
        expect(first.status).toBe(201)
        for (const body of [{ task: "demo.echo", input: { n: 2 } }, { task: "demo.count", input: { to: 1 } }]) {
          const answer = yield* post("/v1/runs", { ...body, idempotencyKey: "order-43" })
          expect(answer.status).toBe(409)
          expect(answer.body.error.code).toBe("idempotency_conflict")
          expect(answer.body.error.message).toContain(first.body.run.id)
        }
        const keyed = (yield* call("/v1/runs?limit=1000")).body.runs.filter((run: { idempotencyKey: string }) => run.idempotencyKey === "order-43")
        expect(keyed.map((run: { id: string }) => run.id)).toEqual([first.body.run.id])
      }))

    it.effect("folds debounced starts: 201 with the run, then 200 with it and folded: true", () =>
      Effect.gen(function*() {
        const debounce = { key: "doc-7", delayMs: 3_600_000 }
        const first = yield* post("/v1/runs", { task: "demo.echo", input: { v: 1 }, debounce })
        const second = yield* post("/v1/runs", { task: "demo.echo", input: { v: 2 }, debounce })
        expect(first.status).toBe(201)
        expect(first.body.folded).toBeUndefined()
        expect(second.status).toBe(200)
        expect(second.body.folded).toBe(true)
        expect(second.body.run).toMatchObject({ id: first.body.run.id, status: "queued", input: { v: 2 } })
        expect(Date.parse(second.body.run.runAt)).toBeGreaterThanOrEqual(Date.parse(first.body.run.runAt))
      }))

    it.effect("a run deleted by the retention: its events and itself answer 404", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const retention = yield* Retention.Retention
        const started = yield* start("demo.echo", "old")
        yield* RunstreamTest.waitForRunCompletion(started.id as RunId)
        // As if it had been created and ended 8 days ago (its id too: ids begin with their creation time).
        const run = { id: uuidv7(Date.now() - 8 * 24 * 60 * 60 * 1000) }
        yield* sql`WITH moved AS (
            UPDATE runstream_runs SET id = ${run.id}, finished_at = finished_at - interval '8 days' WHERE id = ${started.id}
          )
          UPDATE runstream_events SET run_id = ${run.id} WHERE run_id = ${started.id}`
        expect((yield* retention.deleteNow).runs).toBe(1)
        for (const path of [`/v1/runs/${run.id}`, `/v1/runs/${run.id}/events`, `/v1/runs/${run.id}/events?after=3`]) {
          const answer = yield* call(path)
          expect({ path, status: answer.status, code: answer.body?.error?.code }).toEqual({ path, status: 404, code: "run_not_found" })
        }
        const json = yield* call(`/v1/runs/${run.id}/events`, { headers: { accept: "application/json" } })
        expect(json.status).toBe(404)
      }))

    it.effect("takes the start options of the body", () =>
      Effect.gen(function*() {
        const runAt = new Date(Date.now() + 3_600_000).toISOString()
        const answer = yield* post("/v1/runs", {
          task: "demo.echo",
          input: null,
          queue: "later",
          priority: 7,
          maxAttempts: 2,
          timeoutMs: 5000,
          runAt
        })
        expect(answer.status).toBe(201)
        expect(answer.body.run).toMatchObject({ queue: "later", priority: 7, maxAttempts: 2, timeoutMs: 5000, status: "queued", runAt })
      }))

    it.effect("gets a run, and lists runs by status and task with a cursor", () =>
      Effect.gen(function*() {
        const ids: Array<string> = []
        for (let i = 0; i < 3; i++) ids.push((yield* start("demo.sleep", { ms: 0 }, { queue: "listing" })).id)
        const got = yield* call(`/v1/runs/${ids[0]}`)
        expect(got.status).toBe(200)
        expect(got.body.run.id).toBe(ids[0])
        const first = yield* call("/v1/runs?task=demo.sleep&limit=2")
        expect(first.status).toBe(200)
        expect(first.body.runs.map((run: { id: string }) => run.id)).toEqual([ids[2], ids[1]])
        expect(first.body.nextCursor).toEqual(expect.any(String))
        const second = yield* call(`/v1/runs?task=demo.sleep&limit=2&cursor=${encodeURIComponent(first.body.nextCursor)}`)
        expect(second.body.runs.map((run: { id: string }) => run.id)).toEqual([ids[0]])
        expect(second.body.nextCursor).toBeNull()
        const queued = yield* call("/v1/runs?status=queued&task=demo.sleep")
        expect(queued.body.runs.every((run: { status: string }) => run.status === "queued")).toBe(true)
      }))

    it.effect("serves a page of events as JSON when asked", () =>
      Effect.gen(function*() {
        const run = yield* start("demo.count", { to: 3 })
        yield* RunstreamTest.waitForRunCompletion(run.id as RunId)
        const json = { accept: "application/json" }
        const all = yield* call(`/v1/runs/${run.id}/events`, { headers: json })
        expect(all.status).toBe(200)
        expect(all.body.events.map((event: { seq: number }) => event.seq)).toEqual(range(1, 6))
        expect(all.body.nextAfter).toBe(6)
        expect(Object.keys(all.body.events[0]).sort()).toEqual(["at", "data", "runId", "seq", "type"])
        const page = yield* call(`/v1/runs/${run.id}/events?after=2&limit=2`, { headers: json })
        expect(page.body.events.map((event: { seq: number }) => event.seq)).toEqual([3, 4])
        expect(page.body.nextAfter).toBe(4)
        const end = yield* call(`/v1/runs/${run.id}/events?after=6`, { headers: json })
        expect(end.body).toEqual({ events: [], nextAfter: 6 })
      }))

    it.scoped("cancels a running run, and answers 409 to a second cancel", () =>
      Effect.gen(function*() {
        const run = yield* start("test.stepper", { steps: 1 })
        const stream = yield* follow(`/v1/runs/${run.id}/events`)
        expect((yield* stream.next).event).toBe("run.queued")
        expect((yield* stream.next).event).toBe("run.started")
        const cancelled = yield* post(`/v1/runs/${run.id}/cancel`, {})
        expect(cancelled.status).toBe(200)
        expect(cancelled.body.run.id).toBe(run.id)
        const last = yield* stream.next
        expect(last.event).toBe("run.cancelled")
        expect(yield* Effect.option(stream.next)).toEqual(Option.none())
        const again = yield* post(`/v1/runs/${run.id}/cancel`, {})
        expect(again.status).toBe(409)
        expect(again.body.error.code).toBe("run_already_finished")
      }))

    it.scoped("follows live events of every run on /v1/events, filtered by task", () =>
      Effect.gen(function*() {
        const stream = yield* follow("/v1/events?task=demo.count")
        yield* start("demo.echo", 1)
        const run = yield* start("demo.count", { to: 1 })
        const events = [yield* stream.next, yield* stream.next, yield* stream.next, yield* stream.next]
        expect(events.map((event) => [event.data.runId, event.event])).toEqual([
          [run.id, "run.queued"],
          [run.id, "run.started"],
          [run.id, "tick"],
          [run.id, "run.succeeded"]
        ])
        expect(events.every((event) => event.id === undefined)).toBe(true)
      }))

    it.effect("reports liveness and readiness", () =>
      Effect.gen(function*() {
        expect(yield* call("/healthz")).toMatchObject({ status: 200, body: { status: "ok" } })
        expect(yield* call("/readyz")).toMatchObject({ status: 200, body: { status: "ready" } })
      }))

    it.effect("serves its OpenAPI document", () =>
      Effect.gen(function*() {
        const { body, status } = yield* call("/openapi.json")
        expect(status).toBe(200)
        expect(body.openapi).toBe("3.1.0")
        expect(Object.keys(body.paths).sort()).toEqual(
          [
            "/healthz",
            "/readyz",
            "/v1/events",
            "/v1/runs",
            "/v1/runs/{id}",
            "/v1/runs/{id}/cancel",
            "/v1/runs/{id}/events",
            "/v1/runs/{id}/replay",
            "/v1/runs/{id}/signals/{name}",
            "/v1/schedules",
            "/v1/schedules/{name}",
            "/v1/schedules/{name}/pause",
            "/v1/schedules/{name}/resume",
            "/v1/stats",
            "/v1/tasks",
            "/v1/tokens"
          ]
        )
        expect(Object.keys(body.paths["/v1/runs/{id}/events"].get.responses[200].content).sort()).toEqual(
          ["application/json", "text/event-stream"]
        )
        expect(body.paths["/v1/runs/{id}"].get.responses[404].content["application/json"].schema.allOf[0]).toEqual({
          $ref: "#/components/schemas/Error"
        })
        expect(JSON.stringify(body)).not.toContain("HttpApiDecodeError")
        expect(body.components.securitySchemes.bearer).toEqual({ type: "http", scheme: "bearer" })
        expect(body.paths["/healthz"].get.security).toEqual([])
      }))

    it.effect("serves an OpenAPI document that is valid OpenAPI 3.1", () =>
      Effect.gen(function*() {
        const { body } = yield* call("/openapi.json")
        const result = yield* Effect.promise(() => new Validator().validate(body))
        expect(result.errors).toBeUndefined()
        expect(result.valid).toBe(true)
      }))
  })
})
