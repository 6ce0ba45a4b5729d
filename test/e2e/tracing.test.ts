/**
 * One trace across processes (issue 21): a server process (no workers) and a
 * worker process on one database, both exporting spans over OTLP/HTTP to a
 * collector stand-in here; a run started over HTTP with a caller's
 * `traceparent` is run by the worker in an attempt span of the caller's trace,
 * and the task body's own span (`demo.count.ticks`) is that attempt's child.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Queue, Redacted } from "effect"
import { DatabaseUrl } from "../../src/Database.ts"
import { TestDatabase } from "../../src/testing/index.ts"
import * as Sse from "../http/sse.ts"
import { collector } from "../metrics/collector.ts"
import * as Child from "./Child.ts"

interface ExportedSpan {
  readonly service: string
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string
  readonly attributes: Record<string, unknown>
}

/** The spans of an OTLP/HTTP (JSON) trace export, each with its process's service name. */
const spansOf = (body: any): Array<ExportedSpan> =>
  (body.resourceSpans ?? []).flatMap((resource: any) => {
    const service = resource.resource?.attributes?.find((a: any) => a.key === "service.name")?.value?.stringValue
    return (resource.scopeSpans ?? []).flatMap((scope: any) =>
      (scope.spans ?? []).map((span: any): ExportedSpan => ({
        service,
        name: span.name,
        traceId: span.traceId,
        spanId: span.spanId,
        parentSpanId: span.parentSpanId ?? "",
        attributes: Object.fromEntries((span.attributes ?? []).map((a: any) => [a.key, Object.values(a.value)[0]]))
      }))
    )
  })

const callerTrace = "0af7651916cd43dd8448eb211c80319c"
const callerSpan = "b7ad6b7169203331"

describe("traces across processes", () => {
  it.scoped("the worker process's attempt, and its body's span, join the trace of the request the server process took", () =>
    Effect.gen(function*() {
      const { endpoint, received } = yield* collector
      const { url } = yield* DatabaseUrl
      const env = {
        DATABASE_URL: Redacted.value(url),
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
        // Batches sent at once rather than every 5 seconds.
        OTEL_BSP_SCHEDULE_DELAY: "50"
      }
      const server = yield* Child.start("src/main/server.ts", { ...env, PORT: "0", HOST: "127.0.0.1" })
      const [, base] = yield* server.waitFor(/listening on (http:\/\/[\d.]+:\d+)/)
      const worker = yield* Child.start("src/main/worker.ts", env)
      yield* worker.waitFor(/workers ready/)

      const started = yield* Effect.promise(() =>
        fetch(`${base}/v1/runs`, {
          method: "POST",
          headers: { "content-type": "application/json", traceparent: `00-${callerTrace}-${callerSpan}-01` },
          body: JSON.stringify({ task: "demo.count", input: { to: 2 } })
        }).then((r) => r.json() as Promise<{ run: { id: string } }>)
      )
      const response = yield* Effect.promise(() => fetch(`${base}/v1/runs/${started.run.id}/events`, { headers: { accept: "text/event-stream" } }))
      const events = yield* Sse.collect(Sse.events(response.body!))
      expect(events.at(-1)?.event).toBe("run.succeeded")

      // Spans arrive as the processes export them: wait for the attempt's and the body's.
      const seen: Array<ExportedSpan> = []
      const arrived = (name: string) => seen.some((span) => span.name === name && span.traceId === callerTrace)
      while (!arrived("runstream.attempt") || !arrived("demo.count.ticks")) {
        const export_ = yield* Queue.take(received).pipe(Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error(JSON.stringify(seen)) }))
        if (export_.path === "/v1/traces") seen.push(...spansOf(export_.body))
      }
      const request = seen.find((span) => span.traceId === callerTrace && span.parentSpanId === callerSpan)
      expect(request?.service).toBe("runstream-server")
      expect(request?.name).toMatch(/^http\.server/)
      const attempt = seen.find((span) => span.name === "runstream.attempt" && span.traceId === callerTrace)!
      expect(attempt.service).toBe("runstream-worker")
      expect(attempt.parentSpanId).toBe(request!.spanId)
      expect(attempt.attributes).toMatchObject({ "runstream.run_id": started.run.id, "runstream.task": "demo.count" })
      // The task body's own span, in the worker process, under its attempt.
      const body = seen.find((span) => span.name === "demo.count.ticks" && span.traceId === callerTrace)!
      expect(body.service).toBe("runstream-worker")
      expect(body.parentSpanId).toBe(attempt.spanId)
      expect(body.attributes).toMatchObject({ "demo.to": 2 })
    }).pipe(Effect.provide(TestDatabase.layerUrl)), { timeout: 300_000 })
})
