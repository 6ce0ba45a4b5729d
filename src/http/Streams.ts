/**
 * The live streams of one server process, SSE connections and RPC streams
 * (`Events`, `AllEvents`, `AwaitCompletion`) alike: at most `maxStreams` open
 * at once, and all of them ended when the server shuts down (an open stream
 * would otherwise hold the HTTP server's close forever). Release this layer
 * before the HTTP server itself: `Server.layer` builds it after the server for
 * that reason.
 * @since 0.1.0
 */
import { Context, Deferred, Duration, Effect, Layer, Option, Ref, Schema, type Scope } from "effect"
import { ApiError } from "./ApiError.ts"

/** No slot was given: all are taken (`full`), or the server is shutting down (`closing`). */
export class StreamRefused extends Schema.TaggedError<StreamRefused>()("StreamRefused", {
  reason: Schema.Literal("full", "closing"),
  limit: Schema.Int
}) {}

export class Streams extends Context.Tag("runstream/http/Streams")<Streams, {
  /** Holds a stream slot until the scope closes; refused when none is free or the server is closing. */
  readonly reserve: Effect.Effect<void, StreamRefused, Scope.Scope>
  /** `reserve` for SSE: a refusal is a 503 (`too_many_streams`, `shutting_down`). */
  readonly acquire: Effect.Effect<void, ApiError, Scope.Scope>
  /** Completes when the server starts to shut down (streams end then). */
  readonly shutdown: Effect.Effect<void>
  /**
   * Calls `end` when the server starts to shut down (at once if it has),
   * unless the scope closes first: what `shutdown` does without a fiber
   * waiting on it for each stream.
   */
  readonly onShutdown: (end: () => void) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Ends every stream (`shutdown`, `onShutdown`), then waits for them to
   * close, at most 5 s. The layer does it when released; what must outlive
   * the streams' ends (the RPC server that sends them) calls it first.
   */
  readonly close: Effect.Effect<void>
  /** Open connections now. */
  readonly active: Effect.Effect<number>
}>() {}

const full = new ApiError({ status: 503, code: "too_many_streams", message: "this server has reached its limit of open event streams; try again later" })
const closing = new ApiError({ status: 503, code: "shutting_down", message: "the server is shutting down" })

/** How long a shutdown waits for ended streams to flush before it goes on. */
const drainTimeout = Duration.seconds(5)

export const make = (options: { readonly maxStreams: number }) =>
  Effect.gen(function*() {
    const active = yield* Ref.make(0)
    const shutdown = yield* Deferred.make<void>()
    const drained = yield* Deferred.make<void>()
    const enders = new Set<() => void>()

    const release = Effect.gen(function*() {
      const left = yield* Ref.updateAndGet(active, (n) => n - 1)
      if (left === 0 && (yield* Deferred.isDone(shutdown))) yield* Deferred.succeed(drained, undefined)
    })

    const refused = (reason: "full" | "closing") => new StreamRefused({ reason, limit: options.maxStreams })
    const reserve = Effect.acquireRelease(
      Effect.flatMap(Deferred.isDone(shutdown), (isClosing) =>
        isClosing
          ? Effect.fail(refused("closing"))
          : Effect.flatMap(
            Ref.modify(active, (n) => n < options.maxStreams ? [true, n + 1] : [false, n]),
            (taken) => taken ? Effect.void : Effect.fail(refused("full"))
          )),
      () => release
    )
    const acquire = Effect.mapError(reserve, (refusal) => refusal.reason === "full" ? full : closing)

    const close = Effect.gen(function*() {
      if (yield* Deferred.succeed(shutdown, undefined)) {
        for (const end of enders) end()
        enders.clear()
      }
      if ((yield* Ref.get(active)) === 0) return
      const done = yield* Deferred.await(drained).pipe(Effect.timeoutOption(drainTimeout))
      if (Option.isNone(done)) yield* Effect.logWarning(`${yield* Ref.get(active)} event stream(s) still open at shutdown`)
    })
    yield* Effect.addFinalizer(() => close)

    const onShutdown = (end: () => void) =>
      Effect.flatMap(Deferred.isDone(shutdown), (isClosing) => {
        if (isClosing) return Effect.sync(end)
        enders.add(end)
        return Effect.addFinalizer(() => Effect.sync(() => enders.delete(end)))
      })

    return Streams.of({
      reserve,
      acquire,
      shutdown: Deferred.await(shutdown),
      onShutdown,
      close,
      active: Ref.get(active)
    })
  })

/** @category layers */
export const layer = (options: { readonly maxStreams: number }) => Layer.scoped(Streams, make(options))
