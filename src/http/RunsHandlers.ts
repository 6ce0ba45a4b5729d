/**
 * The `runs` group: start, list, get, cancel, signal, and a run's events as SSE or as
 * JSON pages.
 * @since 0.1.0
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { type FeedBatch, RunFollowers } from "../RunFollowers.ts"
import { Runs } from "../Runs.ts"
import { SignalSent } from "../domain/Signal.ts"
import { Api, ReplayBody, SignalBody, StartedResponse, StartRunBody, StartRunResponse } from "./Api.ts"
import { badRequest, internal, mapCore } from "./ApiError.ts"
import type { HttpOptions } from "./HttpConfig.ts"
import * as RequestBody from "./RequestBody.ts"
import * as Sse from "./Sse.ts"
import { Streams } from "./Streams.ts"
import * as Tracing from "../tracing/Tracing.ts"

/** JSON when the client asks for it and not for an event stream. */
const wantsJson = (accept: string | undefined) =>
  accept !== undefined && accept.includes("application/json") && !accept.includes("text/event-stream")

/**
 * Bytes of a run's stream a client may leave unread (beyond the socket's own
 * buffers) before it leaves the run's live feed and is served from the log.
 */
const sseBufferBytes = 256 * 1024

/** The replay's body: optional, so a request without one (no type, no length) means no overrides. */
const replayBody = (limit: number) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const length = request.headers["content-length"]
    const empty = request.headers["content-type"] === undefined && (length === undefined || length === "0") &&
      request.headers["transfer-encoding"] === undefined
    return empty ? Effect.succeed<typeof ReplayBody.Type>({}) : RequestBody.json(ReplayBody, limit)
  })

/** @category layers */
export const layer = (options: HttpOptions) =>
  HttpApiBuilder.group(Api, "runs", (handlers) =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const followers = yield* RunFollowers
      const streams = yield* Streams
      // The request's span names the run it concerns (tracing on only).
      const onRun = Tracing.annotateRun((yield* Tracing.option) !== undefined)
      const withRun = <A extends { readonly run: { readonly id: string; readonly task: string } }, E, R>(
        effect: Effect.Effect<A, E, R>
      ) => Effect.tap(effect, ({ run }) => onRun(run.id, run.task))
      // Each batch of a run's shared feed is encoded once, and the same bytes
      // are written to every client following the run.
      const encoded = new WeakMap<FeedBatch, Uint8Array>()
      const frames = (batch: FeedBatch) => {
        let bytes = encoded.get(batch)
        if (bytes === undefined) {
          bytes = Buffer.from(Sse.runEventsText(batch.events, { withIds: true }), "utf8")
          encoded.set(batch, bytes)
        }
        return bytes
      }
      const respond = (status: number, body: typeof StartRunResponse.Type) =>
        HttpServerResponse.schemaJson(StartRunResponse)(body, { status }).pipe(Effect.mapError(() => internal))

      return handlers
        .handleRaw("start", () =>
          Effect.gen(function*() {
            const { input, task, ...startOptions } = yield* RequestBody.json(StartRunBody, options.maxBodyBytes)
            const [started] = yield* mapCore(runs.startMany([{ task, input, options: startOptions }]))
            yield* onRun(started!.run.id, started!.run.task)
            return yield* respond(
              started!.created ? 201 : 200,
              started!.folded === true ? { run: started!.run, folded: true } : { run: started!.run }
            )
          }))
        .handleRaw("replay", ({ path }) =>
          Effect.gen(function*() {
            const { options: overrides } = yield* replayBody(options.maxBodyBytes)
            yield* onRun(path.id)
            const started = yield* mapCore(runs.replay(path.id, overrides))
            // The replay's new run; the replayed one is its `replayOf`.
            yield* onRun(started.run.id, started.run.task)
            return yield* HttpServerResponse.schemaJson(StartedResponse)(started, { status: started.created ? 201 : 200 }).pipe(
              Effect.mapError(() => internal)
            )
          }))
        .handleRaw("signal", ({ path }) =>
          Effect.gen(function*() {
            yield* onRun(path.id)
            const { data } = yield* RequestBody.json(SignalBody, options.maxBodyBytes)
            const sent = yield* mapCore(runs.signal(path.id, path.name, data ?? null))
            return yield* HttpServerResponse.schemaJson(SignalSent)(sent, { status: sent.created ? 202 : 200 }).pipe(
              Effect.mapError(() => internal)
            )
          }))
        .handle("list", ({ urlParams: { token: _, ...filter } }) => mapCore(runs.list(filter)))
        .handle("get", ({ path }) => withRun(mapCore(Effect.map(runs.get(path.id), (run) => ({ run })))))
        .handle("cancel", ({ path }) =>
          Effect.zipRight(onRun(path.id), withRun(mapCore(Effect.map(runs.cancel(path.id), (run) => ({ run }))))))
        .handle("events", ({ headers, path, request, urlParams }) =>
          Effect.gen(function*() {
            // A reconnecting browser sends Last-Event-ID with its original URL: the header wins.
            const after = headers["last-event-id"] ?? urlParams.after ?? 0
            yield* onRun(path.id)
            if (wantsJson(request.headers["accept"])) {
              yield* mapCore(runs.get(path.id))
              const events = yield* mapCore(runs.readEvents(path.id, { after, limit: urlParams.limit }))
              return { events, nextAfter: events.at(-1)?.seq ?? after }
            }
            const run = yield* mapCore(followers.position(path.id, after))
            if (run.finished && after >= run.lastSeq) {
              return HttpServerResponse.empty({ status: 204 })
            }
            if (after > run.lastSeq) {
              return yield* badRequest("invalid_input", `after (${after}) is past the run's last event (${run.lastSeq})`)
            }
            yield* streams.acquire
            // A failure ends the stream (logged); the client resumes from its last id.
            return yield* Sse.responseFrom((sink) =>
              followers.follow(path.id, { after, position: run }, {
                offer: (batch) => sink.offer(frames(batch)),
                write: (batch) => sink.write(frames(batch))
              }), {
              ...options,
              until: streams.shutdown,
              name: `event stream of ${path.id}`,
              bufferBytes: sseBufferBytes
            })
          }))
    }))
