/**
 * The program's metrics over OTLP (issue 21): an OpenTelemetry
 * `MetricProducer` over `Metrics.snapshot` (the program's registry, not
 * Effect's global one that `@effect/opentelemetry`'s producer reads), handed
 * to metric readers: a periodic OTLP/HTTP export when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._METRICS_ENDPOINT`) is set, every
 * `OTEL_METRIC_EXPORT_INTERVAL` ms (60,000). Unset: nothing is built or loaded.
 * The resource is the traces' (`Tracing.layer`): `service.name`, then
 * `OTEL_RESOURCE_ATTRIBUTES`, read with the program's `Config`.
 * @since 0.4.0
 */
import type { HrTime } from "@opentelemetry/api"
import type { CollectionResult, MetricData, MetricProducer, MetricReader } from "@opentelemetry/sdk-metrics"
import { Config, Effect, Layer, MetricState, Option, Runtime } from "effect"
import { Metrics } from "./Metrics.ts"

/** @category config */
export const OtlpMetricsConfig = Config.all({
  endpoint: Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_ENDPOINT")),
  metricsEndpoint: Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")),
  disabled: Config.boolean("OTEL_SDK_DISABLED").pipe(Config.withDefault(false)),
  interval: Config.integer("OTEL_METRIC_EXPORT_INTERVAL").pipe(Config.withDefault(60_000)),
  serviceName: Config.option(Config.nonEmptyString("OTEL_SERVICE_NAME"))
})

const hrTime = (millis: number): HrTime => [Math.floor(millis / 1000), (millis % 1000) * 1_000_000]

/** What a metric entry says of its points: their type and temporality. */
type Kind = Omit<MetricData, "descriptor" | "dataPoints">

/**
 * Registers a producer of the program's metrics with `readers`, shut down
 * with the scope. Counters are cumulative sums from the producer's start.
 */
export const register = (readers: ReadonlyArray<MetricReader>, serviceName: string) =>
  Effect.gen(function*() {
    const metrics = yield* Metrics
    const runtime = yield* Effect.runtime<never>()
    const sdk = yield* Effect.promise(() => import("@opentelemetry/sdk-metrics"))
    const [{ ValueType }, Resource] = yield* Effect.promise(() =>
      Promise.all([import("@opentelemetry/api"), import("@effect/opentelemetry/Resource")])
    )
    // As the traces' resource: the environment's attributes (`OTEL_RESOURCE_ATTRIBUTES`), `service.name` over them.
    const resource = yield* Effect.provide(Resource.Resource, Resource.layerFromEnv(Resource.configToAttributes({ serviceName })))
    const startTime = hrTime(Date.now())

    const toData = (pairs: Effect.Effect.Success<typeof metrics.snapshot>): Array<MetricData> => {
      const byName = new Map<string, MetricData>()
      const endTime = hrTime(Date.now())
      for (const { metricKey, metricState } of pairs) {
        const attributes = Object.fromEntries(metricKey.tags.map((tag) => [tag.key, tag.value]))
        const descriptor = {
          name: metricKey.name,
          description: Option.getOrElse(metricKey.description, () => ""),
          unit: metricKey.name.endsWith("_seconds") ? "s" : "1",
          valueType: ValueType.DOUBLE
        }
        // A name's first series makes its entry; the others join its points.
        const add = (point: unknown, kind: Kind) => {
          const existing = byName.get(metricKey.name)
          if (existing !== undefined) (existing.dataPoints as Array<unknown>).push(point)
          else byName.set(metricKey.name, { descriptor, ...kind, dataPoints: [point] } as MetricData)
        }
        const cumulative = sdk.AggregationTemporality.CUMULATIVE
        if (MetricState.isCounterState(metricState)) {
          add({ startTime, endTime, attributes, value: Number(metricState.count) }, {
            aggregationTemporality: cumulative,
            dataPointType: sdk.DataPointType.SUM,
            isMonotonic: true
          } as Kind)
        } else if (MetricState.isGaugeState(metricState)) {
          add({ startTime: endTime, endTime, attributes, value: Number(metricState.value) }, {
            aggregationTemporality: cumulative,
            dataPointType: sdk.DataPointType.GAUGE
          } as Kind)
        } else if (MetricState.isHistogramState(metricState)) {
          // Effect's buckets are cumulative, their last bound +Infinity; OTLP's counts are per bucket.
          const boundaries: Array<number> = []
          const counts: Array<number> = []
          let previous = 0
          for (const [bound, cumulative] of metricState.buckets) {
            if (bound !== Infinity) boundaries.push(bound)
            counts.push(cumulative - previous)
            previous = cumulative
          }
          if (counts.length === boundaries.length) counts.push(metricState.count - previous)
          add({
            startTime,
            endTime,
            attributes,
            value: {
              buckets: { boundaries, counts },
              count: metricState.count,
              sum: metricState.sum,
              ...(metricState.count > 0 ? { min: metricState.min, max: metricState.max } : {})
            }
          }, {
            aggregationTemporality: cumulative,
            dataPointType: sdk.DataPointType.HISTOGRAM
          } as Kind)
        }
      }
      return [...byName.values()]
    }

    const producer: MetricProducer = {
      collect: (): Promise<CollectionResult> =>
        Runtime.runPromise(runtime, metrics.snapshot).then((pairs) => ({
          resourceMetrics: { resource, scopeMetrics: [{ scope: { name: "runstream" }, metrics: toData(pairs) }] },
          errors: []
        }))
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        for (const reader of readers) reader.setMetricProducer(producer)
      }),
      () =>
        Effect.promise(() => Promise.all(readers.map((reader) => reader.shutdown()))).pipe(
          Effect.ignore,
          Effect.interruptible,
          Effect.timeoutOption(3000)
        )
    )
  })

/** The program's metrics read by `readers` (a test's, or any the app builds). */
export const layer = (readers: ReadonlyArray<MetricReader>, serviceName = "runstream") =>
  Layer.scopedDiscard(register(readers, serviceName))

/** A periodic OTLP/HTTP export when the OpenTelemetry variables ask for one; else nothing. */
export const layerFromEnv = (defaultServiceName: string) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const config = yield* OtlpMetricsConfig
    if (config.disabled || (Option.isNone(config.endpoint) && Option.isNone(config.metricsEndpoint))) return Layer.empty
    const [{ OTLPMetricExporter }, { PeriodicExportingMetricReader }] = yield* Effect.promise(() =>
      Promise.all([import("@opentelemetry/exporter-metrics-otlp-http"), import("@opentelemetry/sdk-metrics")])
    )
    const reader = new PeriodicExportingMetricReader({
      // The endpoint as the program's config read it (the exporter would read `process.env` itself);
      // the generic endpoint takes the signal's path, as the spec says.
      exporter: new OTLPMetricExporter({
        url: Option.getOrElse(config.metricsEndpoint, () => `${Option.getOrThrow(config.endpoint).replace(/\/$/, "")}/v1/metrics`)
      }),
      exportIntervalMillis: config.interval
    })
    return layer([reader], Option.getOrElse(config.serviceName, () => defaultServiceName))
  }))
