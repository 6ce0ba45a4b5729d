/**
 * Server-sent events: the wire format and the response that carries them.
 * @since 0.1.0
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Chunk, Clock, DateTime, Duration, Effect, Mailbox, Option, type Scope, Stream } from "effect"
import { ServerResponse } from "node:http"
import { Readable } from "node:stream"
import type { RunEvent } from "../domain/RunEvent.ts"

/** One message. `id` and `event` are single-line; `data` may span lines. */
export interface Message {
  readonly id?: string | undefined
  readonly event?: string | undefined
  readonly data: string
}

/** A line break would end the field early and let the rest pose as other fields. */
const singleLine = (text: string) => text.replace(/[\r\n]+/g, " ")

/** A message as it is sent. */
export const encode = (message: Message): string => {
  let out = ""
  if (message.id !== undefined) out += `id: ${singleLine(message.id)}\n`
  if (message.event !== undefined) out += `event: ${singleLine(message.event)}\n`
  for (const line of message.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`
  return `${out}\n`
}

/**
 * The event as `Schema.encode(RunEvent)` writes it, by hand: the schema's
 * encoder costs more than the rest of a delivery's encoding.
 */
const eventJson = (event: RunEvent): string =>
  JSON.stringify({ runId: event.runId, seq: event.seq, type: event.type, data: event.data, at: DateTime.formatIso(event.at) })

/** Run events as SSE text, one message each. `withIds` sets `id:` to the seq (for `Last-Event-ID`). */
export const runEventsText = (events: Iterable<RunEvent>, options: { readonly withIds: boolean }): string => {
  let text = ""
  for (const event of events) {
    text += encode({
      id: options.withIds ? String(event.seq) : undefined,
      event: event.type,
      data: eventJson(event)
    })
  }
  return text
}

/**
 * Run events as SSE text: each chunk of events becomes one string, so a batch
 * of events costs one pass down the response stream and one socket write, not
 * one per event.
 */
export const runEvents = <E, R>(events: Stream.Stream<RunEvent, E, R>, options: { readonly withIds: boolean }) =>
  Stream.mapChunks(events, (chunk) => Chunk.isEmpty(chunk) ? Chunk.empty<string>() : Chunk.of(runEventsText(chunk, options)))

/** A comment: ignored by clients, but it keeps proxies from closing an idle connection. */
export const comment = (text: string): string => `: ${singleLine(text)}\n\n`

/** Tells the client how long to wait before it reconnects. */
export const retry = (delay: Duration.DurationInput): string => `retry: ${Math.round(Duration.toMillis(delay))}\n\n`

/** The headers of every event stream: no caching, no buffering by proxies (nginx honours `X-Accel-Buffering`). */
export const headers = {
  "cache-control": "no-cache",
  "x-accel-buffering": "no"
} as const

/** What the response body's mailbox carries: text or bytes to send, or the end of the body. */
type Item = string | Uint8Array | { readonly end: true }

const end: Item = { end: true }

/** How a body's producer hands it messages. */
export interface BodySink {
  /** Without waiting: `false` when the body has no room (its client reads slowly). */
  readonly offer: (message: string | Uint8Array) => boolean
  /** Waits for room. */
  readonly write: (message: string | Uint8Array) => Effect.Effect<void>
}

export interface BodyOptions {
  readonly keepAlive: Duration.DurationInput
  readonly retry: Duration.DurationInput
  /** Ends the body when it completes (the server is shutting down), whatever is left unsent. */
  readonly until: Effect.Effect<void>
  /** Names the stream in the warning logged when `messages` fails (the body then ends). */
  readonly name: string
}

/** Messages a body holds unsent: a client that reads slowly holds up its producer (or is told so), not memory. */
const bodyCapacity = 16

const toBytes = (item: string | Uint8Array): Uint8Array => typeof item === "string" ? Buffer.from(item, "utf8") : item

/**
 * The body of an event stream whose messages `produce` hands to its sink: the
 * `retry:` hint, then the messages, and a comment whenever nothing was sent
 * for `keepAlive`. A failure of `produce` is logged and ends the body: after
 * the headers, ending is all an SSE response can do, and the client resumes
 * from its last id.
 *
 * Hand-rolled: the producer runs in one fiber and offers to a small mailbox,
 * another fiber adds the comments, a third waits for `until`; the response
 * pulls from the mailbox and sends what waits there as one write (the bytes a
 * producer offered, as they are, when they are alone: a frame shared by many
 * responses is never copied). `Stream.merge` with a schedule and
 * `Stream.interruptWhen` measured about 150 µs of CPU each per message; a
 * producer that offers straight to the mailbox (a followed run's shared
 * reader) costs the response one wake-up per message.
 */
export const bodyFrom = <E>(produce: (sink: BodySink) => Effect.Effect<void, E>, options: BodyOptions): Stream.Stream<Uint8Array> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const mailbox = yield* Mailbox.make<Item>(bodyCapacity)
    let ended = false
    const finish = Effect.sync(() => {
      ended = true
      // Wakes a waiting pull; when the mailbox is full, the next pull sees `ended`.
      mailbox.unsafeOffer(end)
    })
    const sink: BodySink = {
      offer: (message) => mailbox.unsafeOffer(message),
      write: (message) => Effect.asVoid(mailbox.offer(message))
    }
    yield* mailbox.offer(retry(options.retry))
    yield* Effect.suspend(() => produce(sink)).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning(`${options.name} ended early`, cause)
      ),
      Effect.zipRight(mailbox.offer(end)),
      Effect.forkScoped
    )
    yield* Effect.zipRight(options.until, finish).pipe(Effect.forkScoped)
    const keepAliveMs = Duration.toMillis(options.keepAlive)
    let lastSent = yield* Clock.currentTimeMillis
    yield* Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const idle = now - lastSent
      return idle >= keepAliveMs
        ? Effect.zipRight(mailbox.offer(comment("keep-alive")), Effect.sleep(keepAliveMs))
        : Effect.sleep(keepAliveMs - idle)
    }).pipe(Effect.forever, Effect.forkScoped)

    const pull: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<never>> = Effect.suspend(() => {
      if (ended) return Effect.fail(Option.none())
      return Effect.zipWith(mailbox.takeAll, Clock.currentTimeMillis, ([items], now) => {
        const parts: Array<Uint8Array> = []
        for (const item of items) {
          if (typeof item === "object" && "end" in item) {
            ended = true
            break
          }
          parts.push(toBytes(item))
        }
        lastSent = now
        return parts.length === 0 ? Chunk.empty() : Chunk.of(parts.length === 1 ? parts[0]! : Buffer.concat(parts))
      })
    })
    return Stream.repeatEffectChunkOption(pull)
  }))

/** The body of an event stream carrying `messages`: see `bodyFrom`. */
export const body = <E>(messages: Stream.Stream<string, E>, options: BodyOptions): Stream.Stream<Uint8Array> =>
  bodyFrom((sink) => Stream.runForEach(messages, sink.write), options)

/**
 * An event-stream response whose messages `produce` hands to its sink, written
 * to the socket as they are offered: the `retry:` hint, the messages, a
 * comment whenever nothing was sent for `keepAlive`; it ends when `produce`
 * completes, fails (logged), or `until` completes. Its fibers live in the
 * request's scope, which lasts as long as the response (a client that leaves
 * ends the response, closing the scope).
 *
 * For streams that many clients follow at once (a run's events): the body is
 * a Node `Readable` that the server pipes into the socket, so an offered
 * message costs a push and a socket write, with no fiber woken and nothing
 * allocated per client; a stream of `body` costs several times that in the
 * Effect runtime and its garbage. The sink's `offer` refuses a message when
 * more than `bufferBytes` wait unsent (the client reads slowly); `write` then
 * waits for room.
 */
export const responseFrom = <E>(
  produce: (sink: BodySink) => Effect.Effect<void, E>,
  options: BodyOptions & { readonly bufferBytes: number }
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, Scope.Scope> =>
  Effect.gen(function*() {
    // The Node response the server pipes the body into, written to directly
    // once that pipe has begun and the body holds nothing unsent: a delivery
    // is then one `res.write` (Node frames the chunk), without the body's
    // push, its `data` event and the pipe's write, and the read scheduled
    // after each push. Bytes go through the body until the pipe starts (the
    // head is not written before), and whenever it holds bytes (the pipe is
    // paused for a slow client), so that they stay in order.
    const request = yield* Effect.serviceOption(HttpServerRequest.HttpServerRequest)
    const response = Option.getOrUndefined(Option.filter(
      Option.map(request, (request): unknown => NodeHttpServerRequest.toServerResponse(request)),
      (res): res is ServerResponse => res instanceof ServerResponse
    ))
    let piped = false
    // Set by the server's reads or the response's drain: there is room again.
    let room: (() => void) | undefined
    const wakeRoom = () => {
      const wake = room
      room = undefined
      wake?.()
    }
    const readable = new Readable({
      highWaterMark: options.bufferBytes,
      read() {
        piped = true
        wakeRoom()
      }
    })
    let ended = false
    // Wall-clock milliseconds (set by synchronous pushes, not through `Clock`).
    let lastSent = Date.now()
    const direct = () => piped && response !== undefined && readable.readableLength === 0 && response.writable
    /** Bytes not yet taken by the socket: in the body, then in the response and its socket. */
    const unsent = () => readable.readableLength + (piped && response !== undefined ? response.writableLength : 0)
    const push = (message: string | Uint8Array): void => {
      if (ended) return
      lastSent = Date.now()
      const bytes = typeof message === "string" ? Buffer.from(message, "utf8") : message
      if (direct()) response!.write(bytes)
      else readable.push(bytes)
    }
    const end = Effect.sync(() => {
      if (ended) return
      ended = true
      readable.push(null)
    })
    const waitForRoom = Effect.async<void>((resume) => {
      room = () => resume(Effect.void)
      response?.once("drain", wakeRoom)
      return Effect.sync(() => {
        room = undefined
        response?.off("drain", wakeRoom)
      })
    })
    // A client that left: nothing more will be sent, so nothing is refused either.
    readable.once("close", () => {
      ended = true
      wakeRoom()
    })
    const sink: BodySink = {
      offer: (message) => ended || (unsent() < options.bufferBytes && (push(message), true)),
      write: (message) =>
        Effect.suspend(() => {
          push(message)
          return ended || unsent() < options.bufferBytes ? Effect.void : waitForRoom
        })
    }
    push(retry(options.retry))
    yield* Effect.suspend(() => produce(sink)).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning(`${options.name} ended early`, cause)
      ),
      Effect.zipRight(end),
      Effect.forkScoped
    )
    yield* Effect.zipRight(options.until, end).pipe(Effect.forkScoped)
    const keepAliveMs = Duration.toMillis(options.keepAlive)
    yield* Effect.suspend(() => {
      const idle = Date.now() - lastSent
      return idle >= keepAliveMs
        ? Effect.zipRight(Effect.sync(() => push(comment("keep-alive"))), Effect.sleep(keepAliveMs))
        : Effect.sleep(keepAliveMs - idle)
    }).pipe(Effect.forever, Effect.forkScoped)
    // A client that left: the server destroys the body; the producer stops with the request's scope.
    yield* Effect.addFinalizer(() => Effect.sync(() => readable.destroy()))
    return HttpServerResponse.raw(readable, { contentType: "text/event-stream", headers })
  })

/** An event-stream response carrying `body`. */
export const responseOf = (body: Stream.Stream<Uint8Array>): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(body, { contentType: "text/event-stream", headers })

/** An event-stream response carrying `body(messages, options)`. */
export const response = <E>(messages: Stream.Stream<string, E>, options: BodyOptions): HttpServerResponse.HttpServerResponse =>
  responseOf(body(messages, options))
