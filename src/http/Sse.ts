/**
 * Server-sent events: the wire format and the response that carries them.
 * @since 0.1.0
 */
import { HttpServerResponse } from "@effect/platform"
import { Chunk, Duration, Schedule, Schema, Stream } from "effect"
import { RunEvent } from "../domain/RunEvent.ts"

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

const encodeEvent = Schema.encodeSync(RunEvent)

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
        data: JSON.stringify(encodeEvent(event))
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

/**
 * An event-stream response: the `retry:` hint, then the messages, with a
 * comment line every `keepAlive`. It ends when `messages` ends.
 */
export const response = <E>(
  messages: Stream.Stream<string, E>,
  options: { readonly keepAlive: Duration.DurationInput; readonly retry: Duration.DurationInput }
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(
    Stream.make(retry(options.retry)).pipe(
      Stream.concat(Stream.merge(
        messages,
        Stream.fromSchedule(Schedule.spaced(options.keepAlive)).pipe(Stream.as(comment("keep-alive"))),
        { haltStrategy: "left" }
      )),
      Stream.encodeText
    ),
    { contentType: "text/event-stream", headers }
  )
