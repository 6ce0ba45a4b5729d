/**
 * The HTTP server of the API: the `Api` routes, `GET /openapi.json` and
 * `POST /rpc`, behind bearer-key authentication, with every failure answered
 * as `{"error": {...}}`; and the health-only server of worker processes.
 * @since 0.1.0
 */
import {
  HttpApi,
  HttpApiBuilder,
  HttpApiError,
  type HttpApp,
  HttpRouter,
  HttpServer,
  HttpServerRequest
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Effect, Layer, Option, Predicate } from "effect"
import { clip } from "../domain/Errors.ts"
import { createServer } from "node:http"
import * as RpcServer from "../rpc/RpcServer.ts"
import { Api, HealthApi } from "./Api.ts"
import { ApiError, badRequest, internal, invalidInput, toResponse } from "./ApiError.ts"
import * as Auth from "./Auth.ts"
import * as Dashboard from "./Dashboard.ts"
import * as EventsHandlers from "./EventsHandlers.ts"
import * as HealthHandlers from "./HealthHandlers.ts"
import * as Metrics from "../metrics/Metrics.ts"
import * as MetricsRoute from "./MetricsRoute.ts"
import * as RequestLog from "./RequestLog.ts"
import { HttpConfig, type HttpOptions, ListenConfig, type ListenOptions } from "./HttpConfig.ts"
import * as ReadTokens from "./ReadTokens.ts"
import * as RunsHandlers from "./RunsHandlers.ts"
import * as SchedulesHandlers from "./SchedulesHandlers.ts"
import * as StatsHandlers from "./StatsHandlers.ts"
import { StreamAdmissionServer } from "./StreamAdmission.ts"
import * as Streams from "./Streams.ts"
import * as TokensHandlers from "./TokensHandlers.ts"
import * as Stats from "../Stats.ts"

/** A method and a path pattern (`/v1/runs/:id`) the server answers. */
interface Route {
  readonly method: string
  readonly path: string
}

/** The routes of an `HttpApi`, for telling a wrong method (405) from an unknown path (404). */
const routesOf = (api: HttpApi.HttpApi.Any): ReadonlyArray<Route> => {
  const routes: Array<Route> = []
  HttpApi.reflect(api as HttpApi.HttpApi.AnyWithProps, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => routes.push({ method: endpoint.method, path: endpoint.path })
  })
  return routes
}

const allowedMethods = (routes: ReadonlyArray<Route>, path: string) => {
  const methods = routes
    .filter((route) => new RegExp(`^${route.path.replace(/:[^/]+/g, "[^/]+")}$`).test(path))
    .map((route) => route.method)
  return [...new Set(methods)]
}

/** A path as quoted in a message: at most 100 characters. */
const shorten = (path: string) => clip(path, 100)

/**
 * Answers what the routes did not: an unknown path (404) or method (405), an
 * `ApiError` the API does not declare, and defects (500, logged, no details
 * sent). An interrupted request (its client left) stays interrupted.
 */
const answerFailures = (routes: ReadonlyArray<Route>) => <E, R>(app: HttpApp.Default<E, R>) =>
  Effect.catchAllCause(app, (cause) =>
    Effect.gen(function*() {
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) {
        const error: unknown = failure.value
        if (error instanceof ApiError) return toResponse(error)
        if (Predicate.isTagged(error, "RouteNotFound")) {
          const request = yield* HttpServerRequest.HttpServerRequest
          const path = request.url.split("?", 1)[0]!
          const allowed = allowedMethods(routes, path)
          // The path has a route for this method, yet the router found none: a
          // parameter it cannot take (over its length limit, or bad percent-encoding).
          if (allowed.includes(request.method)) {
            return toResponse(badRequest("invalid_input", `${shorten(path)} is not a valid path: a parameter is malformed or too long`))
          }
          return allowed.length === 0
            ? toResponse(new ApiError({ status: 404, code: "not_found", message: `no route for ${request.method.slice(0, 20)} ${shorten(path)}` }))
            : toResponse(
              new ApiError({ status: 405, code: "method_not_allowed", message: `${shorten(path)} answers ${allowed.join(", ")}` }),
              { allow: allowed.join(", ") }
            )
        }
      }
      if (Cause.isInterruptedOnly(cause)) return yield* Effect.failCause(cause)
      yield* Effect.logError("request failed unexpectedly", cause)
      return toResponse(internal)
    }))

/**
 * The builder would answer a path, query or header that fails to decode with
 * its own `HttpApiDecodeError` body; this turns it into an `ApiError` first.
 */
const decodeErrorsAsApiErrors = (app: HttpApp.Default): HttpApp.Default<ApiError> =>
  Effect.catchAllCause(app, (cause) => {
    const error: unknown = Option.getOrUndefined(Cause.failureOption(cause))
    return error instanceof HttpApiError.HttpApiDecodeError ? Effect.fail(invalidInput(error.issues)) : Effect.failCause(cause)
  })

const layerDecodeErrors = HttpApiBuilder.middleware(Api, decodeErrorsAsApiErrors)
const layerHealthDecodeErrors = HttpApiBuilder.middleware(HealthApi, decodeErrorsAsApiErrors)

const layerRpcRoute = (options: HttpOptions) =>
  HttpApiBuilder.Router.use((router) =>
    Effect.flatMap(
      RpcServer.makeHttpApp({ maxMessageBytes: options.maxBodyBytes, maxCalls: options.maxRpcCalls, streamSetups: options.streamSetups }),
      (app) => router.post("/rpc", app)
    )
  )

/**
 * The API's routes and handlers, and the read tokens; needs `Runs`, the
 * task registry, the database, and `Streams`.
 */
export const layerApi = (options: HttpOptions) =>
  HttpApiBuilder.middlewareOpenApi().pipe(
    Layer.provideMerge(HttpApiBuilder.api(Api).pipe(Layer.provide([
      RunsHandlers.layer(options),
      EventsHandlers.layer(options),
      SchedulesHandlers.layer(options),
      StatsHandlers.layer,
      TokensHandlers.layer(options),
      HealthHandlers.layer,
      layerDecodeErrors,
      layerRpcRoute(options),
      MetricsRoute.layerRoute
    ]))),
    Layer.provideMerge(Layer.merge(ReadTokens.layer(options.tokenSecret), Stats.layer()))
  )

/**
 * The whole app: the dashboard's files (public), then authentication, then
 * the routes, failures answered as JSON.
 */
export const makeApp = (options: HttpOptions, dashboard: Option.Option<Dashboard.Assets> = Option.none()) =>
  Effect.zipWith(HttpApiBuilder.httpApp, Auth.middleware(options.apiKeys, (path) => options.metricsOpen === true && path === "/metrics"), (app, authenticated) =>
    app.pipe(
      answerFailures([
        ...routesOf(Api),
        { method: "GET", path: "/openapi.json" },
        { method: "POST", path: "/rpc" },
        { method: "GET", path: "/metrics" }
      ]),
      authenticated,
      Dashboard.middleware(dashboard)
    ))

/** Serves `app`; the layer's output is the server, for its address. */
const serve = <E, R, RA>(app: Effect.Effect<HttpApp.Default<E, R>, never, RA>, name: string) =>
  Layer.scoped(
    HttpServer.HttpServer,
    Effect.gen(function*() {
      yield* HttpServer.serveEffect(yield* app, RequestLog.atDebug)
      yield* Effect.logInfo(`${name} listening on ${yield* HttpServer.addressFormattedWith(Effect.succeed)}`)
      return yield* HttpServer.HttpServer
    })
  )

const nodeServer = (listen: ListenOptions) => NodeHttpServer.layer(createServer, { port: listen.port, host: listen.host })

/**
 * Stream requests waiting to be set up, at most (each holds a socket and its
 * parsed head, a few KB): past it they are refused with 503 `server_busy`.
 */
const maxWaitingSetups = 10_000

/** The API's server: stream setups admitted a few at a time (`StreamAdmission`). */
const apiServer = (options: ServerOptions) =>
  NodeHttpServer.layer(
    () => new StreamAdmissionServer({ concurrency: options.streamSetups, maxWaiting: maxWaitingSetups }),
    { port: options.port, host: options.host }
  )

export interface ServerOptions extends HttpOptions, ListenOptions {
  /** The built dashboard's directory, or `off`; default `RUNSTREAM_DASHBOARD_DIR`, else the package's build. */
  readonly dashboardDir?: string
}

/**
 * The API served on `HOST:PORT` (config), `overrides` taking precedence. Needs
 * `Runs` and the database. Stopping it ends open event streams, then closes the server.
 */
export const layer = (overrides: Partial<ServerOptions> = {}) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const options: ServerOptions = { ...(yield* HttpConfig), ...(yield* ListenConfig), ...overrides }
    const dashboard = yield* Dashboard.fromConfig(options.dashboardDir)
    return serve(makeApp(options, dashboard), "HTTP API").pipe(
      Layer.provide(layerApi(options)),
      Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer]),
      Layer.provide(MetricsRoute.layerLiveStreams),
      // Built after the server, so released before it: streams end, then the server closes.
      Layer.provide(Streams.layer(options).pipe(Layer.provideMerge(apiServer(options))))
    )
  }))

/** `/healthz` and `/readyz` alone on `port`, for processes without the API. Needs the database. */
export const layerHealth = (listen: ListenOptions) =>
  serve(
    Effect.map(HttpApiBuilder.httpApp, answerFailures(routesOf(HealthApi))),
    "health checks"
  ).pipe(
    Layer.provide(HttpApiBuilder.api(HealthApi).pipe(Layer.provide([HealthHandlers.layerHealthApi, layerHealthDecodeErrors]))),
    Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer]),
    Layer.provide(nodeServer(listen))
  )

/**
 * `GET /metrics` alone on `port` (`RUNSTREAM_METRICS_PORT`), open: an
 * operator's port, for worker processes (no API) or to keep scrapes off the
 * API's. Needs the program's `Metrics`.
 */
export const layerMetrics = (listen: ListenOptions) =>
  serve(
    Effect.map(Metrics.Metrics, (metrics) => HttpRouter.empty.pipe(HttpRouter.get("/metrics", MetricsRoute.scrape(metrics)))),
    "metrics"
  ).pipe(Layer.provide(nodeServer(listen)))
