/**
 * Bearer-key authentication of every route but the health checks, when
 * `RUNSTREAM_API_KEYS` is set. Keys are compared in constant time.
 * @since 0.1.0
 */
import { type HttpApp, HttpServerRequest } from "@effect/platform"
import { Effect, Redacted } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { ApiError, toResponse } from "./ApiError.ts"

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

/** Refuses requests without a valid key (401) before they reach `app`; no keys: the identity. */
export const middleware = (keys: ReadonlyArray<Redacted.Redacted<string>>) => {
  const verify = makeVerifier(keys)
  return <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    keys.length === 0 ? app : Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      isPublicPath(request.url.split("?", 1)[0]!) || verify(request.headers["authorization"])
        ? app
        : Effect.succeed(unauthorized))
}
