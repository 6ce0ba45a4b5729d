/**
 * Errors of the HTTP API: one value with a status and a stable `code`, sent as
 * `{"error": {"code": "...", "message": "..."}}`, and how each failure of the
 * core maps to one. Messages never carry stack traces or database details.
 * @since 0.1.0
 */
import { HttpApiSchema, HttpServerResponse } from "@effect/platform"
import type { SqlError } from "@effect/sql"
import { Effect, Schema } from "effect"
import {
  boundedIssues,
  clip,
  describeIssue,
  type IdempotencyConflict,
  InputIssue,
  type InvalidCursor,
  type InvalidInput,
  type PayloadTooLarge,
  type RunAlreadyFinished,
  type RunNotFound,
  type TokensDisabled,
  type UnknownTask
} from "../domain/Errors.ts"
import type { InvalidSchedule, ScheduleDeclaredInCode, ScheduleExists, ScheduleNotFound as NoSchedule } from "../domain/Schedule.ts"

/** An error answered to a client. */
export class ApiError extends Schema.TaggedError<ApiError>()("ApiError", {
  status: Schema.Int,
  code: Schema.String,
  message: Schema.String,
  issues: Schema.optional(Schema.Array(InputIssue))
}) {}

/** The body of every error response. */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    code: Schema.String.annotations({
      description: "Stable and machine-readable: run_not_found, invalid_input, invalid_json, unauthorized, ..."
    }),
    message: Schema.String.annotations({ description: "For humans; may change between versions." }),
    issues: Schema.optional(Schema.Array(InputIssue)).annotations({
      description: "With `invalid_input` when a value failed its schema: what is wrong, field by field " +
        "(`path`: keys and indexes from the top of the value). At most 20."
    })
  })
}).annotations({ identifier: "Error" })

/** What a client is sent of an error. */
const bodyOf = (error: ApiError): typeof ErrorBody.Type["error"] =>
  error.issues === undefined
    ? { code: error.code, message: error.message }
    : { code: error.code, message: error.message, issues: error.issues }

/**
 * `ApiError`s of one status as the `HttpApi` declares them: the builder encodes
 * them to `ErrorBody` with that status, and the OpenAPI document shows `ErrorBody`.
 */
const withStatus = (status: number, description: string) =>
  Schema.transform(
    ErrorBody,
    Schema.declare((u): u is ApiError => u instanceof ApiError && u.status === status),
    {
      strict: true,
      decode: ({ error }) => new ApiError({ status, ...error }),
      encode: (e) => ({ error: bodyOf(e) })
    }
  ).annotations(HttpApiSchema.annotations({ status, description }))

/** @category declarations */
export const BadRequest = withStatus(400, "The request is invalid: see `error.code` and `error.message`.")
/** @category declarations */
export const Unauthorized = withStatus(401, "A valid `Authorization: Bearer <key>` header is required.")
/** @category declarations */
export const NotFound = withStatus(404, "No such run.")
/** @category declarations */
export const Conflict = withStatus(409, "The run is already finished.")
/** @category declarations */
export const ScheduleNotFound = withStatus(404, "No such schedule.")
/** @category declarations */
export const ScheduleConflict = withStatus(
  409,
  "`schedule_exists`: the name is taken; `schedule_declared_in_code`: the schedule is declared in a program's code, which owns it."
)
/** @category declarations */
export const IdempotencyKeyConflict = withStatus(409, "The idempotency key was used before with another task or input.")
/** @category declarations */
export const ContentTooLarge = withStatus(413, "The body or the run's input is over the limit.")
/** @category declarations */
export const UnsupportedMediaType = withStatus(415, "The body must be `application/json`.")
/** @category declarations */
export const NotImplemented = withStatus(501, "Read tokens are disabled: the server has no `RUNSTREAM_TOKEN_SECRET`.")
/** @category declarations */
export const Internal = withStatus(500, "An unexpected error; the server's log has the details.")
/** @category declarations */
export const Unavailable = withStatus(503, "The database cannot be reached, the stream limit is reached, or the server is shutting down.")

/** @category constructors */
export const badRequest = (code: string, message: string) => new ApiError({ status: 400, code, message })

/**
 * What failed validation: field by field in `issues`, and in a line for
 * humans ("limit: Expected ...").
 */
export const invalidInput = (
  issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>
) => {
  const bounded = boundedIssues(issues)
  const text = bounded.map(describeIssue).join("; ")
  return new ApiError({
    status: 400,
    code: "invalid_input",
    message: clip(text, 2000),
    issues: bounded
  })
}

/** @category constructors */
export const internal = new ApiError({
  status: 500,
  code: "internal",
  message: "an unexpected error occurred; the server's log has the details"
})

/** @category constructors */
export const unavailable = new ApiError({
  status: 503,
  code: "unavailable",
  message: "the service cannot reach its database; try again later"
})

/** Failures of `Runs` that an API call can meet. */
export type CoreError =
  | RunNotFound
  | UnknownTask
  | InvalidInput
  | PayloadTooLarge
  | RunAlreadyFinished
  | InvalidCursor
  | IdempotencyConflict
  | TokensDisabled
  | NoSchedule
  | ScheduleExists
  | ScheduleDeclaredInCode
  | InvalidSchedule
  | SqlError.SqlError

/** The API's answer to a failure of the core. */
export const fromCore = (error: CoreError): ApiError => {
  switch (error._tag) {
    case "RunNotFound":
      return new ApiError({ status: 404, code: "run_not_found", message: error.message })
    case "UnknownTask":
      return badRequest("unknown_task", error.message)
    case "InvalidInput":
      return new ApiError({ status: 400, code: "invalid_input", message: error.message, issues: error.issues })
    case "InvalidCursor":
      return badRequest("invalid_cursor", error.message)
    case "PayloadTooLarge":
      return new ApiError({ status: 413, code: "payload_too_large", message: error.message })
    case "RunAlreadyFinished":
      return new ApiError({ status: 409, code: "run_already_finished", message: error.message })
    case "IdempotencyConflict":
      return new ApiError({ status: 409, code: "idempotency_conflict", message: error.message })
    case "TokensDisabled":
      return new ApiError({ status: 501, code: "tokens_disabled", message: error.message })
    case "ScheduleNotFound":
      return new ApiError({ status: 404, code: "schedule_not_found", message: error.message })
    case "ScheduleExists":
      return new ApiError({ status: 409, code: "schedule_exists", message: error.message })
    case "ScheduleDeclaredInCode":
      return new ApiError({ status: 409, code: "schedule_declared_in_code", message: error.message })
    case "InvalidSchedule":
      return new ApiError({ status: 400, code: "invalid_schedule", message: error.message, issues: error.issues })
    case "SqlError":
      return unavailable
  }
}

/** Maps the core's failures to `ApiError`s; database errors are logged here, as clients never see them. */
export const mapCore = <A, R>(effect: Effect.Effect<A, CoreError, R>): Effect.Effect<A, ApiError, R> =>
  effect.pipe(
    Effect.tapErrorTag("SqlError", (error) => Effect.logError("database error", error)),
    Effect.mapError(fromCore)
  )

/** The response for an error. */
export const toResponse = (error: ApiError, headers?: Record<string, string>): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(
    { error: bodyOf(error) },
    { status: error.status, ...(headers === undefined ? {} : { headers }) }
  )
