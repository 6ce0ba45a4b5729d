/**
 * Server-sent events: the wire format and the response that carries them.
 * @since 0.1.0
 */
import { HttpServerResponse } from "@effect/platform"
import { Cause, Chunk, Clock, DateTime, Duration, Effect, Option, Queue, Stream } from "effect"
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

/**
 * Run events as SSE text: each chunk of events becomes one string, so a batch
 * of events costs one pass down the response stream and one socket write, not
 * one per event. `withIds` sets `id:` to the seq (for `Last-Event-ID`).
 */
export const runEvents = <E, R>(events: Stream.Stream<RunEvent, E, R>, options: { readonly withIds: boolean }) =>
  Stream.mapChunks(events, (chunk) => {
    if (Chunk.isEmpty(chunk)) return Chunk.empty<string>()
    let text = ""
    for (const event of chunk) {
      text += encode({
        id: options.withIds ? String(event.seq) : undefined,
        event: event.type,
        data: eventJson(event)
      })
    }
    return Chunk.of(text)
  })

/** A comment: ignored by clients, but it keeps proxies from closing an idle connection. */
export const comment = (text: string): string => `: ${singleLine(text)}\n\n`

/** Tells the client how long to wait before it reconnects. */
export const retry = (delay: Duration.DurationInput): string => `retry: ${Math.round(Duration.toMillis(delay))}\n\n`

/** The headers of every event stream: no caching, no buffering by proxies (nginx honours `X-Accel-Buffering`). */
export const headers = {
  "cache-control": "no-cache",
  "x-accel-buffering": "no"
} as const

/** What the response body's queue carries: text to send, or the end of the body. */
type Item = string | { readonly end: true }

const end: Item = { end: true }

export interface BodyOptions {
  readonly keepAlive: Duration.DurationInput
  readonly retry: Duration.DurationInput
  /** Ends the body when it completes (the server is shutting down), whatever is left unsent. */
  readonly until: Effect.Effect<void>
  /** Names the stream in the warning logged when `messages` fails (the body then ends). */
  readonly name: string
}

/**
 * The body of an event stream: the `retry:` hint, then the messages, and a
 * comment whenever nothing was sent for `keepAlive`. A failure of `messages`
 * is logged and ends the body: after the headers, ending is all an SSE
 * response can do, and the client resumes from its last id.
 *
 * Hand-rolled: one fiber drains the messages into a small queue, another adds
 * the comments, a third waits for `until`; the response pulls from the queue
 * and sends what waits there as one write. `Stream.merge` with a schedule and
 * `Stream.interruptWhen` measured about 150 µs of CPU each per message, where
 * the rest of a delivery costs about 50 µs: with a thousand followers a server
 * spent its core on them.
 */
export const body = <E>(messages: Stream.Stream<string, E>, options: BodyOptions): Stream.Stream<Uint8Array> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    // Bounded: a client that reads slowly holds up the messages, not memory.
    const queue = yield* Queue.bounded<Item>(16)
    let ended = false
    const finish = Effect.sync(() => {
      ended = true
      // Wakes a waiting pull; when the queue is full, the next pull sees `ended`.
      queue.unsafeOffer(end)
    })
    yield* Queue.offer(queue, retry(options.retry))
    yield* Stream.runForEach(messages, (text) => Queue.offer(queue, text)).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning(`${options.name} ended early`, cause)
      ),
      Effect.zipRight(Queue.offer(queue, end)),
      Effect.forkScoped
    )
    yield* Effect.zipRight(options.until, finish).pipe(Effect.forkScoped)
    const keepAliveMs = Duration.toMillis(options.keepAlive)
    let lastSent = yield* Clock.currentTimeMillis
    yield* Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const idle = now - lastSent
      return idle >= keepAliveMs
        ? Effect.zipRight(Queue.offer(queue, comment("keep-alive")), Effect.sleep(keepAliveMs))
        : Effect.sleep(keepAliveMs - idle)
    }).pipe(Effect.forever, Effect.forkScoped)

    const pull: Effect.Effect<Chunk.Chunk<Uint8Array>, Option.Option<never>> = Effect.suspend(() => {
      if (ended) return Effect.fail(Option.none())
      return Effect.zipWith(Queue.takeBetween(queue, 1, 64), Clock.currentTimeMillis, (items, now) => {
        let text = ""
        for (const item of items) {
          if (typeof item !== "string") {
            ended = true
            break
          }
          text += item
        }
        lastSent = now
        return text.length === 0 ? Chunk.empty() : Chunk.of(Buffer.from(text, "utf8"))
      })
    })
    return Stream.repeatEffectChunkOption(pull)
  }))

/** An event-stream response carrying `body(messages, options)`. */
export const response = <E>(messages: Stream.Stream<string, E>, options: BodyOptions): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(body(messages, options), { contentType: "text/event-stream", headers })
