/**
 * A small server-sent-events reader for the tests: frames as the spec parses
 * them (fields `id`, `event`, `data`, `retry`, and comment lines).
 */
import { Chunk, Effect, Option, Stream } from "effect"

export interface Frame {
  readonly id?: string
  readonly event?: string
  readonly data?: string
  readonly retry?: number
  readonly comments: ReadonlyArray<string>
}

const empty: Frame = { comments: [] }

const isEmpty = (frame: Frame) =>
  frame.id === undefined && frame.event === undefined && frame.data === undefined && frame.retry === undefined &&
  frame.comments.length === 0

const addLine = (frame: Frame, line: string): Frame => {
  if (line.startsWith(":")) return { ...frame, comments: [...frame.comments, line.slice(1).trim()] }
  const colon = line.indexOf(":")
  const field = colon === -1 ? line : line.slice(0, colon)
  const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "")
  switch (field) {
    case "id":
      return { ...frame, id: value }
    case "event":
      return { ...frame, event: value }
    case "data":
      return { ...frame, data: frame.data === undefined ? value : `${frame.data}\n${value}` }
    case "retry":
      return { ...frame, retry: Number(value) }
    default:
      return frame
  }
}

/** The frames of an event-stream body, in order; ends when the body ends. */
export const frames = (body: ReadableStream<Uint8Array>): Stream.Stream<Frame, Error> =>
  Stream.fromReadableStream(() => body, (cause) => new Error(`reading the event stream failed: ${String(cause)}`)).pipe(
    Stream.decodeText(),
    Stream.splitLines,
    Stream.mapAccum(empty, (frame, line): [Frame, Option.Option<Frame>] =>
      line === "" ? [empty, isEmpty(frame) ? Option.none() : Option.some(frame)] : [addLine(frame, line), Option.none()]
    ),
    Stream.filterMap((frame) => frame)
  )

/** Event frames only (no comments, no bare `retry:`), with their data parsed. */
export const events = (body: ReadableStream<Uint8Array>) =>
  frames(body).pipe(
    Stream.filter((frame) => frame.data !== undefined),
    Stream.map((frame) => ({ id: frame.id, event: frame.event, data: JSON.parse(frame.data!) as EventJson }))
  )

export interface EventJson {
  readonly runId: string
  readonly seq: number
  readonly type: string
  readonly data: unknown
  readonly at: string
}

/** Collects a whole stream's frames (for streams that end by themselves). */
export const collect = <A, E>(stream: Stream.Stream<A, E>) => Effect.map(Stream.runCollect(stream), Chunk.toReadonlyArray)
