/**
 * The HTTP API (v1) as an `HttpApi`: routes, parameters, bodies, answers and
 * errors, from which the server is built and the OpenAPI document generated.
 * @since 0.1.0
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { RunId } from "../domain/Ids.ts"
import { ReadToken, TokenRequest } from "../domain/ReadToken.ts"
import { Run } from "../domain/Run.ts"
import { maxSeq, RunEvent } from "../domain/RunEvent.ts"
import { RunFilter } from "../domain/RunFilter.ts"
import { SignalSent } from "../domain/Signal.ts"
import { ScheduleDefinition, ScheduleDetail, ScheduleInfo, ScheduleName, SchedulePatch } from "../domain/Schedule.ts"
import { Stats } from "../domain/Stats.ts"
import { TaskList } from "../domain/TaskInfo.ts"
import { maxPageSize, StartOptions } from "../Runs.ts"
import * as ApiError from "./ApiError.ts"

/** @category schemas */
export const RunResponse = Schema.Struct({ run: Run }).annotations({ identifier: "RunResponse" })

const Folded = Schema.optional(Schema.Boolean).annotations({
  description: "true when a start with `debounce` was folded into the waiting run of its key (answered with that run, 200)."
})

/** The answer of `POST /v1/runs`. @category schemas */
export const StartRunResponse = Schema.Struct({ run: Run, folded: Folded }).annotations({ identifier: "StartRunResponse" })

/** @category schemas */
export const RunPage = Schema.Struct({
  runs: Schema.Array(Run),
  nextCursor: Schema.NullOr(Schema.String).annotations({ description: "Pass back as `cursor` for the next page; null on the last page." })
}).annotations({ identifier: "RunPage" })

/** @category schemas */
export const EventPage = Schema.Struct({
  events: Schema.Array(RunEvent),
  nextAfter: Schema.Int.annotations({ description: "Pass back as `after` for the next page: the last seq of this page, or `after` when it is empty." })
}).annotations({ identifier: "EventPage" })

/** The body of `POST /v1/runs`. @category schemas */
export const StartRunBody = Schema.Struct({
  task: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  input: Schema.optional(Schema.Unknown),
  ...StartOptions.from.fields
}).annotations({ identifier: "StartRun" })

/** The body of `POST /v1/runs/:id/replay` (optional): options overriding the original run's. @category schemas */
export const ReplayBody = Schema.Struct({
  options: Schema.optional(StartOptions)
}).annotations({ identifier: "Replay" })

/** The body of `POST /v1/runs/:id/signals/:name`. @category schemas */
export const SignalBody = Schema.Struct({
  data: Schema.optional(Schema.Unknown).annotations({
    description: "The signal's data: JSON of the schema the run's task declares for the signal (absent: null)."
  })
}).annotations({ identifier: "Signal" })

/** A run started or found, and which. @category schemas */
export const StartedResponse = Schema.Struct({
  run: Run,
  created: Schema.Boolean.annotations({
    description: "false when an existing run was returned: a repeated idempotency key, or a debounced start folded into its key's run."
  }),
  folded: Folded
}).annotations({ identifier: "Started" })

/** @category schemas */
export const Status = Schema.Struct({ status: Schema.String }).annotations({ identifier: "Status" })

/** An integer in a query string or header, with one message for every way it can be wrong. */
const intParam = (integer: Schema.Schema<number>, description: string, message: string) =>
  Schema.compose(Schema.NumberFromString, integer).annotations({ description, message: () => ({ message, override: true }) })
const After = intParam(
  Schema.Int.pipe(Schema.between(0, maxSeq)),
  "Only events with a greater seq (0: from the start).",
  `must be an integer from 0 to ${maxSeq}`
)
const Limit = intParam(
  Schema.Int.pipe(Schema.between(1, maxPageSize)),
  `Page size, 1 to ${maxPageSize}.`,
  `must be an integer from 1 to ${maxPageSize}`
)
const optional = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })
const RunPath = Schema.Struct({ id: RunId })

/** Accepted on the GET routes of a token's scope, in place of the API key (see `POST /v1/tokens`). */
const Token = optional(Schema.String.pipe(Schema.maxLength(1000)).annotations({
  description: "A read token (`POST /v1/tokens`), for clients that cannot send `Authorization` (a browser's `EventSource`); " +
    "accepted only within its scope."
}))

const eventStreamDescription =
  "`text/event-stream` unless `Accept` asks for `application/json`: one message per event (`id:` the seq, " +
  "`event:` the type, `data:` the event JSON), a `retry:` hint and a keep-alive comment line (every 15 s by default); it ends after " +
  "the run's terminal event. Resumes after `Last-Event-ID` (or `after`). 204 when resuming at or past the " +
  "terminal event of a finished run."

/** Documents the event-stream answer beside the JSON page in the same 200. */
const withEventStream = (operation: Record<string, any>) => ({
  ...operation,
  responses: {
    ...operation.responses,
    200: {
      ...operation.responses[200],
      content: {
        ...operation.responses[200]?.content,
        "text/event-stream": { schema: { type: "string" } }
      }
    },
    204: { description: "Resumed at or past the terminal event: nothing more will come." }
  }
})

/** @category groups */
export class RunsGroup extends HttpApiGroup.make("runs")
  .add(
    HttpApiEndpoint.post("start", "/v1/runs")
      .setPayload(StartRunBody)
      .addSuccess(StartRunResponse, { status: 201 })
      .addSuccess(
        StartRunResponse.annotations({
          description: "The existing run of a repeated idempotency key, or the waiting run a debounced start was folded into (`folded`)"
        }),
        { status: 200 }
      )
      .addError(ApiError.IdempotencyKeyConflict)
      .addError(ApiError.ContentTooLarge)
      .addError(ApiError.UnsupportedMediaType)
      .annotate(OpenApi.Summary, "Start a run")
      .annotate(OpenApi.Description,
        "`debounce: {key, delayMs, mode?}` folds starts of the task with one key into one run while it waits: each start " +
          "moves its start to `delayMs` after itself; `mode: \"trailing\"` (the default) gives it the latest input, " +
          "`\"leading\"` keeps the first. Once a worker claimed it, the next start with the key begins a new run. " +
          "An `idempotencyKey` is looked up first. `debounce` and `runAt` cannot be combined. " +
          "`concurrencyKey` is the key the task's concurrency and rate limits count by; without it, a task whose limits " +
          "name an input field (`concurrencyKeyField` in `GET /v1/tasks`) takes the key from that field of the input " +
          "(a string, or an integer as its text): a start whose input lacks it is refused (400 invalid_input naming " +
          "the field), nothing written.")
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/runs")
      .setUrlParams(Schema.Struct({
        ...RunFilter.fields,
        limit: optional(Limit),
        cursor: optional(Schema.String),
        token: Token
      }))
      .addSuccess(RunPage)
      .annotate(OpenApi.Summary, "List runs, newest first")
      .annotate(OpenApi.Description,
        "Every filter given applies. `q` is the start of a run id (lowercase hex digits, and dashes where the id has them). " +
          "`createdAfter` (inclusive) and `createdBefore` (exclusive) are ISO 8601 times. `idempotencyKey` finds the run of a key. " +
          "`parentId` lists a run's children, all of them (its `GET` lists the first 100).")
  )
  .add(
    HttpApiEndpoint.get("get", "/v1/runs/:id")
      .setPath(RunPath)
      .setUrlParams(Schema.Struct({ token: Token }))
      .addSuccess(RunResponse)
      .addError(ApiError.NotFound)
      .annotate(OpenApi.Summary, "Get a run")
  )
  .add(
    HttpApiEndpoint.post("cancel", "/v1/runs/:id/cancel")
      .setPath(RunPath)
      .addSuccess(RunResponse)
      .addError(ApiError.NotFound)
      .addError(ApiError.Conflict)
      .annotate(OpenApi.Summary, "Cancel a run")
  )
  .add(
    HttpApiEndpoint.post("signal", "/v1/runs/:id/signals/:name")
      // The name is checked by the core (400 invalid_input naming it), not by the route.
      .setPath(Schema.Struct({ id: RunId, name: Schema.String }))
      .setPayload(SignalBody)
      .addSuccess(SignalSent, { status: 202 })
      .addSuccess(
        SignalSent.annotations({ description: "A signal of this name was kept before: this one changes nothing (`created: false`)" }),
        { status: 200 }
      )
      .addError(ApiError.NotFound)
      .addError(ApiError.Conflict)
      .addError(ApiError.ContentTooLarge)
      .addError(ApiError.UnsupportedMediaType)
      .annotate(OpenApi.Summary, "Send a signal to a run")
      .annotate(OpenApi.Description,
        "The run's body waits for it with `ctx.waitForSignal(name, ...)`. `data` must be valid for the schema the " +
          "run's task declares for `name` (its `signals`), else 400 `invalid_input` and nothing is kept; so must the " +
          "name (1 to 100 letters, digits and `_ . : -`, declared by the task). A server whose program does not have " +
          "the task cannot check it and answers 400 `unknown_task`. The first signal of a name is kept (202), even " +
          "before the run waits for it; a later one is ignored (200, `created: false`). A waiting run is woken at " +
          "once. A finished run answers 409. The body is bounded by `RUNSTREAM_MAX_BODY_BYTES` (413), the data by " +
          "`RUNSTREAM_MAX_EVENT_BYTES` (it goes into the run's log as `signal.received`; 413).")
  )
  .add(
    HttpApiEndpoint.post("replay", "/v1/runs/:id/replay")
      .setPath(RunPath)
      .setPayload(ReplayBody)
      .addSuccess(StartedResponse, { status: 201 })
      .addSuccess(StartedResponse.annotations({ description: "The existing run of a repeated idempotency key (given in `options`)" }), { status: 200 })
      .addError(ApiError.NotFound)
      .addError(ApiError.IdempotencyKeyConflict)
      .addError(ApiError.ContentTooLarge)
      .addError(ApiError.UnsupportedMediaType)
      .annotate(OpenApi.Summary, "Start a new run of a run's task with its input")
      .annotate(OpenApi.Description,
        "The new run has the original's task and input, its queue, priority, maxAttempts, timeoutMs and concurrencyKey unless `options` " +
          "overrides them, no idempotency key and no `runAt` unless given, and `replayOf` set to the original's id. The body may be left out.")
  )
  .add(
    HttpApiEndpoint.get("events", "/v1/runs/:id/events")
      .setPath(RunPath)
      .setUrlParams(Schema.Struct({ after: optional(After), limit: optional(Limit), token: Token }))
      .setHeaders(Schema.Struct({ "last-event-id": optional(After) }))
      .addSuccess(EventPage)
      .addError(ApiError.NotFound)
      .annotate(OpenApi.Summary, "Follow a run's events (SSE), or read a page of them (JSON)")
      .annotate(OpenApi.Description, eventStreamDescription)
      .annotate(OpenApi.Transform, withEventStream)
  )
  .addError(ApiError.Unauthorized)
  .addError(ApiError.Unavailable)
{}

/** @category schemas */
export const ScheduleResponse = Schema.Struct({ schedule: ScheduleInfo }).annotations({ identifier: "ScheduleResponse" })

/** @category schemas */
export const SchedulePage = Schema.Struct({
  schedules: Schema.Array(ScheduleInfo),
  nextCursor: Schema.NullOr(Schema.String).annotations({ description: "Pass back as `cursor` for the next page; null on the last page." })
}).annotations({ identifier: "SchedulePage" })

const SchedulePath = Schema.Struct({ name: ScheduleName })
const SchedulesLimit = intParam(
  Schema.Int.pipe(Schema.between(1, 1000)),
  "Page size, 1 to 1000 (default 100).",
  "must be an integer from 1 to 1000"
)

/** @category groups */
export class SchedulesGroup extends HttpApiGroup.make("schedules")
  .add(
    HttpApiEndpoint.post("create", "/v1/schedules")
      .setPayload(ScheduleDefinition)
      .addSuccess(ScheduleResponse, { status: 201 })
      .addError(ApiError.ScheduleConflict)
      .addError(ApiError.ContentTooLarge)
      .addError(ApiError.UnsupportedMediaType)
      .annotate(OpenApi.Summary, "Create a schedule")
      .annotate(OpenApi.Description,
        "`cron` (5 fields: minute hour day month weekday, or 6 with seconds first; in `timezone`, an IANA name, default UTC) " +
          "or `every` (e.g. \"30 seconds\", at least 1 second; ticks are its multiples since the epoch). Each tick starts one run " +
          "of `task` with `input` and the idempotency key `schedule:<name>:<tick>`. `catchUp` says what happens to ticks missed " +
          "while nothing ran: `latest` (default) starts the latest once, `none` none, `all` each (up to 100). " +
          "A bad definition is refused with 400 (`invalid_schedule`, `unknown_task`, `invalid_input`) and nothing is written.")
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/schedules")
      .setUrlParams(Schema.Struct({ limit: optional(SchedulesLimit), cursor: optional(Schema.String.pipe(Schema.maxLength(200))) }))
      .addSuccess(SchedulePage)
      .annotate(OpenApi.Summary, "List schedules by name")
  )
  .add(
    HttpApiEndpoint.get("get", "/v1/schedules/:name")
      .setPath(SchedulePath)
      .addSuccess(ScheduleDetail)
      .addError(ApiError.ScheduleNotFound)
      .annotate(OpenApi.Summary, "Get a schedule, with the latest runs it started (newest first, at most 20)")
  )
  .add(
    HttpApiEndpoint.patch("update", "/v1/schedules/:name")
      .setPath(SchedulePath)
      .setPayload(SchedulePatch)
      .addSuccess(ScheduleResponse)
      .addError(ApiError.ScheduleNotFound)
      .addError(ApiError.ScheduleConflict)
      .addError(ApiError.ContentTooLarge)
      .addError(ApiError.UnsupportedMediaType)
      .annotate(OpenApi.Summary, "Change a schedule created over the API")
      .annotate(OpenApi.Description,
        "Only the fields given change; `cron` replaces `every` and the reverse. A new timing ticks from the first tick after now. " +
          "A schedule declared in code answers 409 `schedule_declared_in_code`: its code owns it.")
  )
  .add(
    HttpApiEndpoint.del("delete", "/v1/schedules/:name")
      .setPath(SchedulePath)
      .setUrlParams(Schema.Struct({ force: optional(Schema.Literal("true", "false")) }))
      .addSuccess(Schema.Void, { status: 204 })
      .addError(ApiError.ScheduleNotFound)
      .addError(ApiError.ScheduleConflict)
      .annotate(OpenApi.Summary, "Delete a schedule (its runs stay)")
      .annotate(OpenApi.Description,
        "A schedule declared in code answers 409 unless `force=true`; a program declaring it writes it again when it starts.")
  )
  .add(
    HttpApiEndpoint.post("pause", "/v1/schedules/:name/pause")
      .setPath(SchedulePath)
      .addSuccess(ScheduleResponse)
      .addError(ApiError.ScheduleNotFound)
      .annotate(OpenApi.Summary, "Pause a schedule: no tick starts a run until it is resumed")
  )
  .add(
    HttpApiEndpoint.post("resume", "/v1/schedules/:name/resume")
      .setPath(SchedulePath)
      .addSuccess(ScheduleResponse)
      .addError(ApiError.ScheduleNotFound)
      .annotate(OpenApi.Summary, "Resume a schedule from its first tick after now (ticks while paused are not started)")
  )
  .addError(ApiError.Unauthorized)
  .addError(ApiError.Unavailable)
{}

/** @category groups */
export class EventsGroup extends HttpApiGroup.make("events")
  .add(
    HttpApiEndpoint.get("all", "/v1/events")
      .setUrlParams(Schema.Struct({ task: optional(Schema.String), run: optional(RunId), token: Token }))
      .addSuccess(Schema.String.annotations({ description: "text/event-stream of live events; not replayed, never ends" }))
      .annotate(OpenApi.Summary, "Live events of all runs (debug stream, SSE)")
      .annotate(OpenApi.Transform, (operation) => ({
        ...operation,
        responses: { ...operation.responses, 200: { description: "Live events", content: { "text/event-stream": { schema: { type: "string" } } } } }
      }))
  )
  .addError(ApiError.Unauthorized)
  .addError(ApiError.Unavailable)
{}

/** @category groups */
export class StatsGroup extends HttpApiGroup.make("stats")
  .add(
    HttpApiEndpoint.get("stats", "/v1/stats")
      .addSuccess(Stats)
      .annotate(OpenApi.Summary, "Counts, queue depths, runs ended per minute, wait and duration percentiles")
  )
  .add(
    HttpApiEndpoint.get("tasks", "/v1/tasks")
      .addSuccess(TaskList)
      .annotate(OpenApi.Summary, "The tasks this server starts, with their input and output as JSON Schema")
      .annotate(OpenApi.Description,
        "Each task's input and output (JSON Schema), retry policy, timeout, concurrency and rate limits, the input " +
          "field its limits take a start's key from when the start names none (`concurrencyKeyField`), and its " +
          "own retention (`{keepMs}` or \"off\"; null: the program's `RUNSTREAM_RETENTION`); and the queues that " +
          "declare limits (`queues`: they count the runs of tasks without limits of their own).")
  )
  .addError(ApiError.Unauthorized)
  .addError(ApiError.Unavailable)
{}

/** @category groups */
export class TokensGroup extends HttpApiGroup.make("tokens")
  .add(
    HttpApiEndpoint.post("create", "/v1/tokens")
      .setPayload(TokenRequest)
      .addSuccess(ReadToken, { status: 201 })
      .addError(ApiError.NotFound)
      .addError(ApiError.ContentTooLarge)
      .addError(ApiError.UnsupportedMediaType)
      .addError(ApiError.NotImplemented)
      .annotate(OpenApi.Summary, "Mint a read token for one run or for the runs of one task")
      .annotate(OpenApi.Description,
        "The token (HMAC-SHA256 under the server's `RUNSTREAM_TOKEN_SECRET`) is accepted as `?token=` until `expiresAt` " +
          "on the GET routes of its scope, and refused (401) elsewhere. Scope `runId`: `/v1/runs/{id}` and `/v1/runs/{id}/events`. " +
          "Scope `task`: `/v1/runs?task=<task>`, each run of the task and its events, and `/v1/events?task=<task>`.")
  )
  .addError(ApiError.Unauthorized)
  .addError(ApiError.Unavailable)
{}

/** @category groups */
export class HealthGroup extends HttpApiGroup.make("health")
  .add(HttpApiEndpoint.get("healthz", "/healthz").addSuccess(Status).annotate(OpenApi.Summary, "Liveness"))
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(Status)
      .addError(ApiError.Unavailable)
      .annotate(OpenApi.Summary, "Readiness: the database answers and the LISTEN connection is up")
  )
{}

/**
 * The builder's own `HttpApiDecodeError` never reaches a client (`Server`
 * answers it as `ErrorBody`), so the document must not advertise it.
 */
const withoutDecodeError = (spec: Record<string, any>): Record<string, any> => {
  const isDecodeError = (schema: any) => schema?.$ref === "#/components/schemas/HttpApiDecodeError"
  for (const path of Object.values<any>(spec.paths)) {
    for (const operation of Object.values<any>(path)) {
      const json = operation.responses?.[400]?.content?.["application/json"]
      if (json?.schema?.anyOf !== undefined) {
        const rest = json.schema.anyOf.filter((schema: any) => !isDecodeError(schema))
        json.schema = rest.length === 1 ? rest[0] : { anyOf: rest }
      } else if (isDecodeError(json?.schema)) {
        json.schema = { $ref: "#/components/schemas/Error" }
      }
    }
  }
  const { HttpApiDecodeError: _, Issue: __, PropertyKey: ___, ...schemas } = spec.components.schemas
  return { ...spec, components: { ...spec.components, schemas } }
}

/**
 * Effect marks its built-in schemas (`Unknown`, `Any`, ...) with an `$id` such as
 * `/schemas/unknown`; every use repeats it, and JSON Schema 2020-12 (OpenAPI 3.1)
 * forbids one `$id` twice in a document. The marks say nothing to a reader: they go.
 */
const withoutBuiltinIds = (value: any): any => {
  if (Array.isArray(value)) return value.map(withoutBuiltinIds)
  if (value === null || typeof value !== "object") return value
  const result: Record<string, any> = {}
  for (const [key, inner] of Object.entries(value)) {
    if (key === "$id" && typeof inner === "string" && inner.startsWith("/schemas/")) continue
    result[key] = withoutBuiltinIds(inner)
  }
  return result
}

/** Bearer keys guard every operation but the health checks (`Auth` checks them, outside the `HttpApi`). */
const withBearerAuth = (spec: Record<string, any>): Record<string, any> => {
  for (const path of Object.values<any>(spec.paths)) {
    for (const operation of Object.values<any>(path)) {
      if (operation.tags?.includes("health")) operation.security = []
      else delete operation.security
    }
  }
  return {
    ...spec,
    components: { ...spec.components, securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    security: [{ bearer: [] }]
  }
}

/** @category api */
export class Api extends HttpApi.make("runstream")
  .add(RunsGroup)
  .add(EventsGroup)
  .add(SchedulesGroup)
  .add(StatsGroup)
  .add(TokensGroup)
  .add(HealthGroup)
  .addError(ApiError.BadRequest)
  .addError(ApiError.Internal)
  .annotateContext(OpenApi.annotations({
    title: "Runstream",
    version: "1",
    description: "Durable runs with live, resumable event streams. Errors are `{\"error\": {\"code\", \"message\", \"issues\"?}}`. " +
      "When the server has API keys, every route but /healthz and /readyz needs `Authorization: Bearer <key>`.",
    transform: (spec) => withBearerAuth(withoutDecodeError(withoutBuiltinIds(spec)))
  }))
{}

/** The health checks alone, for processes without the API (workers). @category api */
export class HealthApi extends HttpApi.make("runstream-health")
  .add(HealthGroup)
  .addError(ApiError.BadRequest)
  .addError(ApiError.Internal)
{}
