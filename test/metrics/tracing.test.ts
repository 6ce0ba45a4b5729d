/**
 * Traces (issue 21): one trace from the HTTP request that starts a run (and
 * the caller's `traceparent` before it) through the worker's attempt span to
 * the task body's own span, read from an in-memory span exporter.
 */
import { HttpServer } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { ConfigProvider, Effect, Exit, FiberRef, HashMap, HashSet, Layer, Logger, Queue, Schema, Stream } from "effect"
import { vi } from "vitest"
import * as Main from "../../src/main/Main.ts"
import * as Server from "../../src/http/Server.ts"
import * as RunstreamClient from "../../src/rpc/RunstreamClient.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import * as Task from "../../src/Task.ts"
import { withTraceIds } from "../../src/tracing/TraceLogs.ts"
import * as Tracing from "../../src/tracing/Tracing.ts"
import type { RunId } from "../../src/domain/Ids.ts"
import { quiet } from "../http/support.ts"

/** A body with a span of its own, as any task may have. */
const Traced = Task.make("test.traced", {
  input: Schema.Struct({ n: Schema.Int }),
  output: Schema.Struct({ n: Schema.Int }),
  run: ({ n }) => Effect.succeed({ n: n + 1 }).pipe(Effect.withSpan("test.body", { attributes: { n } }))
})

/** A body that emits two events. */
const Emitting = Task.make("test.emitting", {
  input: Schema.Struct({}),
  output: Schema.Struct({}),
  run: (_input, ctx) => Effect.as(Effect.zipRight(ctx.emit("one", {}), ctx.emit("two", {})), {})
})

class Base extends Effect.Tag("test/tracing/Base")<Base, string>() {}

/**
 * The tracer as `variables` (the standard OTel ones: `OTEL_TRACES_SAMPLER`...)
 * configure it, read through the program's config.
 */
const tracer = (exporter: InMemorySpanExporter | SpanProcessor, variables: Record<string, string> = {}) =>
  Tracing.layer(exporter instanceof InMemorySpanExporter ? new SimpleSpanProcessor(exporter) : exporter, "runstream-test").pipe(
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(variables)))))
  )

const program = (exporter: InMemorySpanExporter | SpanProcessor | undefined, variables: Record<string, string> = {}) => {
  const app = Layer.effect(Base, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
    Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1" })),
    Layer.provideMerge(RunstreamTest.layer({ tasks: [Traced, Emitting], workers: { lease: "30 seconds", shutdownGrace: "1 second" }, retention: false }))
  )
  // As the programs have it (`Programs.ts`): the tracer under everything.
  return (exporter === undefined ? app : app.pipe(Layer.provide(tracer(exporter, variables)))).pipe(Layer.provide(quiet))
}

/** A span processor that hands each span, as it ends, to a queue: a test waits for the spans it needs. */
const spanQueue = Effect.map(Queue.unbounded<ReadableSpan>(), (queue) => {
  const processor: SpanProcessor = {
    onStart: () => {},
    onEnd: (span) => Queue.unsafeOffer(queue, span),
    forceFlush: () => Promise.resolve(),
    shutdown: () => Promise.resolve()
  }
  return { queue, processor }
})

const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
const callerSpan = "00f067aa0ba902b7"

/**
 * Starts a run over HTTP and waits for its end. `options.runAt`: due at once,
 * but not handed to the idle worker at its creation: its worker's claim takes it.
 */
const startOverHttp = (headers: Record<string, string>, options: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    const base = yield* Base
    const body = yield* Effect.promise(() =>
      fetch(`${base}/v1/runs`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ task: "test.traced", input: { n: 1 }, ...options })
      }).then((r) => r.json() as Promise<{ run: { id: RunId } }>)
    )
    expect(body.run, JSON.stringify(body)).toBeDefined()
    yield* Effect.flatMap(Runs, (runs) => runs.awaitCompletion(body.run.id, { timeout: "15 seconds" }))
    return body.run.id
  })

const storedTraceparent = (id: RunId) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<{ traceparent: string | null }>`SELECT traceparent FROM runstream_runs WHERE id = ${id}`, (rows) => rows[0]!.traceparent))

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId

/** The spans that name run `id` (the HTTP requests' and its attempts'), and those of its traces. */
const spansOfRun = (exporter: InMemorySpanExporter, id: RunId) => {
  const spans = exporter.getFinishedSpans()
  const named = spans.filter((span) => span.attributes["runstream.run_id"] === id)
  const traces = new Set(named.map((span) => span.spanContext().traceId))
  return { named, inTraces: spans.filter((span) => traces.has(span.spanContext().traceId)) }
}

const get = (path: string, headers: Record<string, string> = {}) =>
  Effect.flatMap(Base, (base) =>
    Effect.promise(async () => {
      const response = await fetch(`${base}${path}`, { headers })
      await response.arrayBuffer()
      return response.status
    }))

const post = (path: string, json?: unknown) =>
  Effect.flatMap(Base, (base) =>
    Effect.promise(async () => {
      const response = await fetch(
        `${base}${path}`,
        json === undefined ? { method: "POST" } : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(json) }
      )
      await response.arrayBuffer()
      return response.status
    }))

describe("traces", () => {
  it.scopedLive("one trace from the HTTP start through the attempt to the task's own span", () =>
    Effect.gen(function*() {
      const exporter = new InMemorySpanExporter()
      const context = yield* Layer.build(program(exporter))
      const id = yield* startOverHttp({ traceparent: `00-${callerTrace}-${callerSpan}-01` }).pipe(Effect.provide(context))

      const spans = exporter.getFinishedSpans()
      const inTrace = spans.filter((span) => span.spanContext().traceId === callerTrace)
      const server = inTrace.find((span) => span.name.startsWith("http.server") && parentOf(span) === callerSpan)
      expect(server, spans.map((s) => s.name).join(", ")).toBeDefined()
      // The run keeps the request's span, and its attempt is that span's child.
      expect(yield* Effect.provide(storedTraceparent(id), context)).toBe(`00-${callerTrace}-${server!.spanContext().spanId}-01`)
      const attempt = inTrace.find((span) => span.name === "runstream.attempt")
      expect(attempt).toBeDefined()
      expect(parentOf(attempt!)).toBe(server!.spanContext().spanId)
      expect(attempt!.attributes).toMatchObject({
        "runstream.run_id": id,
        "runstream.task": "test.traced",
        "runstream.attempt": 1,
        "runstream.queue": "default"
      })
      const body = inTrace.find((span) => span.name === "test.body")
      expect(body).toBeDefined()
      expect(parentOf(body!)).toBe(attempt!.spanContext().spanId)
    }), 60_000)

  it.scopedLive("without a tracer, a run keeps no traceparent", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(program(undefined))
      const id = yield* startOverHttp({ traceparent: `00-${callerTrace}-${callerSpan}-01` }).pipe(Effect.provide(context))
      expect(yield* Effect.provide(storedTraceparent(id), context)).toBeNull()
    }), 60_000)

  it.scopedLive("OTEL_TRACES_SAMPLER=traceidratio, ratio 0: nothing of a run is exported", () =>
    Effect.gen(function*() {
      const none = new InMemorySpanExporter()
      const noneContext = yield* Layer.build(
        program(none, { OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "0" })
      )
      // Taken at its start (handed over), and taken by the claim.
      const handed = yield* startOverHttp({}).pipe(Effect.provide(noneContext))
      const claimed = yield* startOverHttp({}, { runAt: new Date().toISOString() }).pipe(Effect.provide(noneContext))
      expect(yield* Effect.provide(storedTraceparent(handed), noneContext)).toMatch(/-00$/)
      expect(none.getFinishedSpans().map((span) => span.name)).toEqual([])
      expect(spansOfRun(none, claimed).named).toEqual([])
    }), 60_000)

  it.scopedLive("OTEL_TRACES_SAMPLER=traceidratio, ratio 1: all of a run is exported", () =>
    Effect.gen(function*() {
      const all = new InMemorySpanExporter()
      const allContext = yield* Layer.build(program(all, { OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "1" }))
      for (const options of [{}, { runAt: new Date().toISOString() }]) {
        const id = yield* startOverHttp({}, options).pipe(Effect.provide(allContext))
        const names = spansOfRun(all, id).inTraces.map((span) => span.name)
        expect(names).toContain("runstream.attempt")
        expect(names).toContain("test.body")
        expect(names.some((name) => name.startsWith("http.server POST"))).toBe(true)
      }
    }), 60_000)

  it.scopedLive("parent-based sampling follows the caller's traceparent: sampled, all of the run; unsampled, none", () =>
    Effect.gen(function*() {
      const exporter = new InMemorySpanExporter()
      // Roots never sampled: only a sampled caller's runs are traced.
      const context = yield* Layer.build(
        program(exporter, { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0" })
      )
      const sampledTrace = "11111111111111111111111111111111"
      const unsampledTrace = "22222222222222222222222222222222"
      const sampled = yield* startOverHttp({ traceparent: `00-${sampledTrace}-${callerSpan}-01` }).pipe(Effect.provide(context))
      const unsampled = yield* startOverHttp({ traceparent: `00-${unsampledTrace}-${callerSpan}-00` }).pipe(
        Effect.provide(context)
      )
      const claimedUnsampled = yield* startOverHttp(
        { traceparent: `00-${unsampledTrace}-${callerSpan}-00` },
        { runAt: new Date().toISOString() }
      ).pipe(Effect.provide(context))
      const root = yield* startOverHttp({}).pipe(Effect.provide(context))

      const spans = exporter.getFinishedSpans()
      const names = spans.filter((span) => span.spanContext().traceId === sampledTrace).map((span) => span.name)
      expect(names).toContain("runstream.attempt")
      expect(names).toContain("test.body")
      expect(spansOfRun(exporter, sampled).named.length).toBeGreaterThanOrEqual(2)
      expect(spans.filter((span) => span.spanContext().traceId === unsampledTrace).map((span) => span.name)).toEqual([])
      expect(spansOfRun(exporter, unsampled).named).toEqual([])
      expect(spansOfRun(exporter, claimedUnsampled).named).toEqual([])
      expect(spansOfRun(exporter, root).named).toEqual([])
    }), 60_000)

  it.scopedLive("the default sampler (parentbased_always_on) samples a root, not an unsampled caller's run", () =>
    Effect.gen(function*() {
      const unsampledTrace = "22222222222222222222222222222222"
      const always = new InMemorySpanExporter()
      const alwaysContext = yield* Layer.build(program(always))
      const traced = yield* startOverHttp({}).pipe(Effect.provide(alwaysContext))
      const untraced = yield* startOverHttp({ traceparent: `00-${unsampledTrace}-${callerSpan}-00` }).pipe(
        Effect.provide(alwaysContext)
      )
      expect(spansOfRun(always, traced).named.map((span) => span.name)).toContain("runstream.attempt")
      expect(spansOfRun(always, untraced).named).toEqual([])
    }), 60_000)

  it.scopedLive("a sampler or ratio the SDK does not take refuses the start, naming the variable", () =>
    Effect.gen(function*() {
      for (
        const [variables, named] of [
          [{ OTEL_TRACES_SAMPLER: "sometimes" }, "OTEL_TRACES_SAMPLER"],
          [{ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "2" }, "OTEL_TRACES_SAMPLER_ARG"],
          [{ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "half" }, "OTEL_TRACES_SAMPLER_ARG"]
        ] as const
      ) {
        const exit = yield* Effect.exit(Layer.build(tracer(new InMemorySpanExporter(), variables)))
        expect(Exit.isFailure(exit)).toBe(true)
        expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain(named)
      }
      // A ratio is read by the ratio samplers only, as the SDK does.
      expect(Exit.isSuccess(
        yield* Effect.exit(Layer.build(tracer(new InMemorySpanExporter(), { OTEL_TRACES_SAMPLER: "always_on", OTEL_TRACES_SAMPLER_ARG: "x" })))
      )).toBe(true)
    }))

  it.scopedLive("the spans of requests about a run carry its id, and its task when known", () =>
    Effect.gen(function*() {
      const exporter = new InMemorySpanExporter()
      const context = yield* Layer.build(program(exporter))
      const id = yield* startOverHttp({}).pipe(Effect.provide(context))
      yield* Effect.gen(function*() {
        expect(yield* get(`/v1/runs/${id}`)).toBe(200)
        expect(yield* get(`/v1/runs/${id}/events`, { accept: "application/json" })).toBe(200)
        expect(yield* get(`/v1/runs/${id}/events`, { accept: "text/event-stream" })).toBe(200)
        // Finished: refused (409), still a request about the run.
        expect(yield* post(`/v1/runs/${id}/cancel`)).toBe(409)
        expect(yield* post(`/v1/runs/${id}/signals/approve`, { data: {} })).toBe(409)
      }).pipe(Effect.provide(context))
      const server = exporter.getFinishedSpans().filter((span) => span.name.startsWith("http.server"))
      const about = (method: string, path: string) =>
        server.filter((span) => span.attributes["http.request.method"] === method && span.attributes["url.path"] === path)
          .map((span) => ({ run: span.attributes["runstream.run_id"], task: span.attributes["runstream.task"] }))
      expect(about("POST", "/v1/runs")).toEqual([{ run: id, task: "test.traced" }])
      expect(about("GET", `/v1/runs/${id}`)).toEqual([{ run: id, task: "test.traced" }])
      expect(about("GET", `/v1/runs/${id}/events`)).toEqual([{ run: id, task: undefined }, { run: id, task: undefined }])
      expect(about("POST", `/v1/runs/${id}/cancel`)).toEqual([{ run: id, task: undefined }])
      expect(about("POST", `/v1/runs/${id}/signals/approve`)).toEqual([{ run: id, task: undefined }])
    }), 60_000)

  it.scopedLive("RPC calls about a run carry its id on their spans, and its task when known", () =>
    Effect.gen(function*() {
      const exporter = new InMemorySpanExporter()
      const context = yield* Layer.build(program(exporter))
      const client = Layer.unwrapEffect(Effect.map(Base, (base) => RunstreamClient.layer({ url: `${base}/rpc` })))
      const id = yield* Effect.gen(function*() {
        const rpc = yield* RunstreamClient.RunstreamClient
        const { run } = yield* rpc.start("test.traced", { n: 1 })
        yield* rpc.awaitCompletion(run.id)
        yield* rpc.get(run.id)
        yield* Stream.runDrain(rpc.events(run.id))
        // Finished: refused, still a call about the run.
        yield* Effect.either(rpc.cancel(run.id))
        yield* Effect.either(rpc.signal(run.id, "approve", {}))
        return run.id
      }).pipe(Effect.provide(client), Effect.provide(context))
      const about = (tag: string) =>
        exporter.getFinishedSpans().filter((span) => span.name === `RpcServer.${tag}`)
          .map((span) => ({ run: span.attributes["runstream.run_id"], task: span.attributes["runstream.task"] }))
      expect(about("Start")).toEqual([{ run: id, task: "test.traced" }])
      expect(about("AwaitCompletion")).toEqual([{ run: id, task: undefined }])
      expect(about("Get")).toEqual([{ run: id, task: "test.traced" }])
      expect(about("Events")).toEqual([{ run: id, task: undefined }])
      expect(about("Cancel")).toEqual([{ run: id, task: undefined }])
      expect(about("Signal")).toEqual([{ run: id, task: undefined }])
    }), 60_000)

  it.scopedLive("a claim's span names its batch; each attempt it began links to it and joins its run's trace", () =>
    Effect.gen(function*() {
      const exporter = new InMemorySpanExporter()
      const context = yield* Layer.build(program(exporter))
      // Due at once but not handed over: the claim takes it, with its traceparent.
      const id = yield* startOverHttp({ traceparent: `00-${callerTrace}-${callerSpan}-01` }, { runAt: new Date().toISOString() }).pipe(
        Effect.provide(context)
      )
      const spans = exporter.getFinishedSpans()
      const claim = spans.find((span) =>
        span.name === "RunQueue.claim" && String(span.attributes["runstream.run_ids"]).split(",").includes(id)
      )
      expect(claim, spans.map((span) => span.name).join(", ")).toBeDefined()
      expect(claim!.attributes).toMatchObject({ "runstream.queues": "default", "runstream.batch_size": 1, "runstream.run_ids": id })
      expect(claim!.attributes["runstream.batch_limit"]).toBeGreaterThanOrEqual(1)
      const attempt = spans.find((span) => span.name === "runstream.attempt" && span.attributes["runstream.run_id"] === id)
      expect(attempt).toBeDefined()
      expect(attempt!.links.map((link) => link.context.spanId)).toEqual([claim!.spanContext().spanId])
      // The claim brought the run's traceparent: the attempt is the start request's child.
      const server = spans.find((span) => span.name.startsWith("http.server POST") && span.attributes["runstream.run_id"] === id)
      expect(attempt!.spanContext().traceId).toBe(callerTrace)
      expect(parentOf(attempt!)).toBe(server!.spanContext().spanId)
    }), 60_000)

  it.scopedLive("each group commit has a root span that says what it wrote; each relay batch one that says what it published", () =>
    Effect.gen(function*() {
      const { processor, queue } = yield* spanQueue
      const context = yield* Layer.build(program(processor))
      const id = yield* Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Emitting, {})
        yield* runs.awaitCompletion(run.id, { timeout: "15 seconds" })
        return run.id
      }).pipe(Effect.provide(context))

      // The run's log: run.queued, run.started, two emits, run.succeeded.
      const commits: Array<ReadableSpan> = []
      const drains: Array<ReadableSpan> = []
      const sum = (spans: ReadonlyArray<ReadableSpan>, key: string) => spans.reduce((n, span) => n + Number(span.attributes[key] ?? 0), 0)
      while (sum(commits, "runstream.runs_ended") < 1 || sum(commits, "runstream.events_appended") < 2 || sum(drains, "runstream.events_published") < 5) {
        const span = yield* Queue.take(queue).pipe(
          Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error(JSON.stringify([...commits, ...drains].map((s) => s.attributes))) })
        )
        if (span.name === "runstream.group_commit") commits.push(span)
        if (span.name === "runstream.relay_drain") drains.push(span)
      }
      // One run's writes: each batch names it, none has a parent (a batch serves many traces).
      for (const span of [...commits, ...drains]) expect(parentOf(span)).toBeUndefined()
      for (const span of commits) expect(span.attributes["runstream.run_ids"]).toBe(id)
      expect(sum(commits, "runstream.events_appended")).toBe(2)
      expect(sum(commits, "runstream.emits")).toBe(2)
      const end = commits.find((span) => span.attributes["runstream.ends"] === 1)
      expect(end?.attributes).toMatchObject({ "runstream.batch_size": 1, "runstream.runs_ended": 1, "runstream.events_appended": 0 })
      expect(sum(drains, "runstream.events_published")).toBe(5)
      expect(drains[0]!.attributes["runstream.batch_limit"]).toBeGreaterThan(0)
    }), 60_000)

  it.effect("log lines written in a span carry its trace and span ids", () => {
    const lines: Array<Record<string, unknown>> = []
    const capture = Logger.make(({ annotations, message }) => {
      lines.push({ message, ...Object.fromEntries(HashMap.toEntries(annotations)) })
    })
    return Effect.gen(function*() {
      const span = yield* Effect.gen(function*() {
        yield* Effect.log("inside")
        return yield* Effect.currentSpan
      }).pipe(Effect.withSpan("logged"))
      yield* Effect.log("outside")
      expect(lines).toEqual([
        { message: ["inside"], traceId: span.traceId, spanId: span.spanId },
        { message: ["outside"] }
      ])
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, withTraceIds(capture))))
  })

  it.effect("the program's logger (Main.layerLogging), with no spans exported, writes the ids of the span a line is written in", () =>
    Effect.gen(function*() {
      const written: Array<string> = []
      const log = vi.spyOn(globalThis.console, "log").mockImplementation((line: unknown) => {
        written.push(String(line))
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => log.mockRestore()))
      for (const format of ["json", "logfmt"] as const) {
        written.length = 0
        const span = yield* Effect.gen(function*() {
          yield* Effect.logInfo("inside")
          return yield* Effect.currentSpan
        }).pipe(
          Effect.withSpan("logged"),
          Effect.zipLeft(Effect.logInfo("outside")),
          Effect.provide(Main.layerLogging.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["RUNSTREAM_LOG_FORMAT", format]])))))),
          // A process's loggers, as `Main.run` starts with them (the test runner's are its own).
          Effect.locally(FiberRef.currentLoggers, HashSet.make(Logger.defaultLogger))
        )
        expect(written, written.join("\n")).toHaveLength(2)
        if (format === "json") {
          const [inside, outside] = written.map((line) => JSON.parse(line) as { message: unknown; annotations: Record<string, unknown> })
          expect(inside).toMatchObject({ message: "inside", annotations: { traceId: span.traceId, spanId: span.spanId } })
          expect(outside!.annotations).toEqual({})
        } else {
          expect(written[0]).toContain(`traceId=${span.traceId}`)
          expect(written[0]).toContain(`spanId=${span.spanId}`)
          expect(written[1]).not.toContain("traceId=")
        }
      }
    }).pipe(Effect.scoped))
})
