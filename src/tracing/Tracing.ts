/**
 * Traces (issue 21): spans exported over OTLP/HTTP by `@effect/opentelemetry`
 * when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, and
 * one trace from the request that starts a run to its attempts, wherever and
 * whenever they run: the start stores the W3C `traceparent` of its span with
 * the run (migration 0013), and each attempt's span takes it as its parent
 * (`Tracer.externalSpan`, brought by the claim); a task body's own
 * `Effect.withSpan` nests under the attempt's span. Sampled as the standard
 * variables say (`SamplerConfig`), a remote parent's decision kept.
 *
 * Unset, no tracer layer is built and the `Tracing` service is absent: a start
 * stores nothing, a worker's claim is the plain statement and it opens no
 * attempt span.
 * @since 0.4.0
 */
import type { Sampler, SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Config, ConfigError, Context, Effect, Either, Layer, Option, Tracer } from "effect"
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

/** The samplers `OTEL_TRACES_SAMPLER` names that the JavaScript SDK has. */
export const samplerNames = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio"
] as const

/**
 * The standard sampling variables: `OTEL_TRACES_SAMPLER` (default
 * `parentbased_always_on`, as the SDK's) and, for the ratio samplers,
 * `OTEL_TRACES_SAMPLER_ARG` (a fraction from 0 to 1, default 1). Read with
 * the program's `Config`, so a name or fraction the SDK would only log and
 * replace refuses the start, naming the variable.
 * @category config
 */
export const SamplerConfig = Config.all({
  name: Config.literal(...samplerNames)("OTEL_TRACES_SAMPLER").pipe(Config.withDefault("parentbased_always_on" as const)),
  arg: Config.option(Config.string("OTEL_TRACES_SAMPLER_ARG"))
}).pipe(Config.mapOrFail(({ arg, name }) => {
  // Read by the ratio samplers only, as the SDK does.
  if (!name.endsWith("traceidratio") || Option.isNone(arg) || arg.value.trim() === "") return Either.right({ name, ratio: 1 })
  const ratio = Number(arg.value)
  return Number.isFinite(ratio) && ratio >= 0 && ratio <= 1
    ? Either.right({ name, ratio })
    : Either.left(ConfigError.InvalidData(["OTEL_TRACES_SAMPLER_ARG"], `must be a fraction from 0 to 1, not '${arg.value.slice(0, 40)}'`))
}))

/** The SDK's sampler for `config` (the SDK is loaded by then: tracing is on). */
const samplerOf = (
  sdk: typeof import("@opentelemetry/sdk-trace-base"),
  config: Config.Config.Success<typeof SamplerConfig>
): Sampler => {
  const ratio = new sdk.TraceIdRatioBasedSampler(config.ratio)
  switch (config.name) {
    case "always_on":
      return new sdk.AlwaysOnSampler()
    case "always_off":
      return new sdk.AlwaysOffSampler()
    case "traceidratio":
      return ratio
    case "parentbased_always_on":
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() })
    case "parentbased_always_off":
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() })
    case "parentbased_traceidratio":
      return new sdk.ParentBasedSampler({ root: ratio })
  }
}

/**
 * The OpenTelemetry tracer, except that a remote parent (`Tracer.externalSpan`:
 * a caller's `traceparent` header, a run's stored one) keeps its sampled
 * flag. `@effect/opentelemetry` reads a parent's flags from its context only
 * and takes any other parent as sampled, so a parent-based sampler would
 * sample the spans of a caller that sampled nothing. Only unsampled external
 * parents are rebuilt, with their flags (`makeExternalSpan`).
 */
const keepingSampledFlags = (
  tracer: Tracer.Tracer,
  makeExternalSpan: typeof import("@effect/opentelemetry/Tracer").makeExternalSpan
): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) =>
      tracer.span(
        name,
        Option.isSome(parent) && parent.value._tag === "ExternalSpan" && !parent.value.sampled
          ? Option.some(withFlags(parent.value, makeExternalSpan))
          : parent,
        context,
        links,
        startTime,
        kind,
        options
      ),
    context: (f, fiber) => tracer.context(f, fiber)
  })

const withFlags = (
  parent: Tracer.ExternalSpan,
  makeExternalSpan: typeof import("@effect/opentelemetry/Tracer").makeExternalSpan
): Tracer.ExternalSpan => {
  const flagged = makeExternalSpan({ traceId: parent.traceId, spanId: parent.spanId, traceFlags: 0 })
  // Flags (or a trace state) the parent has already win.
  return { ...flagged, context: Context.merge(flagged.context, parent.context) }
}

/**
 * Spans handed to `processor` (an exporter's, or an in-memory one in tests),
 * as the service `serviceName` (`OTEL_SERVICE_NAME` and
 * `OTEL_RESOURCE_ATTRIBUTES` as `@effect/opentelemetry` reads them), sampled
 * as `SamplerConfig` says. What `NodeSdk.layer` builds for spans, but with
 * the sampler from the program's config and the flags of remote parents
 * kept (`keepingSampledFlags`). The SDK is imported when the layer is built:
 * a program without tracing never loads it.
 */
export const layer = (processor: SpanProcessor, serviceName = "runstream"): Layer.Layer<Tracing, ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const sampling = yield* SamplerConfig
    const [NodeSdk, OtelTracer, Resource, sdk] = yield* Effect.promise(() =>
      Promise.all([
        import("@effect/opentelemetry/NodeSdk"),
        import("@effect/opentelemetry/Tracer"),
        import("@effect/opentelemetry/Resource"),
        import("@opentelemetry/sdk-trace-base")
      ])
    )
    const tracer = Layer.unwrapEffect(
      Effect.map(OtelTracer.make, (otel) => Layer.setTracer(keepingSampledFlags(otel, OtelTracer.makeExternalSpan)))
    )
    return tracer.pipe(
      Layer.provide(OtelTracer.layerTracer),
      Layer.provide(NodeSdk.layerTracerProvider(processor, { sampler: samplerOf(sdk, sampling) })),
      Layer.provide(Resource.layerFromEnv(Resource.configToAttributes({ serviceName }))),
      Layer.merge(Layer.succeed(Tracing, { serviceName }))
    )
  }))

/**
 * Tracing as the standard OpenTelemetry variables say: none unless an OTLP
 * endpoint is set (and `OTEL_SDK_DISABLED` is not true); then batches of spans
 * posted over OTLP/HTTP (the exporter reads the endpoint, headers and timeout
 * variables itself), sampled as `OTEL_TRACES_SAMPLER` says. The exporter is
 * imported only then.
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
 * An attempt's span: a child of the span that started its run when one was
 * stored (the claim brings it), else a root; the body's own spans nest under
 * it. It links to the span of the claim that took it (a batch's span, in a
 * trace of its own), whose `runstream.run_ids` name the attempts it began.
 */
export const attemptSpan = (claim: Claim) =>
  Effect.withSpan("runstream.attempt", {
    kind: "consumer",
    ...(claim.traceparent === undefined ? { root: true } : { parent: parentOf(claim.traceparent) }),
    ...(claim.claimSpan === undefined ? undefined : { links: [{ _tag: "SpanLink", span: claim.claimSpan, attributes: {} }] }),
    attributes: {
      "runstream.run_id": claim.runId,
      "runstream.task": claim.task,
      "runstream.attempt": claim.attempt,
      "runstream.queue": claim.queue
    }
  })

/**
 * Marks the current span (a request's, in the API's handlers) as concerning
 * run `runId` of `task` when known: `runstream.run_id`, `runstream.task`,
 * so that a request is found by its run as its attempts are. Nothing with
 * tracing off (`traced` false): the parts decide once, when built.
 */
export const annotateRun = (traced: boolean) =>
  traced
    ? (runId: string, task?: string | undefined): Effect.Effect<void> =>
      Effect.annotateCurrentSpan(task === undefined ? { "runstream.run_id": runId } : { "runstream.run_id": runId, "runstream.task": task })
    : (_runId: string, _task?: string | undefined): Effect.Effect<void> => Effect.void
