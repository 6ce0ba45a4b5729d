/**
 * `GET /metrics`: the program's metrics in the Prometheus text format, on the
 * API's port (behind its keys unless `RUNSTREAM_METRICS_OPEN=true`) or on a
 * port of its own (`RUNSTREAM_METRICS_PORT`, open: an operator's port); and the
 * API server's live streams as a gauge.
 * @since 0.4.0
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Layer } from "effect"
import * as Metrics from "../metrics/Metrics.ts"
import * as Prometheus from "../metrics/Prometheus.ts"
import { Streams } from "./Streams.ts"

/** The answer of a scrape: every figure read now. */
export const scrape = (metrics: Metrics.Metrics) =>
  Effect.map(metrics.snapshot, (pairs) => HttpServerResponse.text(Prometheus.encode(pairs), { contentType: Prometheus.contentType }))

/** The route on the API's router; none when the program has no metrics. */
export const layerRoute = HttpApiBuilder.Router.use((router) =>
  Effect.flatMap(Metrics.option, (metrics) => metrics === undefined ? Effect.void : router.get("/metrics", scrape(metrics)))
)

/** Open SSE and RPC streams of the API server, read at each scrape. */
export const layerLiveStreams = Layer.scopedDiscard(Effect.gen(function*() {
  const metrics = yield* Metrics.option
  if (metrics === undefined) return
  const streams = yield* Streams
  yield* metrics.gauge(
    Metrics.names.liveStreams,
    "Event streams (SSE and RPC) open on this API server.",
    Effect.map(streams.active, (value) => [{ value }])
  )
}))
