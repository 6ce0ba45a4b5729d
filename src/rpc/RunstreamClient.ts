/**
 * A typed client of a Runstream server's `POST /rpc`, for Effect programs: the
 * operations of `Runs`, by the same names, over HTTP (NDJSON, streams included).
 *
 * ```ts
 * import { RunstreamClient } from "./rpc/index.ts"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* RunstreamClient.RunstreamClient
 *   const { run } = yield* client.start("demo.count", { to: 3 })
 *   yield* client.events(run.id).pipe(Stream.runForEach(Console.log))
 * }).pipe(Effect.provide(RunstreamClient.layer({ url: "http://localhost:3000/rpc", apiKey })))
 * ```
 * @since 0.1.0
 */
import { FetchHttpClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { RpcClient, type RpcClientError, RpcSerialization } from "@effect/rpc"
import { Context, Duration, Effect, Layer, ParseResult, Predicate, type Redacted, Schema, Stream } from "effect"
import {
  type AwaitTimeout,
  type IdempotencyConflict,
  type InvalidCursor,
  InvalidInput,
  type PayloadTooLarge,
  type RunAlreadyFinished,
  type RunNotFound,
  type TokensDisabled,
  type UnknownTask
} from "../domain/Errors.ts"
import type { ReadToken } from "../domain/ReadToken.ts"
import {
  type InvalidSchedule,
  type ScheduleDeclaredInCode,
  ScheduleDefinition,
  type ScheduleDetail,
  type ScheduleExists,
  type ScheduleInfo,
  type ScheduleNotFound,
  SchedulePatch
} from "../domain/Schedule.ts"
import type { Stats } from "../domain/Stats.ts"
import type { TaskList } from "../domain/TaskInfo.ts"
import type { Run, RunStatus } from "../domain/Run.ts"
import type { RunEvent } from "../domain/RunEvent.ts"
import type { SignalSent } from "../domain/Signal.ts"
import { StartOptions } from "../domain/StartOptions.ts"
import type * as Task from "../Task.ts"
import {
  type EventPage,
  type RunPage,
  type SchedulePage,
  RunstreamRpcs,
  type ShuttingDown,
  type Started,
  type TooManyStreams,
  type Unavailable
} from "./RunstreamRpcs.ts"

/** A live call (a stream, an await) refused or ended by the server's stream budget or its shutdown. */
export type LiveLimit = TooManyStreams | ShuttingDown

export interface ClientOptions {
  /** The RPC endpoint, e.g. `http://localhost:3000/rpc`. */
  readonly url: string
  /** Sent as `Authorization: Bearer <apiKey>` with every call. */
  readonly apiKey?: string | Redacted.Redacted | undefined
}

/**
 * The server answered 401: the client's `apiKey` is missing or not one of the
 * server's keys. Retrying will not help.
 * @category errors
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {}) {
  override get message() {
    return "the server refused the API key (401 Unauthorized): give the client one of the server's RUNSTREAM_API_KEYS"
  }
}

export type StartError =
  | UnknownTask
  | InvalidInput
  | PayloadTooLarge
  | IdempotencyConflict
  | Unavailable
  | Unauthorized
  | RpcClientError.RpcClientError

/** Why a call failed on its way (no answer) or was refused (the API key). */
export type CallError = Unavailable | Unauthorized | RpcClientError.RpcClientError

/** Why a schedule's definition was refused. */
export type ScheduleDefinitionError = InvalidSchedule | UnknownTask | InvalidInput | PayloadTooLarge

/**
 * A client of one Runstream server. `Unauthorized` means the server refused
 * the API key; `RpcClientError` that the call did not get an answer.
 */
export class RunstreamClient extends Context.Tag("runstream/RunstreamClient")<RunstreamClient, {
  /**
   * Starts a run. With a `Task`, the input is typed and encoded with the task's
   * schema here; with a task name, it is sent as is. `created` is false for a
   * repeated idempotency key (same task and input); another task or input
   * with it fails with `IdempotencyConflict`.
   */
  readonly start: {
    <T extends Task.Any>(task: T, input: Task.InputOf<T>, options?: StartOptions): Effect.Effect<typeof Started.Type, StartError>
    (task: string, input: unknown, options?: StartOptions): Effect.Effect<typeof Started.Type, StartError>
  }
  readonly get: (runId: string) => Effect.Effect<Run, RunNotFound | Unavailable | Unauthorized | RpcClientError.RpcClientError>
  /** Newest first; pass `nextCursor` back as `cursor` for the next page. */
  readonly list: (options?: {
    readonly status?: RunStatus | undefined
    readonly task?: string | undefined
    readonly queue?: string | undefined
    readonly idempotencyKey?: string | undefined
    /** ISO 8601: runs created at or after it. */
    readonly createdAfter?: string | undefined
    /** ISO 8601: runs created before it. */
    readonly createdBefore?: string | undefined
    /** The start of a run id (lowercase hex, dashes where the id has them). */
    readonly q?: string | undefined
    /** A run's id: its children (`ctx.start`), all of them. */
    readonly parentId?: string | undefined
    readonly limit?: number | undefined
    readonly cursor?: string | undefined
  }) => Effect.Effect<typeof RunPage.Type, InvalidCursor | InvalidInput | Unavailable | Unauthorized | RpcClientError.RpcClientError>
  readonly cancel: (
    runId: string
  ) => Effect.Effect<Run, RunNotFound | RunAlreadyFinished | Unavailable | Unauthorized | RpcClientError.RpcClientError>
  /**
   * Sends the signal `name` to a run, `data` as JSON carries it (the encoded
   * side of the schema its task declares for the name); see `Runs.signal`.
   * `created` is false when a signal of the name was kept before.
   */
  readonly signal: (
    runId: string,
    name: string,
    data: unknown
  ) => Effect.Effect<
    SignalSent,
    | RunNotFound
    | RunAlreadyFinished
    | UnknownTask
    | InvalidInput
    | PayloadTooLarge
    | Unavailable
    | Unauthorized
    | RpcClientError.RpcClientError
  >
  /**
   * A new run of the run's task with its input, `replayOf` the original;
   * `options` override the original's queue, priority, maxAttempts, timeoutMs and concurrencyKey.
   */
  readonly replay: (runId: string, options?: StartOptions) => Effect.Effect<typeof Started.Type, StartError | RunNotFound>
  /** Counts, queue depths, runs ended per minute, wait and duration percentiles (`GET /v1/stats`). */
  readonly stats: () => Effect.Effect<Stats, Unavailable | Unauthorized | RpcClientError.RpcClientError>
  /** The tasks the server starts, with their schemas (`GET /v1/tasks`). */
  readonly tasks: () => Effect.Effect<typeof TaskList.Type, Unauthorized | RpcClientError.RpcClientError>
  /** A read token for one run (`runId`) or the runs of one task (`task`), for `?token=` (`POST /v1/tokens`). */
  readonly createToken: (
    request: { readonly runId?: string | undefined; readonly task?: string | undefined; readonly ttlSeconds: number }
  ) => Effect.Effect<ReadToken, InvalidInput | RunNotFound | TokensDisabled | Unavailable | Unauthorized | RpcClientError.RpcClientError>
  /**
   * A new schedule (`POST /v1/schedules`): `cron` (in `timezone`) or `every`;
   * each tick starts a run of `task` with `input`.
   */
  readonly createSchedule: (
    definition: ScheduleDefinition
  ) => Effect.Effect<ScheduleInfo, ScheduleDefinitionError | ScheduleExists | CallError>
  /** A schedule and the latest runs it started, newest first. */
  readonly getSchedule: (name: string) => Effect.Effect<typeof ScheduleDetail.Type, ScheduleNotFound | CallError>
  /** Schedules by name; pass `nextCursor` back as `cursor`. */
  readonly listSchedules: (
    options?: { readonly limit?: number | undefined; readonly cursor?: string | undefined }
  ) => Effect.Effect<typeof SchedulePage.Type, InvalidInput | CallError>
  /** Changes the fields given of a schedule created over the API (one declared in code: `ScheduleDeclaredInCode`). */
  readonly updateSchedule: (
    name: string,
    patch: SchedulePatch
  ) => Effect.Effect<ScheduleInfo, ScheduleDefinitionError | ScheduleNotFound | ScheduleDeclaredInCode | CallError>
  readonly pauseSchedule: (name: string) => Effect.Effect<ScheduleInfo, ScheduleNotFound | CallError>
  /** Ticks again from the first tick after now. */
  readonly resumeSchedule: (name: string) => Effect.Effect<ScheduleInfo, ScheduleNotFound | CallError>
  /** Deletes a schedule (its runs stay); one declared in code only with `force`. */
  readonly deleteSchedule: (
    name: string,
    options?: { readonly force?: boolean | undefined }
  ) => Effect.Effect<void, ScheduleNotFound | ScheduleDeclaredInCode | CallError>
  /** A page of the run's log after `after` (default 0). */
  readonly readEvents: (
    runId: string,
    options?: { readonly after?: number | undefined; readonly limit?: number | undefined }
  ) => Effect.Effect<typeof EventPage.Type, RunNotFound | InvalidInput | Unavailable | Unauthorized | RpcClientError.RpcClientError>
  /**
   * The run's events after `after` (default 0), each once and in order; ends
   * after the terminal event. To resume, pass the last seq seen as `after`.
   */
  readonly events: (
    runId: string,
    options?: { readonly after?: number | undefined }
  ) => Stream.Stream<RunEvent, RunNotFound | InvalidInput | Unavailable | LiveLimit | Unauthorized | RpcClientError.RpcClientError>
  /** Live events of every run (debug), optionally of one task or run. Not replayed; never ends. */
  readonly allEvents: (
    filter?: { readonly task?: string | undefined; readonly runId?: string | undefined }
  ) => Stream.Stream<RunEvent, InvalidInput | LiveLimit | Unauthorized | RpcClientError.RpcClientError>
  /** Waits until the run is finished and returns it; `AwaitTimeout` after `timeout`, when given. */
  readonly awaitCompletion: (
    runId: string,
    options?: { readonly timeout?: Duration.DurationInput | undefined }
  ) => Effect.Effect<Run, RunNotFound | AwaitTimeout | InvalidInput | Unavailable | LiveLimit | Unauthorized | RpcClientError.RpcClientError>
}>() {}

const invalid = (what: string) => (error: ParseResult.ParseError) => InvalidInput.fromParseError(what, error)

/** The protocol's failure for an answer of 401, as `Unauthorized`. */
const isRefusedKey = (error: unknown): boolean => {
  const cause = Predicate.hasProperty(error, "cause") ? error.cause : undefined
  return Predicate.isTagged(error, "RpcClientError") && Predicate.isTagged(cause, "ResponseError") &&
    Predicate.hasProperty(cause, "response") && Predicate.hasProperty(cause.response, "status") &&
    cause.response.status === 401
}

const typed = <E>(error: E): E | Unauthorized => isRefusedKey(error) ? new Unauthorized() : error

const call = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.mapError(effect, typed)
const follow = <A, E, R>(stream: Stream.Stream<A, E, R>) => Stream.mapError(stream, typed)

const toMillis = (timeout: Duration.DurationInput | undefined) => {
  if (timeout === undefined) return undefined
  const duration = Duration.decode(timeout)
  return Duration.isFinite(duration) ? Math.ceil(Duration.toMillis(duration)) : undefined
}

/** The client over an RPC `Protocol` (see `layerProtocol`). */
export const make = Effect.gen(function*() {
  const client = yield* RpcClient.make(RunstreamRpcs)

  const start = (task: Task.Any | string, input: unknown, options?: StartOptions) =>
    Effect.gen(function*() {
      const encodedInput = typeof task === "string"
        ? input
        : yield* Effect.mapError(Schema.encodeUnknown(task.input)(input), invalid(`input of task '${task.name}'`))
      const encodedOptions = options === undefined
        ? undefined
        : yield* Effect.mapError(Schema.encode(StartOptions)(options), invalid("options"))
      return yield* call(client.Start({
        task: typeof task === "string" ? task : task.name,
        input: encodedInput,
        options: encodedOptions
      }))
    })

  return RunstreamClient.of({
    start,
    get: (runId) => call(client.Get({ runId })),
    list: (options = {}) => call(client.List(options)),
    cancel: (runId) => call(client.Cancel({ runId })),
    signal: (runId, name, data) => call(client.Signal({ runId, name, data })),
    replay: (runId, options) =>
      Effect.gen(function*() {
        const encoded = options === undefined ? undefined : yield* Effect.mapError(Schema.encode(StartOptions)(options), invalid("options"))
        return yield* call(client.Replay({ runId, options: encoded }))
      }),
    createSchedule: (definition) =>
      Effect.flatMap(
        Effect.mapError(Schema.encode(ScheduleDefinition)(definition), invalid("the schedule")),
        (encoded) => call(client.CreateSchedule(encoded))
      ),
    getSchedule: (name) => call(client.GetSchedule({ name })),
    listSchedules: (options = {}) => call(client.ListSchedules(options)),
    updateSchedule: (name, patch) =>
      Effect.flatMap(
        Effect.mapError(Schema.encode(SchedulePatch)(patch), invalid("the schedule's change")),
        (encoded) => call(client.UpdateSchedule({ name, ...encoded }))
      ),
    pauseSchedule: (name) => call(client.PauseSchedule({ name })),
    resumeSchedule: (name) => call(client.ResumeSchedule({ name })),
    deleteSchedule: (name, options = {}) => call(client.DeleteSchedule({ name, force: options.force })),
    stats: () => call(client.Stats()),
    tasks: () => call(client.Tasks()),
    createToken: (request) => call(client.CreateToken(request)),
    readEvents: (runId, options = {}) => call(client.ReadEvents({ runId, ...options })),
    events: (runId, options = {}) => follow(client.Events({ runId, ...options })),
    allEvents: (filter = {}) => follow(client.AllEvents(filter)),
    awaitCompletion: (runId, options = {}) => call(client.AwaitCompletion({ runId, timeoutMs: toMillis(options.timeout) }))
  })
})

/**
 * The HTTP protocol on the `HttpClient` in context. A status other than 2xx
 * (a refused API key, a proxy's error page) fails the call with
 * `RpcClientError` (which the client turns into `Unauthorized` for a 401); without the check its body would be read as NDJSON, answer
 * nothing, and leave the call waiting forever.
 */
export const layerProtocol = (options: ClientOptions): Layer.Layer<RpcClient.Protocol, never, HttpClient.HttpClient> =>
  Layer.scoped(
    RpcClient.Protocol,
    Effect.flatMap(HttpClient.HttpClient, (http) => {
      const apiKey = options.apiKey
      const authorized = http.pipe(
        HttpClient.mapRequest(HttpClientRequest.prependUrl(options.url)),
        apiKey === undefined ? (client) => client : HttpClient.mapRequest(HttpClientRequest.bearerToken(apiKey)),
        HttpClient.filterStatusOk
      )
      return RpcClient.makeProtocolHttp(authorized)
    })
  ).pipe(Layer.provide(RpcSerialization.layerNdjson))

/** The client on the `HttpClient` in context (`NodeHttpClient.layerUndici`, a client with retries, ...). */
export const layerFromHttpClient = (options: ClientOptions): Layer.Layer<RunstreamClient, never, HttpClient.HttpClient> =>
  Layer.scoped(RunstreamClient, make).pipe(Layer.provide(layerProtocol(options)))

/** The client over `fetch`. */
export const layer = (options: ClientOptions): Layer.Layer<RunstreamClient> =>
  layerFromHttpClient(options).pipe(Layer.provide(FetchHttpClient.layer))
