/**
 * Scoped read tokens: minted for one run or one task, signed with
 * HMAC-SHA256 under the server's secret (`RUNSTREAM_TOKEN_SECRET`, the same
 * on every server process), accepted as `?token=` on the GET routes of their
 * scope until they expire (see `Auth`).
 *
 * A token is `v1.<payload>.<signature>`, both base64url; the payload is the
 * JSON `{"r": runId}` or `{"t": task}` with `"e"`, the expiry in Unix seconds.
 * It is not encrypted: its scope and expiry are readable by whoever holds it.
 * @since 0.3.0
 */
import { Context, DateTime, Effect, Layer, Option, Redacted } from "effect"
import { createHmac, timingSafeEqual } from "node:crypto"
import { TokensDisabled } from "../domain/Errors.ts"
import type { RunId } from "../domain/Ids.ts"
import type { ReadToken } from "../domain/ReadToken.ts"

/** What a token reads: one run, or every run of one task. */
export type Scope =
  | { readonly _tag: "Run"; readonly runId: RunId }
  | { readonly _tag: "Task"; readonly task: string }

/** The longest token accepted (a token of a 200-character task name is about 400). */
export const maxTokenLength = 1000

export class ReadTokens extends Context.Tag("runstream/http/ReadTokens")<ReadTokens, {
  /** A token of `scope` for `ttlSeconds`; `TokensDisabled` without a secret. */
  readonly mint: (scope: Scope, ttlSeconds: number) => Effect.Effect<ReadToken, TokensDisabled>
  /** The scope of a valid, unexpired token; none for anything else (and always without a secret). */
  readonly verify: (token: string) => Effect.Effect<Option.Option<Scope>>
}>() {}

const prefix = "v1."

const payloadOf = (scope: Scope, expires: number) =>
  JSON.stringify(scope._tag === "Run" ? { r: scope.runId, e: expires } : { t: scope.task, e: expires })

const scopeOf = (json: unknown, nowSeconds: number): Option.Option<Scope> => {
  if (typeof json !== "object" || json === null) return Option.none()
  const { e, r, t } = json as Record<string, unknown>
  if (typeof e !== "number" || e <= nowSeconds) return Option.none()
  if (typeof r === "string" && t === undefined) return Option.some({ _tag: "Run", runId: r as RunId })
  if (typeof t === "string" && r === undefined) return Option.some({ _tag: "Task", task: t })
  return Option.none()
}

/** Tokens signed with `secret`; without one, minting fails with `TokensDisabled` and no token is accepted. */
export const make = (secret: Redacted.Redacted<string> | undefined) => {
  const sign = (payload: string) =>
    secret === undefined ? Buffer.alloc(0) : createHmac("sha256", Redacted.value(secret)).update(prefix + payload).digest()

  const mint = (scope: Scope, ttlSeconds: number) =>
    Effect.gen(function*() {
      if (secret === undefined) return yield* new TokensDisabled()
      const nowMs = yield* DateTime.now.pipe(Effect.map(DateTime.toEpochMillis))
      const expires = Math.floor(nowMs / 1000) + ttlSeconds
      const payload = Buffer.from(payloadOf(scope, expires)).toString("base64url")
      return {
        token: `${prefix}${payload}.${sign(payload).toString("base64url")}`,
        expiresAt: DateTime.unsafeMake(expires * 1000)
      }
    })

  const verify = (token: string) =>
    Effect.map(DateTime.now, (now): Option.Option<Scope> => {
      if (secret === undefined || token.length > maxTokenLength || !token.startsWith(prefix)) return Option.none()
      const [payload, signature, ...rest] = token.slice(prefix.length).split(".")
      if (payload === undefined || signature === undefined || rest.length > 0) return Option.none()
      const given = Buffer.from(signature, "base64url")
      const expected = sign(payload)
      // Equal lengths, as timingSafeEqual needs: a digest's length is no secret.
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return Option.none()
      let json: unknown
      try {
        json = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"))
      } catch {
        return Option.none()
      }
      return scopeOf(json, Math.floor(DateTime.toEpochMillis(now) / 1000))
    })

  return ReadTokens.of({ mint, verify })
}

/** @category layers */
export const layer = (secret: Redacted.Redacted<string> | undefined) => Layer.succeed(ReadTokens, make(secret))
