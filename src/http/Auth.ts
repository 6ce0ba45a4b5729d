/**
 * Bearer-key authentication of every route but the health checks, when
 * `RUNSTREAM_API_KEYS` is set, and read tokens (`?token=`) on the GET routes
 * of their scope. Keys and token signatures are compared in constant time.
 * @since 0.1.0
 */
import { type HttpApp, HttpServerRequest } from "@effect/platform"
import { Effect, Option, Redacted } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import type { RunId } from "../domain/Ids.ts"
import { Runs } from "../Runs.ts"
import { ApiError, toResponse, unavailable } from "./ApiError.ts"
import { ReadTokens, type Scope } from "./ReadTokens.ts"

/** Paths open to anyone: probes of orchestrators carry no key. */
export const isPublicPath = (path: string): boolean => path === "/healthz" || path === "/readyz"

const digest = (text: string) => createHash("sha256").update(text).digest()

/**
 * Whether an `Authorization` header carries one of the keys. The header and
 * the keys are compared as SHA-256 digests (equal lengths, as `timingSafeEqual`
 * needs), against every key, so the time taken says nothing about any key.
 */
export const makeVerifier = (keys: ReadonlyArray<Redacted.Redacted<string>>) => {
  const digests = keys.map((key) => digest(Redacted.value(key)))
  return (authorization: string | undefined): boolean => {
    const match = authorization === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(authorization)
    const given = digest(match?.[1] ?? "")
    let accepted = false
    for (const expected of digests) {
      accepted = timingSafeEqual(expected, given) || accepted
    }
    return accepted && match !== null
  }
}

const unauthorized = toResponse(
  new ApiError({ status: 401, code: "unauthorized", message: "a valid 'Authorization: Bearer <key>' header is required" }),
  { "www-authenticate": "Bearer realm=\"runstream\"" }
)

const refusedToken = toResponse(
  new ApiError({ status: 401, code: "unauthorized", message: "the token is invalid, expired, or not valid for this request" })
)

const runPath = /^\/v1\/runs\/([0-9a-f-]{36})(?:\/events)?$/

/**
 * Whether a token of `scope` reads `path` with `params`: a run's scope its
 * JSON and events; a task's scope the list and the debug stream filtered to
 * it (`task=` once, the task's name), and each of its runs with their events
 * (`taskOf` reads the run's task).
 */
export const allows = (
  scope: Scope,
  path: string,
  params: URLSearchParams,
  taskOf: (runId: RunId) => Effect.Effect<Option.Option<string>, ApiError>
): Effect.Effect<boolean, ApiError> => {
  const runId = runPath.exec(path)?.[1] as RunId | undefined
  if (scope._tag === "Run") return Effect.succeed(runId !== undefined && runId === scope.runId)
  if (path === "/v1/runs" || path === "/v1/events") {
    const tasks = params.getAll("task")
    return Effect.succeed(tasks.length === 1 && tasks[0] === scope.task)
  }
  if (runId === undefined) return Effect.succeed(false)
  return Effect.map(taskOf(runId), (task) => Option.contains(task, scope.task))
}

/**
 * Refuses requests without a valid key (401) before they reach `app`. A GET
 * with `?token=` and no valid key is judged by its token alone: accepted
 * within its scope, else 401 (with or without keys). Without keys and
 * without a token: the identity.
 */
export const middleware = (
  keys: ReadonlyArray<Redacted.Redacted<string>>,
  /** Paths open without a key besides the health checks (`/metrics` when configured open). */
  isOpen: (path: string) => boolean = () => false
) =>
  Effect.gen(function*() {
    const verify = makeVerifier(keys)
    const tokens = yield* ReadTokens
    const runs = yield* Runs
    const taskOf = (runId: RunId) =>
      runs.get(runId).pipe(
        Effect.map((run) => Option.some(run.task)),
        Effect.catchTag("RunNotFound", () => Effect.succeedNone),
        Effect.catchTag("SqlError", (error) => Effect.zipRight(Effect.logError("database error", error), Effect.fail(unavailable)))
      )
    return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const [path, query = ""] = request.url.split("?", 2) as [string, string?]
        if (isPublicPath(path) || isOpen(path)) return app
        const params = request.method === "GET" ? new URLSearchParams(query) : undefined
        const token = params?.getAll("token")
        if (token === undefined || token.length === 0) {
          return keys.length === 0 || verify(request.headers["authorization"]) ? app : Effect.succeed(unauthorized)
        }
        if (keys.length > 0 && verify(request.headers["authorization"])) return app
        if (token.length > 1) return Effect.succeed(refusedToken)
        return tokens.verify(token[0]!).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.succeed(false),
            onSome: (scope) => allows(scope, path, params!, taskOf)
          })),
          Effect.matchEffect({
            onFailure: (error) => Effect.succeed(toResponse(error)),
            onSuccess: (allowed) => allowed ? app : Effect.succeed(refusedToken)
          })
        )
      })
  })
