/**
 * Serving `RunstreamRpcs` from the `Runs` service.
 *
 * To mount it at `POST /rpc` (auth, if any, is the mounting code's middleware:
 * request headers reach the handlers, none are checked here):
 *
 * ```ts
 * // httpApp: Effect<HttpApp.Default<never, Scope.Scope>, never,
 * //   Runs | Schedules | Streams | Stats | ReadTokens | TaskRegistry | Scope.Scope>
 * const app = yield* RpcServer.httpApp   // in the scope of the HTTP server's layer
 * HttpRouter.empty.pipe(HttpRouter.post("/rpc", app))
 * ```
 *
 * (`Stats.layer()` and `ReadTokens.layer(secret)` provide the two new ones;
 * `Server.layer` does so itself.)
 *
 * The RPC server runs in a fiber forked into the `Scope` that `httpApp` is
 * given: the app answers while that scope is open. The framing is NDJSON
 * (`HttpProtocol`, bounded); clients must use NDJSON too (`RunstreamClient` does).
 *
 * Streams (`Events`, `AllEvents`, `AwaitCompletion`) take a slot of the
 * process's `Streams` budget, shared with SSE: past it they fail with
 * `TooManyStreams`, and they end with `ShuttingDown` when the server stops.
 * Over HTTP they are admitted a few at a time (`Limits.streamSetups`), and
 * their handlers say when they are set up (`CallSetup.done`).
 *
 * Why NDJSON: with the JSON serialization the HTTP protocol holds the whole
 * response until every RPC of the request has exited, so `Events` would arrive
 * all at once at the end and `AllEvents`, which never ends, would never answer.
 * NDJSON frames each message, written as soon as it is produced.
 * @since 0.1.0
 */
import type { HttpApp } from "@effect/platform"
import { RpcServer } from "@effect/rpc"
import { SqlError } from "@effect/sql"
import { Cause, Duration, Effect, Exit, Schema, type Scope, Stream } from "effect"
import { InvalidInput, RunNotFound } from "../domain/Errors.ts"
import { RunId } from "../domain/Ids.ts"
import { TokenRequest } from "../domain/ReadToken.ts"
import { ScheduleDefinition, SchedulePatch } from "../domain/Schedule.ts"
import { CreatedAtBound } from "../domain/RunFilter.ts"
import { httpDefaults } from "../http/HttpConfig.ts"
import { ReadTokens } from "../http/ReadTokens.ts"
import { type StreamRefused, Streams } from "../http/Streams.ts"
import { mint } from "../http/TokensHandlers.ts"
import { Runs, StartOptions } from "../Runs.ts"
import { Schedules } from "../schedules/Schedules.ts"
import { Stats } from "../Stats.ts"
import { QueueLimits } from "../queue/QueueLimits.ts"
import * as Task from "../Task.ts"
import * as Tracing from "../tracing/Tracing.ts"
import * as CallSetup from "./CallSetup.ts"
import * as HttpProtocol from "./HttpProtocol.ts"
import { RunstreamRpcs, ShuttingDown, TooManyStreams, Unavailable } from "./RunstreamRpcs.ts"

const isSqlError = (error: unknown): error is SqlError.SqlError => error instanceof SqlError.SqlError

/** The database's error stays in the server's log; the client is told `Unavailable`. */
const unavailable = (error: SqlError.SqlError) =>
  Effect.zipRight(
    Effect.logError("RPC answered Unavailable after a database error", Cause.fail(error)),
    Effect.fail(new Unavailable())
  )

const hideSqlError = <A, E, R>(self: Effect.Effect<A, E | SqlError.SqlError, R>) =>
  Effect.catchIf(self, isSqlError, unavailable)

/** A string that is not a run id names no run. */
const parseRunId = (runId: string): Effect.Effect<RunId, RunNotFound> =>
  Effect.mapError(Schema.decodeUnknown(RunId)(runId), () => new RunNotFound({ runId }))

const parseRunFilter = (runId: string | undefined): Effect.Effect<RunId | undefined, InvalidInput> =>
  runId === undefined
    ? Effect.succeed(undefined)
    : Effect.mapError(Schema.decodeUnknown(RunId)(runId), () => new InvalidInput({ message: `'${runId}' is not a run id` }))

const nonNegativeInteger = (name: string, value: number | undefined): Effect.Effect<number | undefined, InvalidInput> =>
  value === undefined || (Number.isSafeInteger(value) && value >= 0)
    ? Effect.succeed(value)
    : Effect.fail(new InvalidInput({ message: `${name} must be a non-negative integer` }))

const decodeOptions = (options: unknown): Effect.Effect<StartOptions | undefined, InvalidInput> =>
  options === undefined
    ? Effect.succeed(undefined)
    : Schema.decodeUnknown(StartOptions, { errors: "all" })(options).pipe(
      Effect.mapError((error) => InvalidInput.fromParseError("options", error))
    )

const decodeTime = (name: string, value: string | undefined) =>
  value === undefined
    ? Effect.succeed(undefined)
    : Schema.decodeUnknown(CreatedAtBound)(value).pipe(Effect.mapError((error) => InvalidInput.fromParseError(name, error)))

const decodeTokenRequest = (request: unknown) =>
  Schema.decodeUnknown(TokenRequest, { errors: "all" })(request).pipe(
    Effect.mapError((error) => InvalidInput.fromParseError("the token request", error))
  )

/** Drops the fields not given (`undefined`), which the strict schemas would refuse. */
const given = (fields: Record<string, unknown>) => Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined))

const decodeDefinition = (fields: Record<string, unknown>) =>
  Schema.decodeUnknown(ScheduleDefinition, { errors: "all", onExcessProperty: "error" })(given(fields)).pipe(
    Effect.mapError((error) => InvalidInput.fromParseError("the schedule", error))
  )

const decodePatch = (fields: Record<string, unknown>) =>
  Schema.decodeUnknown(SchedulePatch, { errors: "all", onExcessProperty: "error" })(given(fields)).pipe(
    Effect.mapError((error) => InvalidInput.fromParseError("the schedule's change", error))
  )

const refusedStream = (refusal: StreamRefused) =>
  refusal.reason === "full" ? new TooManyStreams({ limit: refusal.limit }) : new ShuttingDown()

/** The handlers of `RunstreamRpcs`, each a thin call of `Runs`. */
export const handlers = Effect.gen(function*() {
  const runs = yield* Runs
  const streams = yield* Streams
  const stats = yield* Stats
  const tokens = yield* ReadTokens
  const registry = yield* Task.TaskRegistry
  const schedules = yield* Schedules
  const tasks = Task.describeAll(registry, yield* QueueLimits)
  // A refusal for the budget is told to the protocol, which ends a request that keeps making them.
  const slot = Effect.mapError(streams.reserve, refusedStream).pipe(
    Effect.tapError((refusal) => refusal._tag === "TooManyStreams" ? CallSetup.overBudget : Effect.void)
  )
  const untilShutdown = Effect.zipRight(streams.shutdown, Effect.fail(new ShuttingDown()))
  // A call about one run names it on its span (`RpcServer.<tag>`), tracing on only.
  const onRun = Tracing.annotateRun((yield* Tracing.option) !== undefined)
  const runIdOf = (runId: string) => Effect.tap(parseRunId(runId), (id) => onRun(id))
  const namingRun = <A extends { readonly id: string; readonly task: string }, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.tap(effect, (run) => onRun(run.id, run.task))

  /**
   * A live stream: holds a slot of the budget while it runs, fails with
   * `ShuttingDown` when the server stops. Set up once it has its slot (what
   * follows is reading the run's log).
   */
  const live = <A, E, R>(stream: Stream.Stream<A, E, R>) =>
    Stream.unwrapScoped(Effect.as(Effect.zipRight(slot, CallSetup.done), stream)).pipe(Stream.interruptWhen(untilShutdown))

  return RunstreamRpcs.of({
    Start: ({ input, options, task }) =>
      decodeOptions(options).pipe(
        Effect.flatMap((options) => runs.startMany([{ task, input, options }])),
        Effect.map((created) => created[0]!),
        Effect.tap(({ run }) => onRun(run.id, run.task)),
        hideSqlError
      ),

    Get: ({ runId }) => namingRun(Effect.flatMap(runIdOf(runId), runs.get)).pipe(hideSqlError),

    List: ({ createdAfter, createdBefore, ...options }) =>
      Effect.zip(decodeTime("createdAfter", createdAfter), decodeTime("createdBefore", createdBefore)).pipe(
        Effect.flatMap(([after, before]) =>
          runs.list({
            ...options,
            ...(after === undefined ? {} : { createdAfter: after }),
            ...(before === undefined ? {} : { createdBefore: before })
          })
        ),
        hideSqlError
      ),

    Replay: ({ options, runId }) =>
      Effect.zip(runIdOf(runId), decodeOptions(options)).pipe(
        Effect.flatMap(([id, options]) => runs.replay(id, options)),
        // The replay's new run; the replayed one is its `replayOf`.
        Effect.tap(({ run }) => onRun(run.id, run.task)),
        hideSqlError
      ),

    Stats: () => stats.read.pipe(hideSqlError),

    Tasks: () => Effect.succeed(tasks),

    CreateToken: (request) =>
      decodeTokenRequest(request).pipe(
        Effect.flatMap((request) => mint(runs, tokens, request)),
        hideSqlError
      ),

    Cancel: ({ runId }) => namingRun(Effect.flatMap(runIdOf(runId), runs.cancel)).pipe(hideSqlError),

    Signal: ({ data, name, runId }) => Effect.flatMap(runIdOf(runId), (id) => runs.signal(id, name, data)).pipe(hideSqlError),

    CreateSchedule: (fields) => Effect.flatMap(decodeDefinition(fields), schedules.create).pipe(hideSqlError),
    GetSchedule: ({ name }) => schedules.get(name).pipe(hideSqlError),
    ListSchedules: (options) => schedules.list(options).pipe(hideSqlError),
    UpdateSchedule: ({ name, ...fields }) =>
      Effect.flatMap(decodePatch(fields), (patch) => schedules.update(name, patch)).pipe(hideSqlError),
    PauseSchedule: ({ name }) => schedules.pause(name).pipe(hideSqlError),
    ResumeSchedule: ({ name }) => schedules.resume(name).pipe(hideSqlError),
    DeleteSchedule: ({ force, name }) => schedules.remove(name, { force }).pipe(hideSqlError),

    ReadEvents: ({ after = 0, limit, runId }) =>
      Effect.flatMap(runIdOf(runId), (id) => runs.readEvents(id, { after, limit })).pipe(
        Effect.map((events) => ({ events, nextAfter: events.at(-1)?.seq ?? after })),
        hideSqlError
      ),

    Events: ({ after, runId }) =>
      runIdOf(runId).pipe(
        Effect.map((id) => live(runs.events(id, { after }))),
        Stream.unwrap,
        Stream.catchTag("SqlError", (error) => Stream.fromEffect(unavailable(error)))
      ),

    // The subscription's mailbox is the answer: the RPC server takes from it
    // in the call's own fiber (no stream stages; one held call is a few fibers).
    AllEvents: ({ runId, task }) =>
      Effect.gen(function*() {
        const id = yield* parseRunFilter(runId)
        yield* slot
        const events = yield* runs.subscribeAll<ShuttingDown>({ task, runId: id })
        yield* streams.onShutdown(() => events.unsafeDone(Exit.fail(new ShuttingDown())))
        yield* CallSetup.done
        return events
      }),

    AwaitCompletion: ({ runId, timeoutMs }) =>
      Effect.zip(runIdOf(runId), nonNegativeInteger("timeoutMs", timeoutMs)).pipe(
        Effect.flatMap(([id, timeoutMs]) =>
          Effect.zipRight(
            Effect.zipRight(slot, CallSetup.done),
            runs.awaitCompletion(id, { timeout: timeoutMs === undefined ? undefined : Duration.millis(timeoutMs) })
          ).pipe(Effect.raceFirst(untilShutdown), Effect.scoped)
        ),
        hideSqlError
      )
  })
})

/** The handlers as a layer, for serving the group over another protocol (`RpcServer.layer`). */
export const layerHandlers = RunstreamRpcs.toLayer(handlers)

/** The limits of one `POST /rpc` request; see `HttpProtocol`. */
export type Limits = HttpProtocol.Limits

/** `RUNSTREAM_MAX_BODY_BYTES` and `RUNSTREAM_RPC_MAX_CALLS` at their defaults. */
export const defaultLimits: Limits = {
  maxMessageBytes: httpDefaults.maxBodyBytes,
  maxCalls: httpDefaults.maxRpcCalls,
  streamSetups: httpDefaults.streamSetups
}

/**
 * The group as an HTTP app (NDJSON), for `POST /rpc`. Needs `Runs`, the
 * process's `Streams` budget, and the `Scope` its server fiber lives in.
 *
 * Fatal defects are disabled: a handler's defect then fails its own call. A
 * fatal defect is sent as a protocol `Defect`, which an `RpcClient` applies to
 * every call it has in flight, the other streams included.
 */
export const makeHttpApp = (
  limits: Limits
): Effect.Effect<HttpApp.Default<never, Scope.Scope>, never, Runs | Schedules | Streams | Stats | ReadTokens | Task.TaskRegistry | QueueLimits | Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* RunstreamRpcs.toHandlersContext(handlers)
    const { httpApp, protocol } = yield* HttpProtocol.make({
      ...limits,
      streamSetups: limits.streamSetups ?? httpDefaults.streamSetups,
      tags: new Set(RunstreamRpcs.requests.keys()),
      streamTags: new Set(["Events", "AllEvents", "AwaitCompletion"]),
      answeredBeforeRefusal: new Set(["Start", "Cancel", "Signal", "CreateSchedule", "UpdateSchedule", "DeleteSchedule", "PauseSchedule", "ResumeSchedule"])
    })
    yield* RpcServer.make(RunstreamRpcs, { disableFatalDefects: true }).pipe(
      Effect.provide(context),
      Effect.provideService(RpcServer.Protocol, protocol),
      Effect.interruptible,
      Effect.forkScoped
    )
    // Run before the server fiber is stopped (finalizers run last first): the
    // streams end with `ShuttingDown` while it can still send that to their clients.
    const streams = yield* Streams
    yield* Effect.addFinalizer(() => streams.close)
    return httpApp
  })

/** `makeHttpApp` with the default limits. */
export const httpApp = makeHttpApp(defaultLimits)
