/**
 * Traces (issue 21): spans exported over OTLP/HTTP by `@effect/opentelemetry`
 * when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, and
 * one trace from the request that starts a run to its attempts, wherever and
 * whenever they run: the start stores the W3C `traceparent` of its span with
 * the run (migration 0013), and each attempt's span takes it as its parent
 * (`Tracer.externalSpan`); a task body's own `Effect.withSpan` nests under the
 * attempt's span.
 *
 * Unset, no tracer layer is built and the `Tracing` service is absent: a start
 * stores nothing, a worker looks nothing up and opens no attempt span.
 * @since 0.4.0
 */
import { SqlClient } from "@effect/sql"
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Config, Context, Effect, Layer, Option, Tracer } from "effect"
import type { RunId } from "../domain/Ids.ts"
import type { Claim } from "../queue/Claiming.ts"

/** Present when spans are exported: parts that trace runs look for it (`option`). */
export class Tracing extends Context.Tag("runstream/Tracing")<Tracing, {
  /** The exporting service's name (`OTEL_SERVICE_NAME`). */
  readonly serviceName: string
}>() {}

/** @category config */
export const TracingConfig = Config.all({
  endpoint: Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_ENDPOINT")),
  tracesEndpoint: Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  disabled: Config.boolean("OTEL_SDK_DISABLED").pipe(Config.withDefault(false)),
  serviceName: Config.option(Config.nonEmptyString("OTEL_SERVICE_NAME"))
})

/** Whether the variables ask for spans to be exported. */
export const isEnabled = (config: Config.Config.Success<typeof TracingConfig>) =>
  !config.disabled && (Option.isSome(config.endpoint) || Option.isSome(config.tracesEndpoint))

/**
 * Spans handed to `processor` (an exporter's, or an in-memory one in tests),
 * as the service `serviceName`. The SDK is imported when the layer is built:
 * a program without tracing never loads it.
 */
export const layer = (processor: SpanProcessor, serviceName = "runstream") =>
  Layer.unwrapEffect(Effect.map(
    Effect.promise(() => import("@effect/opentelemetry/NodeSdk")),
    (NodeSdk) =>
      NodeSdk.layer(() => ({ resource: { serviceName }, spanProcessor: processor })).pipe(
        Layer.provideMerge(Layer.succeed(Tracing, { serviceName }))
      )
  ))

/**
 * Tracing as the standard OpenTelemetry variables say: none unless an OTLP
 * endpoint is set (and `OTEL_SDK_DISABLED` is not true); then batches of spans
 * posted over OTLP/HTTP (the exporter reads the endpoint, headers and timeout
 * variables itself). The exporter is imported only then.
 */
export const layerFromEnv = (defaultServiceName: string) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const config = yield* TracingConfig
    if (!isEnabled(config)) return Layer.empty
    const [{ OTLPTraceExporter }, { BatchSpanProcessor }] = yield* Effect.promise(() =>
      Promise.all([import("@opentelemetry/exporter-trace-otlp-http"), import("@opentelemetry/sdk-trace-base")])
    )
    return layer(new BatchSpanProcessor(new OTLPTraceExporter()), Option.getOrElse(config.serviceName, () => defaultServiceName))
  }))

/** The program's tracing, if spans are exported. */
export const option = Effect.map(Effect.serviceOption(Tracing), Option.getOrUndefined)

/** The W3C `traceparent` of a span (version 00). */
export const traceparentOf = (span: Tracer.AnySpan): string =>
  `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** A stored `traceparent` as the parent of spans in this process; none when malformed. */
export const parentOf = (traceparent: string | null | undefined): Tracer.ExternalSpan | undefined => {
  const match = traceparent == null ? null : traceparentPattern.exec(traceparent)
  if (match === null) return undefined
  return Tracer.externalSpan({
    traceId: match[1]!,
    spanId: match[2]!,
    sampled: (Number.parseInt(match[3]!, 16) & 1) === 1
  })
}

/** The `traceparent` of the current span, to store with a run started now; none outside a span. */
export const currentTraceparent: Effect.Effect<string | undefined> = Effect.map(
  Effect.option(Effect.currentSpan),
  (span) => Option.getOrUndefined(Option.map(span, traceparentOf))
)

/**
 * The traceparents stored with runs, by run: one statement for a batch of
 * claimed runs (only with tracing on). A failure loses the link, not the runs.
 */
export const traceparentsOf = (ids: ReadonlyArray<RunId>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ id: RunId; traceparent: string }>`
      SELECT id, traceparent FROM runstream_runs WHERE id = ANY(${ids}::uuid[]) AND traceparent IS NOT NULL`
    return new Map(rows.map((row) => [row.id, row.traceparent]))
  }).pipe(
    Effect.catchAllCause((cause) =>
      Effect.as(Effect.logDebug("could not read the traceparents of claimed runs", cause), new Map<RunId, string>())
    )
  )

/**
 * An attempt's span: a child of the span that started its run when one was
 * stored, else a root; the body's own spans nest under it.
 */
export const attemptSpan = (claim: Claim, traceparent: string | undefined) =>
  Effect.withSpan("runstream.attempt", {
    kind: "consumer",
    ...(traceparent === undefined ? { root: true } : { parent: parentOf(traceparent) }),
    attributes: {
      "runstream.run_id": claim.runId,
      "runstream.task": claim.task,
      "runstream.attempt": claim.attempt,
      "runstream.queue": claim.queue
    }
  })
