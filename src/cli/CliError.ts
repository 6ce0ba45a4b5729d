/**
 * What the CLI says when a command fails: one line on stderr, and the exit
 * code. A followed run that ends badly is reported the same way, with its own
 * code (1 failed, 2 cancelled), so that a script can tell it from an error of
 * the CLI itself (3).
 * @since 0.1.0
 */
import { ValidationError } from "@effect/cli"
import { Cause, Option, Predicate, Schema } from "effect"

/** An option or argument the CLI refused before asking the server. @category errors */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", {
  message: Schema.String
}) {}

/** The server could not be reached or answered something that is not Runstream's API. @category errors */
export class Unreachable extends Schema.TaggedError<Unreachable>()("Unreachable", {
  message: Schema.String
}) {}

/** A followed run ended, and not with success. @category errors */
export class RunNotSucceeded extends Schema.TaggedError<RunNotSucceeded>()("RunNotSucceeded", {
  runId: Schema.String,
  status: Schema.Literal("failed", "cancelled"),
  reason: Schema.optional(Schema.String)
}) {
  override get message() {
    return this.status === "cancelled"
      ? `run ${this.runId} was cancelled`
      : `run ${this.runId} failed${this.reason === undefined ? "" : `: ${this.reason}`}`
  }
}

/** Exit codes: 0 done (a followed run succeeded), 1 the run failed, 2 it was cancelled, 3 an error, 130 interrupted. */
export const exitCodes = { ok: 0, failed: 1, cancelled: 2, error: 3, interrupted: 130 } as const

/** The code a command that failed with `cause` exits with. */
export const exitCodeOf = (cause: Cause.Cause<unknown>): number => {
  if (Cause.isInterruptedOnly(cause)) return exitCodes.interrupted
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure) && failure.value instanceof RunNotSucceeded) {
    return failure.value.status === "cancelled" ? exitCodes.cancelled : exitCodes.failed
  }
  return exitCodes.error
}

/** Terminal control characters in server-given text are shown escaped, never sent to the terminal. */
export const printable = (text: string): string =>
  text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => c === "\n" ? " " : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)

/** The first `code` (ECONNREFUSED, ENOTFOUND...) or message down an error's `cause` chain. */
const rootCause = (error: unknown): string | undefined => {
  let current: unknown = error
  let found: string | undefined
  for (let depth = 0; depth < 8 && Predicate.isObject(current); depth++) {
    if (Predicate.hasProperty(current, "code") && typeof current.code === "string") {
      const message = Predicate.hasProperty(current, "message") && typeof current.message === "string" ? current.message : ""
      return message.includes(current.code) ? message : `${current.code}${message === "" ? "" : ` (${message})`}`
    }
    if (Predicate.hasProperty(current, "message") && typeof current.message === "string" && current.message !== "") {
      found = current.message
    }
    current = Predicate.hasProperty(current, "cause") ? current.cause : undefined
  }
  return found
}

/** A status other than 2xx on the transport, when the error is one. */
const responseStatus = (error: unknown): number | undefined => {
  const cause = Predicate.hasProperty(error, "cause") ? error.cause : undefined
  return Predicate.isTagged(cause, "ResponseError") && Predicate.hasProperty(cause, "response") &&
      Predicate.hasProperty(cause.response, "status") && typeof cause.response.status === "number"
    ? cause.response.status
    : undefined
}

/**
 * A transport failure or a refused key of a call to `url`, as the one line a
 * person needs; other errors as they are.
 */
export const withServer = (url: string) => <E>(error: E): E | Unreachable => {
  if (Predicate.isTagged(error, "Unauthorized")) {
    return new Unreachable({
      message: `${url} refused the API key (401): pass --api-key or set RUNSTREAM_API_KEY to one of the server's keys`
    })
  }
  if (Predicate.isTagged(error, "RpcClientError")) {
    const status = responseStatus(error)
    return new Unreachable({
      message: status === 404
        ? `${url} has no Runstream API (404): is --url the server's base URL?`
        : status !== undefined
        ? `${url} answered ${status}`
        : `cannot reach ${url}: ${rootCause(error) ?? "the connection failed"}`
    })
  }
  return error
}

/** One line for an expected error (the domain's errors carry their own messages). */
export const describe = (error: unknown): string =>
  printable(
    Predicate.hasProperty(error, "message") && typeof error.message === "string" && error.message !== ""
      ? error.message
      : Predicate.hasProperty(error, "_tag") && typeof error._tag === "string"
      ? error._tag
      : String(error)
  )

/** What to print for a failed command; nothing when `@effect/cli` has printed it already. */
export const report = (cause: Cause.Cause<unknown>): Option.Option<string> => {
  if (Cause.isInterruptedOnly(cause)) return Option.none()
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) {
    return Option.some(`internal error: ${Option.match(Cause.dieOption(cause), { onNone: () => "unknown", onSome: describe })}`)
  }
  if (ValidationError.isValidationError(failure.value)) return Option.none()
  return Option.some(describe(failure.value))
}
