/**
 * Traces (issue 21): one trace from the HTTP request that starts a run (and
 * the caller's `traceparent` before it) through the worker's attempt span to
 * the task body's own span, read from an in-memory span exporter.
 */
import { HttpServer } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, HashMap, Layer, Logger, Schema } from "effect"
import * as Server from "../../src/http/Server.ts"
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

class Base extends Effect.Tag("test/tracing/Base")<Base, string>() {}

const program = (exporter: InMemorySpanExporter | undefined) => {
  const app = Layer.effect(Base, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
    Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1" })),
    Layer.provideMerge(RunstreamTest.layer({ tasks: [Traced], workers: { lease: "30 seconds", shutdownGrace: "1 second" }, retention: false }))
  )
  // As the programs have it (`Programs.ts`): the tracer under everything.
  return (exporter === undefined ? app : app.pipe(Layer.provide(Tracing.layer(new SimpleSpanProcessor(exporter), "runstream-test")))).pipe(
    Layer.provide(quiet)
  )
}

const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
const callerSpan = "00f067aa0ba902b7"

const startOverHttp = (headers: Record<string, string>) =>
  Effect.gen(function*() {
    const base = yield* Base
    const body = yield* Effect.promise(() =>
      fetch(`${base}/v1/runs`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ task: "test.traced", input: { n: 1 } })
      }).then((r) => r.json() as Promise<{ run: { id: RunId } }>)
    )
    yield* Effect.flatMap(Runs, (runs) => runs.awaitCompletion(body.run.id, { timeout: "15 seconds" }))
    return body.run.id
  })

const storedTraceparent = (id: RunId) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql<{ traceparent: string | null }>`SELECT traceparent FROM runstream_runs WHERE id = ${id}`, (rows) => rows[0]!.traceparent))

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId

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
})
