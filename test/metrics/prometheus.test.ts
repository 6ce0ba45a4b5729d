/**
 * `GET /metrics` (issue 21): the Prometheus text parses with a real parser,
 * its counters are the runs this program made (two programs in one process
 * count their own), and it is behind the API key unless configured open.
 */
import { HttpServer } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Effect, Layer, Redacted } from "effect"
import parse from "parse-prometheus-text-format"
import * as Demo from "../../src/demo/tasks.ts"
import * as Server from "../../src/http/Server.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { Runs } from "../../src/Runs.ts"
import type { RunId } from "../../src/domain/Ids.ts"
import { quiet } from "../http/support.ts"
import { whenSettled } from "./settled.ts"

const key = "metrics-test-key"

class Base extends Effect.Tag("test/metrics/Base")<Base, string>() {}

const program = (overrides: Partial<Server.ServerOptions> = {}) =>
  Layer.effect(Base, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
    Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1", apiKeys: [Redacted.make(key)], ...overrides })),
    Layer.provideMerge(RunstreamTest.layer({ tasks: Demo.all, workers: { lease: "30 seconds", shutdownGrace: "1 second" }, retention: false })),
    Layer.provide(quiet)
  )

/** Without workers: every run started waits. */
const idleProgram = Layer.effect(Base, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
  Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1", apiKeys: [Redacted.make(key)] })),
  Layer.provideMerge(RunstreamTest.layer({ tasks: Demo.all, workers: false })),
  Layer.provide(quiet)
)

const fetchText = (path: string, headers: Record<string, string> = {}) =>
  Effect.flatMap(Base, (base) =>
    Effect.promise(async () => {
      const response = await fetch(`${base}${path}`, { headers })
      return { status: response.status, text: await response.text(), type: response.headers.get("content-type") }
    }))

const auth = { authorization: `Bearer ${key}` }

const startRuns = (task: string, inputs: ReadonlyArray<unknown>) =>
  Effect.gen(function*() {
    const ids: Array<RunId> = []
    for (const input of inputs) {
      const response = yield* Effect.flatMap(Base, (base) =>
        Effect.promise(() =>
          fetch(`${base}/v1/runs`, {
            method: "POST",
            headers: { ...auth, "content-type": "application/json" },
            body: JSON.stringify({ task, input })
          }).then((r) => r.json() as Promise<{ run: { id: RunId } }>)
        ))
      ids.push(response.run.id)
    }
    const runs = yield* Runs
    for (const id of ids) yield* runs.awaitCompletion(id, { timeout: "15 seconds" })
    return ids
  })

const scrapeOnce = Effect.gen(function*() {
  const { status, text, type } = yield* fetchText("/metrics", auth)
  expect(status).toBe(200)
  expect(type).toContain("text/plain")
  return Object.assign(parse(text), { text })
})

/** The sum of every series of a counter (0 without one). */
const total = (families: ReturnType<typeof parse>, name: string) =>
  (families.find((f) => f.name === name)?.metrics ?? []).reduce((sum, m) => sum + Number(m.value), 0)

/**
 * A scrape once `finished` runs are counted finished and the program's
 * workers hold no run (a program without workers has no such gauge): a run's
 * end is counted just after the commit that lets `awaitCompletion` return.
 */
const scrape = (finished: number) =>
  whenSettled(
    scrapeOnce,
    (families) => total(families, "runstream_runs_finished_total") === finished && (value(families, "runstream_in_flight_runs") ?? 0) === 0
  )

/**
 * A histogram's `_count` of one label set, read from the text: the parser
 * folds every label set of a histogram into one (it reads unlabelled ones only).
 */
const histogramCount = (text: string, name: string, labels: string) =>
  Number(new RegExp(`^${name}_count\\{${labels}\\} (\\S+)$`, "m").exec(text)?.[1])

/** A histogram's `_sum` of one label set, read from the text (as `histogramCount`). */
const histogramSum = (text: string, name: string, labels: string) =>
  Number(new RegExp(`^${name}_sum\\{${labels}\\} (\\S+)$`, "m").exec(text)?.[1])

const value = (families: ReturnType<typeof parse>, name: string, labels: Record<string, string> = {}) => {
  const family = families.find((f) => f.name === name)
  const sample = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
  return sample === undefined ? undefined : Number(sample.value ?? sample.count)
}

describe("GET /metrics", () => {
  it.scopedLive("counts this program's runs only, as the Prometheus text a real parser reads", () =>
    Effect.gen(function*() {
      // Two programs in one process, each on its own database and registry.
      const a = yield* Layer.build(program())
      const b = yield* Layer.build(program())
      yield* startRuns("demo.echo", [1, 2, 3]).pipe(Effect.provide(a))
      yield* startRuns("demo.count", [{ to: 2 }]).pipe(Effect.provide(a))
      yield* startRuns("demo.echo", [4, 5]).pipe(Effect.provide(b))
      // Two attempts (the first fails, retried after a backoff): one run.
      yield* startRuns("demo.flaky", [{ failures: 1 }]).pipe(Effect.provide(a))

      const fromA = yield* Effect.provide(scrape(5), a)
      expect(fromA.find((f) => f.name === "runstream_runs_started_total")?.type).toBe("COUNTER")
      expect(value(fromA, "runstream_runs_started_total", { task: "demo.echo" })).toBe(3)
      expect(value(fromA, "runstream_runs_started_total", { task: "demo.count" })).toBe(1)
      expect(value(fromA, "runstream_runs_finished_total", { task: "demo.echo", outcome: "succeeded" })).toBe(3)
      expect(value(fromA, "runstream_attempts_total", { task: "demo.count", outcome: "succeeded" })).toBe(1)
      const wait = fromA.find((f) => f.name === "runstream_queue_wait_seconds")
      expect(wait?.type).toBe("HISTOGRAM")
      expect(histogramCount(fromA.text, "runstream_queue_wait_seconds", `task="demo.echo"`)).toBe(3)
      expect(histogramCount(fromA.text, "runstream_attempt_duration_seconds", `task="demo.echo"`)).toBe(3)
      expect(histogramCount(fromA.text, "runstream_attempt_duration_seconds", `task="demo.count"`)).toBe(1)
      expect(histogramCount(fromA.text, "runstream_run_duration_seconds", `task="demo.echo"`)).toBe(3)
      expect(histogramCount(fromA.text, "runstream_run_duration_seconds", `task="demo.count"`)).toBe(1)
      // A run's duration is its own, from its first attempt's start: both attempts and the backoff between them.
      expect(histogramCount(fromA.text, "runstream_attempt_duration_seconds", `task="demo.flaky"`)).toBe(2)
      expect(histogramCount(fromA.text, "runstream_run_duration_seconds", `task="demo.flaky"`)).toBe(1)
      expect(histogramSum(fromA.text, "runstream_run_duration_seconds", `task="demo.flaky"`)).toBeGreaterThan(
        histogramSum(fromA.text, "runstream_attempt_duration_seconds", `task="demo.flaky"`)
      )
      // Every event its statements appended: an echo's run.queued, run.started, run.succeeded (3 runs);
      // demo.count's the same and two ticks; demo.flaky's run.started, run.retrying, run.started again.
      expect(value(fromA, "runstream_events_appended_total")).toBe(3 * 3 + 5 + 5)
      // Nothing waits: the queue its workers serve reads 0.
      expect(value(fromA, "runstream_queued_runs", { queue: "default" })).toBe(0)
      expect(value(fromA, "runstream_relay_lag_seconds")).toBeGreaterThanOrEqual(0)
      expect(value(fromA, "runstream_in_flight_runs")).toBe(0)
      expect(value(fromA, "runstream_live_streams")).toBe(0)

      const fromB = yield* Effect.provide(scrape(2), b)
      expect(value(fromB, "runstream_runs_started_total", { task: "demo.echo" })).toBe(2)
      expect(value(fromB, "runstream_runs_started_total", { task: "demo.count" })).toBeUndefined()
      expect(value(fromB, "runstream_runs_finished_total", { task: "demo.echo", outcome: "succeeded" })).toBe(2)
      expect(value(fromB, "runstream_events_appended_total")).toBe(2 * 3)
    }), 60_000)

  it.scopedLive("reads the waiting runs per queue and the pool's connections when scraped", () =>
    Effect.gen(function*() {
      const idle = yield* Layer.build(idleProgram)
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        yield* runs.start(Demo.Echo, 1, { queue: "q1" })
        yield* runs.start(Demo.Echo, 2, { queue: "q1" })
        yield* runs.start(Demo.Echo, 3, { queue: "q2" })
        // Due in an hour: scheduled, not waiting.
        yield* runs.start(Demo.Echo, 4, { queue: "q2", runAt: DateTime.unsafeMake(Date.now() + 3_600_000) })
        // A waiting run cancelled over the API finishes without an attempt: counted as finished, cancelled.
        const cancelled = yield* runs.start(Demo.Echo, 5, { queue: "q3" })
        yield* runs.cancel(cancelled.id)
      }).pipe(Effect.provide(idle))
      const families = yield* Effect.provide(scrape(1), idle)
      expect(value(families, "runstream_runs_finished_total", { task: "demo.echo", outcome: "cancelled" })).toBe(1)
      expect(value(families, "runstream_queued_runs", { queue: "q1" })).toBe(2)
      expect(value(families, "runstream_queued_runs", { queue: "q2" })).toBe(1)
      // q3's only run was cancelled: not a queue this program knows (no worker serves it), no series.
      expect(value(families, "runstream_queued_runs", { queue: "q3" })).toBeUndefined()
      expect(value(families, "runstream_queued_runs", { queue: "default" })).toBe(0)
      // Five run.queued, one run.cancelled.
      expect(value(families, "runstream_events_appended_total")).toBe(6)
      expect(value(families, "runstream_runs_started_total", { task: "demo.echo" })).toBe(5)
      // The scrape's own statement holds a connection while the pool is read, or has just given it back.
      expect(value(families, "runstream_db_pool_connections", { state: "in_use" })).toBeGreaterThanOrEqual(0)
      expect(value(families, "runstream_db_pool_connections", { state: "idle" })).toBeGreaterThanOrEqual(0)
      expect(value(families, "runstream_db_pool_connections", { state: "waiting" })).toBe(0)
      expect(value(families, "runstream_in_flight_runs")).toBeUndefined() // no workers
    }), 60_000)

  it.scopedLive("is behind the API key, unless configured open", () =>
    Effect.gen(function*() {
      const closed = yield* Layer.build(program())
      const refused = yield* Effect.provide(fetchText("/metrics"), closed)
      expect(refused.status).toBe(401)
      expect(JSON.parse(refused.text).error.code).toBe("unauthorized")
      const wrong = yield* Effect.provide(fetchText("/metrics", { authorization: "Bearer nope" }), closed)
      expect(wrong.status).toBe(401)

      const open = yield* Layer.build(program({ metricsOpen: true }))
      const answered = yield* Effect.provide(fetchText("/metrics"), open)
      expect(answered.status).toBe(200)
      // Open for /metrics alone.
      expect((yield* Effect.provide(fetchText("/v1/runs"), open)).status).toBe(401)
    }), 60_000)

  it.scopedLive("answers on a port of its own, open, for a worker program without the API", () =>
    Effect.gen(function*() {
      const worker = yield* Layer.build(
        Layer.effect(Base, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
          Layer.provide(Server.layerMetrics({ port: 0, host: "127.0.0.1" })),
          Layer.provideMerge(RunstreamTest.layer({ tasks: Demo.all, workers: { lease: "30 seconds", shutdownGrace: "1 second" }, retention: false })),
          Layer.provide(quiet)
        )
      )
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Demo.Echo, 1)
        yield* runs.awaitCompletion(run.id, { timeout: "15 seconds" })
      }).pipe(Effect.provide(worker))
      const families = yield* Effect.provide(scrape(1), worker)
      expect(value(families, "runstream_runs_started_total", { task: "demo.echo" })).toBe(1)
      expect(value(families, "runstream_runs_finished_total", { task: "demo.echo", outcome: "succeeded" })).toBe(1)
      expect(value(families, "runstream_in_flight_runs")).toBe(0)
      expect((yield* Effect.provide(fetchText("/v1/runs"), worker)).status).toBe(404)
    }), 60_000)
})
