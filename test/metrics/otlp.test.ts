/**
 * The program's metrics as an OpenTelemetry metric reader collects them
 * (what the OTLP exporter sends): the same counts as `/metrics`.
 */
import { describe, expect, it } from "@effect/vitest"
import { DataPointType, type Histogram, MetricReader } from "@opentelemetry/sdk-metrics"
import { Effect, Layer } from "effect"
import * as Demo from "../../src/demo/tasks.ts"
import * as OtlpMetrics from "../../src/metrics/OtlpMetrics.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { quiet } from "../http/support.ts"

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

      const { errors, resourceMetrics } = yield* Effect.promise(() => reader.collect())
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
})
