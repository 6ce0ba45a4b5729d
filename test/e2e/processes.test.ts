/**
 * The entry points as separate processes on one database: a server (no
 * workers) and worker processes, and `dev` on its embedded Postgres.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import { chmodSync, mkdtempSync, realpathSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseUrl } from "../../src/Database.ts"
import * as Embedded from "../../src/internal/embeddedPostgres.ts"
import { TestDatabase } from "../../src/testing/index.ts"
import * as Sse from "../http/sse.ts"
import { BaseUrl, call, follow, post } from "../http/support.ts"
import * as Child from "./Child.ts"

/** The URL of this suite's fresh database, as the processes get it. */
class Database extends Context.Tag("test/e2e/Database")<Database, string>() {}

const database = Layer.effect(Database, Effect.map(DatabaseUrl, ({ url }) => Redacted.value(url))).pipe(
  Layer.provide(TestDatabase.layerUrl)
)

const listening = /listening on (http:\/\/[\d.]+:\d+)/

/** `npm run server` on the suite's database, without workers. */
const server = Layer.scoped(
  BaseUrl,
  Effect.gen(function*() {
    const child = yield* Child.start("src/main/server.ts", { DATABASE_URL: yield* Database, PORT: "0", HOST: "127.0.0.1" })
    const [, url] = yield* child.waitFor(listening)
    return url!
  })
)

/** `npm run worker` on the suite's database; ready when it says so. */
const startWorker = (env: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const child = yield* Child.start("src/main/worker.ts", { DATABASE_URL: yield* Database, ...env })
    yield* child.waitFor(/workers ready/)
    return child
  })

const start = (body: Record<string, unknown>) =>
  Effect.map(post("/v1/runs", body), (answer) => {
    expect(answer.status).toBe(201)
    return answer.body.run.id as string
  })

describe("processes", () => {
  layer(Layer.provideMerge(server, database), { excludeTestServices: true, timeout: "300 seconds" })((it) => {
    it.scoped("events committed by a worker process reach an SSE client of the server; cancels reach the worker", () =>
      Effect.gen(function*() {
        const worker = yield* startWorker({ RUNSTREAM_WORKER_QUEUES: "default", RUNSTREAM_HEALTH_PORT: "0" })
        const [, health] = yield* worker.waitFor(/health checks listening on (http:\/\/[\d.]+:\d+)/)
        const ready = yield* Effect.promise(() => fetch(`${health}/readyz`).then(async (r) => [r.status, await r.json()]))
        expect(ready).toEqual([200, { status: "ready" }])
        const noApi = yield* Effect.promise(() => fetch(`${health}/v1/runs`).then(async (r) => [r.status, await r.json()]))
        expect(noApi).toMatchObject([404, { error: { code: "not_found" } }])
        const runId = yield* start({ task: "demo.count", input: { to: 3 } })
        const response = yield* Effect.flatMap(BaseUrl, (base) =>
          Effect.promise(() => fetch(`${base}/v1/runs/${runId}/events`, { headers: { accept: "text/event-stream" } })))
        const events = yield* Sse.collect(Sse.events(response.body!))
        expect(events.map((event) => event.event)).toEqual(["run.queued", "run.started", "tick", "tick", "tick", "run.succeeded"])
        expect(events.map((event) => event.data.seq)).toEqual([1, 2, 3, 4, 5, 6])
        expect((yield* call(`/v1/runs/${runId}`)).body.run).toMatchObject({ status: "succeeded", output: { count: 3 } })

        // Cancellation crosses processes too: the server asks, the worker stops the body.
        const sleeper = yield* start({ task: "demo.sleep", input: { ms: 600_000 } })
        const stream = yield* follow(`/v1/runs/${sleeper}/events`)
        expect((yield* stream.next).event).toBe("run.queued")
        expect((yield* stream.next).event).toBe("run.started")
        const asked = Date.now()
        expect((yield* post(`/v1/runs/${sleeper}/cancel`, {})).status).toBe(200)
        const cancelled = yield* stream.next
        const elapsed = Date.now() - asked
        expect(cancelled.event).toBe("run.cancelled")
        expect(elapsed).toBeLessThan(1000)
      }), { timeout: 300_000 })

    it.scoped("a worker stopped by SIGTERM exits 0 and hands its runs back; the next worker finishes them", () =>
      Effect.gen(function*() {
        const env = { RUNSTREAM_WORKER_QUEUES: "shutdown", RUNSTREAM_SHUTDOWN_GRACE: "200 millis" }
        const first = yield* startWorker(env)
        const live = yield* follow("/v1/events?task=demo.sleep")
        const runIds = new Set<string>()
        // Long enough to be running still at the SIGTERM on a loaded machine (2 s was not, at load 17).
        for (let i = 0; i < 4; i++) runIds.add(yield* start({ task: "demo.sleep", input: { ms: 8000 }, queue: "shutdown" }))

        const started = new Set<string>()
        while (started.size < runIds.size) {
          const event = yield* live.next
          if (runIds.has(event.data.runId) && event.event === "run.started") started.add(event.data.runId)
        }
        yield* first.kill("SIGTERM")
        expect(yield* first.exited).toEqual({ code: 0, signal: null })

        yield* startWorker(env)
        const released = new Set<string>()
        const succeeded = new Set<string>()
        while (succeeded.size < runIds.size) {
          const event = yield* live.next
          if (!runIds.has(event.data.runId)) continue
          if (event.event === "run.released") released.add(event.data.runId)
          if (event.event === "run.succeeded") succeeded.add(event.data.runId)
          expect(event.event).not.toBe("run.failed")
        }
        expect(released).toEqual(runIds)
        for (const runId of runIds) {
          expect((yield* call(`/v1/runs/${runId}`)).body.run.status).toBe("succeeded")
        }
      }), { timeout: 300_000 })

    it.scoped("the server, which has no workers, reclaims the lease of a worker process killed with SIGKILL", () =>
      Effect.gen(function*() {
        // The only worker; once it is dead, the server is the only program left on the database.
        const worker = yield* startWorker({ RUNSTREAM_WORKER_QUEUES: "reclaim", RUNSTREAM_LEASE: "1 second" })
        const runId = yield* start({ task: "demo.sleep", input: { ms: 600_000 }, queue: "reclaim", maxAttempts: 1 })
        const stream = yield* follow(`/v1/runs/${runId}/events`)
        expect((yield* stream.next).event).toBe("run.queued")
        expect((yield* stream.next).event).toBe("run.started")
        yield* worker.kill("SIGKILL")
        expect((yield* worker.exited).signal).toBe("SIGKILL")
        const failed = yield* stream.next
        expect(failed.event).toBe("run.failed")
        expect((failed.data.data as { error: unknown }).error).toMatchObject({ tag: "LeaseExpired", retryable: true })
      }), { timeout: 300_000 })
  })
})

describe("entry points", () => {
  it.scoped("dev starts on an embedded Postgres, serves /healthz, and stops on SIGTERM", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const dir = mkdtempSync(join(tmpdir(), "runstream-dev-"))
          chmodSync(dir, 0o755) // the embedded server may run as another user
          return dir
        }),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const dev = yield* Child.start("src/main/dev.ts", { RUNSTREAM_DATA_DIR: dir, PORT: "0" })
      const [, url] = yield* dev.waitFor(/Runstream dev server: (http:\/\/[\d.]+:\d+)/, "240 seconds")
      expect(yield* dev.output).toContain(join(dir, "pg"))
      const health = yield* Effect.promise(() => fetch(`${url}/healthz`).then((response) => response.json()))
      expect(health).toEqual({ status: "ok" })
      yield* dev.kill("SIGTERM")
      expect(yield* dev.exited).toEqual({ code: 0, signal: null })
    }), { timeout: 300_000 })

  it.scoped("dev as root with its data inside a private directory starts, on RUNSTREAM_EMBEDDED_PORT, and says where", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "runstream-dev-private-"))), // 0700
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const port = yield* Embedded.freePort
      const dev = yield* Child.start("src/main/dev.ts", { RUNSTREAM_DATA_DIR: dir, PORT: "0", RUNSTREAM_EMBEDDED_PORT: String(port) })
      const [, url] = yield* dev.waitFor(/Runstream dev server: (http:\/\/[\d.]+:\d+)/, "240 seconds")
      const output = yield* dev.output
      expect(output).toContain(`embedded Postgres at postgres://postgres@127.0.0.1:${port}/postgres`)
      if (process.getuid?.() === 0) expect(output).toContain(`linked from ${dir}/pg: user postgres cannot enter ${dir}`)
      const health = yield* Effect.promise(() => fetch(`${url}/healthz`).then((response) => response.json()))
      expect(health).toEqual({ status: "ok" })
      yield* dev.kill("SIGTERM")
      expect(yield* dev.exited).toEqual({ code: 0, signal: null })
      const kept = realpathSync(join(dir, "pg"))
      if (kept !== join(dir, "pg")) rmSync(kept, { recursive: true, force: true })
    }), { timeout: 300_000 })

  it.scoped("a bad setting stops start-up with a message naming each variable at fault", () =>
    Effect.gen(function*() {
      const server = yield* Child.start("src/main/server.ts", {
        DATABASE_URL: "postgres://nobody@127.0.0.1:1/none",
        PORT: "eighty",
        RUNSTREAM_MAX_STREAMS: "0"
      })
      expect(yield* server.exited).toEqual({ code: 1, signal: null })
      const output = yield* server.output
      expect(output).toContain("invalid configuration")
      expect(output).toContain("PORT: Expected an integer value but received \"eighty\"")
      expect(output).toContain("RUNSTREAM_MAX_STREAMS: must be between 1 and 1000000")
      expect(output).not.toMatch(/\n\s+at /)
    }), { timeout: 300_000 })
  it.scoped("logs as RUNSTREAM_LOG_FORMAT and RUNSTREAM_LOG_LEVEL say: JSON lines, requests at debug", () =>
    Effect.gen(function*() {
      const server = yield* Child.start("src/main/server.ts", {
        DATABASE_URL: yield* Database,
        PORT: "0",
        HOST: "127.0.0.1",
        RUNSTREAM_LOG_FORMAT: "json",
        RUNSTREAM_LOG_LEVEL: "debug"
      })
      const [, url] = yield* server.waitFor(listening)
      yield* Effect.promise(() => fetch(`${url}/v1/runs`).then((response) => response.text()))
      const [line] = yield* server.waitFor(/^\{.*Sent HTTP response.*\}$/m)
      expect(JSON.parse(line!)).toMatchObject({ logLevel: "DEBUG", annotations: { "http.url": "/v1/runs", "http.status": 200 } })
    }).pipe(Effect.provide(database)), { timeout: 300_000 })

  it.scoped("a bad log level or format stops start-up naming the variable", () =>
    Effect.gen(function*() {
      const server = yield* Child.start("src/main/server.ts", {
        DATABASE_URL: "postgres://nobody@127.0.0.1:1/none",
        RUNSTREAM_LOG_LEVEL: "loud",
        LOG_FORMAT: "xml"
      })
      expect(yield* server.exited).toEqual({ code: 1, signal: null })
      const output = yield* server.output
      expect(output).toContain("RUNSTREAM_LOG_LEVEL: Expected a log level but received \"loud\"")
      expect(output).toContain("LOG_FORMAT: Expected one of")
      expect(output).not.toMatch(/\n\s+at /)
    }), { timeout: 300_000 })
})
