/**
 * The API a dashboard and a CLI operate runs with (issue 18): stats, tasks,
 * replay and the list's filters, on a program without workers, so that every
 * run stays where the test put it.
 */
import { HttpServer } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Queue } from "effect"
import * as Server from "../../src/http/Server.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { BaseUrl, call, Gate, post, quiet, tasks } from "./support.ts"

const program = Layer.effect(BaseUrl, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
  Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1" })),
  Layer.provideMerge(RunstreamTest.layer({ tasks, workers: false })),
  // The stepper's gate, which the registry captures (no run of it starts here).
  Layer.provide(Layer.effect(Gate, Queue.unbounded<void>())),
  Layer.provide(quiet)
)

const start = (task: string, input: unknown, options: Record<string, unknown> = {}) =>
  Effect.map(post("/v1/runs", { task, input, ...options }), (answer) => {
    expect(answer.status).toBe(201)
    return answer.body.run as { id: string; status: string; createdAt: string; queue: string }
  })

const runCount = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_runs`, (rows) => rows[0]!.n))

const minute = 60_000

describe("HTTP API: operating runs", () => {
  layer(program, { excludeTestServices: true })((it) => {
    it.effect("lists the registered tasks with their schemas, retry policy and timeout", () =>
      Effect.gen(function*() {
        const { body, status } = yield* call("/v1/tasks")
        expect(status).toBe(200)
        const names = body.tasks.map((task: any) => task.name)
        expect(names).toEqual(tasks.map((task) => task.name))
        const count = body.tasks.find((task: any) => task.name === "demo.count")
        expect(count.queue).toBe("default")
        expect(count.input.type).toBe("object")
        expect(count.input.required).toContain("to")
        expect(count.retry).toEqual({ maxAttempts: 3, initialDelayMs: 1000, maxDelayMs: 300_000, factor: 2 })
        expect(count.timeoutMs).toBeNull()
        const flaky = body.tasks.find((task: any) => task.name === "demo.flaky")
        expect(flaky.retry.initialDelayMs).toBe(10)
      }))

    it.effect("replays a run: same task and input, the original's options unless overridden, replayOf set", () =>
      Effect.gen(function*() {
        const original = yield* start("demo.count", { to: 2 }, { queue: "q-replay", priority: 5, idempotencyKey: "once" })
        const replayed = yield* post(`/v1/runs/${original.id}/replay`, {})
        expect(replayed.status).toBe(201)
        expect(replayed.body.created).toBe(true)
        expect(replayed.body.run).toMatchObject({
          task: "demo.count",
          input: { to: 2 },
          queue: "q-replay",
          priority: 5,
          idempotencyKey: null,
          replayOf: original.id,
          status: "queued"
        })
        expect(replayed.body.run.id).not.toBe(original.id)
        // Without a body at all, and with overrides.
        const bare = yield* call(`/v1/runs/${original.id}/replay`, { method: "POST" })
        expect(bare.status).toBe(201)
        expect(bare.body.run.replayOf).toBe(original.id)
        const moved = yield* post(`/v1/runs/${original.id}/replay`, { options: { queue: "other", priority: -1 } })
        expect(moved.body.run).toMatchObject({ queue: "other", priority: -1, replayOf: original.id })
        // A run started otherwise has no replayOf at all.
        const { body } = yield* call(`/v1/runs/${original.id}`)
        expect("replayOf" in body.run).toBe(false)
        expect((yield* call(`/v1/runs/${replayed.body.run.id}`)).body.run.replayOf).toBe(original.id)
      }))

    it.effect("refuses a replay of an unknown run (404) and bad overrides (400), writing nothing", () =>
      Effect.gen(function*() {
        const original = yield* start("demo.echo", { a: 1 })
        const before = yield* runCount
        const unknown = yield* post("/v1/runs/0190a000-0000-7000-8000-000000000001/replay", {})
        expect(unknown.status).toBe(404)
        expect(unknown.body.error.code).toBe("run_not_found")
        const notAnId = yield* post("/v1/runs/nope/replay", {})
        expect(notAnId.status).toBe(400)
        const badQueue = yield* post(`/v1/runs/${original.id}/replay`, { options: { queue: "no spaces" } })
        expect(badQueue.status).toBe(400)
        expect(badQueue.body.error.issues[0].path).toEqual(["options", "queue"])
        const unknownField = yield* post(`/v1/runs/${original.id}/replay`, { option: {} })
        expect(unknownField.status).toBe(400)
        const notJson = yield* call(`/v1/runs/${original.id}/replay`, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" })
        expect(notJson.status).toBe(415)
        expect(yield* runCount).toBe(before)
      }))

    it.effect("filters the list by queue, idempotency key, creation time and id prefix", () =>
      Effect.gen(function*() {
        const a = yield* start("demo.echo", 1, { queue: "filters-a", idempotencyKey: "filter-key-1" })
        const b = yield* start("demo.echo", 2, { queue: "filters-a" })
        const c = yield* start("demo.echo", 3, { queue: "filters-b" })
        const ids = (answer: { body: any }) => answer.body.runs.map((run: any) => run.id)

        expect(ids(yield* call("/v1/runs?queue=filters-a"))).toEqual([b.id, a.id])
        expect(ids(yield* call("/v1/runs?idempotencyKey=filter-key-1"))).toEqual([a.id])
        expect(ids(yield* call(`/v1/runs?q=${c.id}`))).toEqual([c.id])
        expect(ids(yield* call(`/v1/runs?q=${c.id.slice(0, 9)}&queue=filters-b`))).toEqual([c.id])
        const byPrefix = ids(yield* call(`/v1/runs?q=${a.id.slice(0, 4)}&limit=1000`))
        expect(byPrefix).toContain(a.id)
        expect(byPrefix.every((id: string) => id.startsWith(a.id.slice(0, 4)))).toBe(true)

        const created = [a, b, c].map((run) => Date.parse(run.createdAt))
        const after = new Date(created[1]!).toISOString()
        const before = new Date(created[1]! + 1).toISOString()
        const inQueues = (answer: { body: any }) =>
          answer.body.runs.filter((run: any) => run.queue.startsWith("filters-")).map((run: any) => run.id)
        expect(inQueues(yield* call(`/v1/runs?createdAfter=${after}&createdBefore=${before}`))).toEqual(
          [a, b, c].filter((_, i) => created[i] === created[1]).map((run) => run.id).reverse()
        )
        expect(inQueues(yield* call(`/v1/runs?createdAfter=${new Date(created[2]! + 1).toISOString()}`))).toEqual([])
        expect(inQueues(yield* call(`/v1/runs?createdBefore=${new Date(created[0]!).toISOString()}`))).toEqual([])
        expect(ids(yield* call("/v1/runs?queue=filters-a&createdAfter=2000-01-01&createdBefore=2999-01-01"))).toEqual([b.id, a.id])
        // Paging within a filter.
        const first = yield* call("/v1/runs?queue=filters-a&limit=1")
        expect(ids(first)).toEqual([b.id])
        expect(ids(yield* call(`/v1/runs?queue=filters-a&limit=1&cursor=${first.body.nextCursor}`))).toEqual([a.id])
      }))

    it.effect("refuses a bad filter with a 400 that names the parameter", () =>
      Effect.gen(function*() {
        for (
          const [query, param] of [
            ["queue=no%20spaces", "queue"],
            ["idempotencyKey=", "idempotencyKey"],
            ["createdAfter=yesterday", "createdAfter"],
            ["createdBefore=2024-02-30T00:00:00Z", "createdBefore"],
            ["q=XYZ", "q"],
            ["q=0190a0000", "q"],
            [`q=${"0".repeat(37)}`, "q"],
            ["status=done", "status"]
          ] as const
        ) {
          const { body, status } = yield* call(`/v1/runs?${query}`)
          expect(status, query).toBe(400)
          expect(body.error.code).toBe("invalid_input")
          expect(body.error.issues[0].path).toEqual([param])
          expect(body.error.message).toContain(param)
        }
      }))

    it.effect("answers stats: live runs from the queue, the last hour's ends per minute, percentiles", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`TRUNCATE runstream_runs, runstream_jobs, runstream_events, runstream_outbox`
        const empty = (yield* call("/v1/stats")).body
        expect(empty.runs).toEqual([])
        expect(empty.queues).toEqual([])
        expect(empty.finishedPerMinute).toHaveLength(60)
        expect(empty.finishedPerMinute.every((m: any) => m.succeeded + m.failed + m.cancelled === 0)).toBe(true)
        expect(empty.queueWaitMs).toEqual({ p50: null, p95: null })
        expect(empty.durationMs).toEqual({ p50: null, p95: null })

        // Waiting: two due in q1 (one an older runAt), one scheduled in q1, one running in q2.
        const waiting = yield* start("demo.echo", 1, { queue: "q1", runAt: "2020-01-01T00:00:00Z" })
        yield* start("demo.echo", 2, { queue: "q1" })
        yield* start("demo.count", { to: 1 }, { queue: "q1", runAt: "2999-01-01T00:00:00Z" })
        const running = yield* start("demo.count", { to: 1 }, { queue: "q2" })
        yield* sql`UPDATE runstream_jobs SET locked_by = 'w', locked_until = now() + interval '1 hour' WHERE run_id = ${running.id}`
        yield* sql`UPDATE runstream_runs SET status = 'running', started_at = now() WHERE id = ${running.id}`

        // Ended: durations 100..1000 ms and waits 10..100 ms, three minutes ago; one failed now; one cancelled never started;
        // one succeeded two hours ago (outside the window).
        const ended = (yield* start("demo.echo", 0)).id
        yield* sql`DELETE FROM runstream_jobs WHERE run_id = ${ended}`
        const at = Date.now()
        const threeMinutesAgo = new Date(at - 3 * minute)
        for (let i = 1; i <= 10; i++) {
          yield* sql`
            INSERT INTO runstream_runs (id, task, queue, status, max_attempts, created_at, run_at, started_at, finished_at)
            SELECT gen_random_uuid(), 'demo.echo', 'q1', 'succeeded', 1, created_at,
              ${new Date(threeMinutesAgo.getTime() - i * 100 - i * 10)}, ${new Date(threeMinutesAgo.getTime() - i * 100)}, ${threeMinutesAgo}
            FROM runstream_runs WHERE id = ${ended}`
        }
        // Ids are what the window reads by: these copy a fresh run's id prefix (its creation time).
        yield* sql`UPDATE runstream_runs SET id = (left(${ended}::text, 13) || substr(id::text, 14))::uuid
          WHERE status = 'succeeded'`
        yield* sql`UPDATE runstream_runs SET status = 'failed', started_at = ${new Date(at - 2000)}, run_at = ${new Date(at - 2000)},
          finished_at = ${new Date(at)} WHERE id = ${ended}`
        yield* sql`
          INSERT INTO runstream_runs (id, task, queue, status, max_attempts, created_at, run_at, finished_at) VALUES
          ((left(${ended}::text, 13) || '-7000-8000-00000000000c')::uuid, 'demo.count', 'q1', 'cancelled', 1, now(), now(), ${new Date(at - minute)}),
          ((left(${ended}::text, 13) || '-7000-8000-00000000000d')::uuid, 'demo.count', 'q1', 'succeeded', 1, now(), now(), ${new Date(at - 120 * minute)})`

        const { body, status } = yield* call("/v1/stats")
        expect(status).toBe(200)
        expect(body.runs).toEqual([
          { task: "demo.count", status: "cancelled", count: 1 },
          { task: "demo.count", status: "queued", count: 1 },
          { task: "demo.count", status: "running", count: 1 },
          { task: "demo.echo", status: "failed", count: 1 },
          { task: "demo.echo", status: "queued", count: 2 },
          { task: "demo.echo", status: "succeeded", count: 10 }
        ])
        expect(body.queues).toEqual([
          { queue: "q1", waiting: 2, scheduled: 1, running: 0, oldestWaitingSince: "2020-01-01T00:00:00.000Z" },
          { queue: "q2", waiting: 0, scheduled: 0, running: 1, oldestWaitingSince: null }
        ])
        expect(waiting.queue).toBe("q1")
        const minutes = body.finishedPerMinute
        expect(minutes).toHaveLength(60)
        expect(Date.parse(minutes[59].minute)).toBe(Math.floor(Date.parse(body.at) / minute) * minute)
        expect(Date.parse(minutes[1].minute) - Date.parse(minutes[0].minute)).toBe(minute)
        const slot = (time: number) => minutes.find((m: any) => Date.parse(m.minute) === Math.floor(time / minute) * minute)
        expect(slot(threeMinutesAgo.getTime())).toMatchObject({ succeeded: 10, failed: 0 })
        expect(slot(at)).toMatchObject({ failed: 1 })
        expect(slot(at - minute)).toMatchObject({ cancelled: 1 })
        expect(minutes.reduce((n: number, m: any) => n + m.succeeded + m.failed + m.cancelled, 0)).toBe(12)
        // Eleven started runs: durations 100..1000 and 2000; waits 10..100 and 0 (percentile_cont interpolates).
        expect(body.durationMs.p50).toBeCloseTo(600, 5)
        expect(body.durationMs.p95).toBeCloseTo(1500, 5)
        expect(body.queueWaitMs.p50).toBeCloseTo(50, 5)
        expect(body.queueWaitMs.p95).toBeCloseTo(95, 5)
        expect(body.window.truncated).toBe(false)
        expect(Date.parse(body.window.since)).toBe(Date.parse(minutes[0].minute))
      }))
  })
})
