/**
 * The program's metrics as an OpenTelemetry metric reader collects them
 * (what the OTLP exporter sends): the same counts as `/metrics`; and pushed
 * over OTLP/HTTP to a collector stand-in when the variables ask for it only.
 */
import { describe, expect, it } from "@effect/vitest"
import { DataPointType, type Histogram, MetricReader } from "@opentelemetry/sdk-metrics"
import { ConfigProvider, Effect, Layer, Queue } from "effect"
import * as Demo from "../../src/demo/tasks.ts"
import * as OtlpMetrics from "../../src/metrics/OtlpMetrics.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { quiet } from "../http/support.ts"
import { collector, type Received } from "./collector.ts"
import { whenSettled } from "./settled.ts"

/** A program with `OtlpMetrics.layerFromEnv` under the OpenTelemetry `variables` (the others from the environment). */
const fromEnv = (variables: Record<string, string>) =>
  OtlpMetrics.layerFromEnv("runstream-default").pipe(
    Layer.provideMerge(RunstreamTest.layer({ tasks: Demo.all, workers: { lease: "30 seconds", shutdownGrace: "1 second" }, retention: false })),
    Layer.provide(quiet),
    Layer.provide(Layer.setConfigProvider(
      ConfigProvider.fromMap(new Map(Object.entries(variables))).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
    ))
  )

const echoRuns = (n: number) =>
  Effect.gen(function*() {
    const runs = yield* Runs
    for (let input = 1; input <= n; input++) {
      const run = yield* runs.start(Demo.Echo, input)
      yield* runs.awaitCompletion(run.id, { timeout: "15 seconds" })
    }
  })

/** A data point's attributes and value, from OTLP JSON. */
const pointOf = (point: any) => ({
  attributes: Object.fromEntries((point.attributes ?? []).map((a: any) => [a.key, Object.values(a.value)[0]])),
  value: Number(point.asDouble ?? point.asInt)
})

/** The points of the sum `name` in an export request. */
const sumPoints = (request: Received, name: string) =>
  (request.body.resourceMetrics ?? []).flatMap((resource: any) =>
    (resource.scopeMetrics ?? []).flatMap((scope: any) =>
      (scope.metrics ?? []).filter((metric: any) => metric.name === name).flatMap((metric: any) => (metric.sum?.dataPoints ?? []).map(pointOf))
    )
  ) as Array<ReturnType<typeof pointOf>>

/** A reader collected on demand. */
class TestReader extends MetricReader {
  protected override onShutdown = () => Promise.resolve()
  protected override onForceFlush = () => Promise.resolve()
}

describe("metrics over OTLP", () => {
  it.scopedLive("a metric reader collects the program's counters, histograms and gauges", () =>
    Effect.gen(function*() {
      const reader = new TestReader()
      const program = yield* Layer.build(
        OtlpMetrics.layer([reader], "runstream-test").pipe(
          Layer.provideMerge(RunstreamTest.layer({ tasks: Demo.all, workers: { lease: "30 seconds", shutdownGrace: "1 second" }, retention: false })),
          Layer.provide(quiet)
        )
      )
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        for (const input of [1, 2, 3]) {
          const run = yield* runs.start(Demo.Echo, input)
          yield* runs.awaitCompletion(run.id, { timeout: "15 seconds" })
        }
      }).pipe(Effect.provide(program))

      // Collected again until the three ends are counted (just after the commits that let
      // `awaitCompletion` return) and the pool holds no run.
      const sumOf = (collected: Awaited<ReturnType<TestReader["collect"]>>, name: string) =>
        collected.resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics)
          .find((metric) => metric.descriptor.name === name)?.dataPoints.reduce((n, point) => n + Number(point.value), 0)
      const { errors, resourceMetrics } = yield* whenSettled(
        Effect.promise(() => reader.collect()),
        (collected) => sumOf(collected, "runstream_runs_finished_total") === 3 && sumOf(collected, "runstream_in_flight_runs") === 0
      )
      expect(errors).toEqual([])
      expect(resourceMetrics.resource.attributes["service.name"]).toBe("runstream-test")
      const metrics = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics)
      const named = (name: string) => metrics.find((metric) => metric.descriptor.name === name)!
      const started = named("runstream_runs_started_total")
      expect(started.dataPointType).toBe(DataPointType.SUM)
      expect(started.dataPoints).toMatchObject([{ attributes: { task: "demo.echo" }, value: 3 }])
      expect(named("runstream_runs_finished_total").dataPoints).toMatchObject([
        { attributes: { task: "demo.echo", outcome: "succeeded" }, value: 3 }
      ])
      const duration = named("runstream_run_duration_seconds")
      expect(duration.dataPointType).toBe(DataPointType.HISTOGRAM)
      const histogram = duration.dataPoints[0]!.value as Histogram
      expect(histogram.count).toBe(3)
      expect(histogram.buckets.counts.reduce((a, b) => a + b, 0)).toBe(3)
      expect(histogram.buckets.counts).toHaveLength(histogram.buckets.boundaries.length + 1)
      expect(named("runstream_in_flight_runs").dataPointType).toBe(DataPointType.GAUGE)
    }), 60_000)

  it.scopedLive("OTEL_EXPORTER_OTLP_ENDPOINT set: pushed to the collector, as the service and resource the variables name", () =>
    Effect.gen(function*() {
      const { endpoint, received } = yield* collector
      const program = yield* Layer.build(fromEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
        OTEL_METRIC_EXPORT_INTERVAL: "100",
        OTEL_SERVICE_NAME: "runstream-otlp-test",
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=test,team=runs"
      }))
      yield* Effect.provide(echoRuns(3), program)
      // Exports come every 100 ms, cumulative, some made while the runs ran: wait for one made after the third ended.
      let request: Received
      do {
        request = yield* Queue.take(received).pipe(Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error("no export with 3 runs") }))
      } while (!sumPoints(request, "runstream_runs_finished_total").some((point) => point.value === 3))
      expect(request.path).toBe("/v1/metrics")
      expect(sumPoints(request, "runstream_runs_started_total")).toEqual([{ attributes: { task: "demo.echo" }, value: 3 }])
      expect(sumPoints(request, "runstream_runs_finished_total")).toEqual([
        { attributes: { task: "demo.echo", outcome: "succeeded" }, value: 3 }
      ])
      const resource = Object.fromEntries(
        request.body.resourceMetrics[0].resource.attributes.map((a: any) => [a.key, Object.values(a.value)[0]])
      )
      expect(resource).toMatchObject({ "service.name": "runstream-otlp-test", "deployment.environment": "test", team: "runs" })
    }), 60_000)

  it.scopedLive("no endpoint, or OTEL_SDK_DISABLED: nothing is exported, not even at shutdown", () =>
    Effect.gen(function*() {
      const { endpoint, received } = yield* collector
      for (const variables of [{ OTEL_METRIC_EXPORT_INTERVAL: "100" }, { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_METRIC_EXPORT_INTERVAL: "100", OTEL_SDK_DISABLED: "true" }]) {
        // A reader exports once more when its program stops: after the stop, nothing came means no reader.
        yield* Effect.scoped(Effect.flatMap(Layer.build(fromEnv(variables)), (program) => Effect.provide(echoRuns(2), program)))
        expect(yield* Queue.size(received)).toBe(0)
      }
      // The same program with the endpoint does export by its stop (what the check above relies on).
      yield* Effect.scoped(Effect.flatMap(Layer.build(fromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint })), (program) => Effect.provide(echoRuns(1), program)))
      const request = yield* Queue.take(received)
      expect(sumPoints(request, "runstream_runs_started_total")).toEqual([{ attributes: { task: "demo.echo" }, value: 1 }])
    }), 60_000)
})
