/**
 * Events of a run's log. Every event has a per-run sequence number 1..n.
 * @since 0.1.0
 */
import { DateTime, Schema } from "effect"
import { RunId } from "./Ids.ts"

/** @category schemas */
export class RunEvent extends Schema.Class<RunEvent>("RunEvent")({
  runId: RunId,
  seq: Schema.Int,
  type: Schema.String,
  data: Schema.Unknown,
  at: Schema.DateTimeUtc
}) {}

const runEventPrototype: object = RunEvent.prototype

/**
 * Builds a `RunEvent` from values already known to be valid (read from the log
 * or the bus), without the class constructor: it copies the fields twice and
 * merges defaults, which costs several times the rest of decoding an event
 * when a stream backfills thousands of them. The result is the same: the
 * class's prototype with the fields as own properties.
 */
/**
 * The largest seq a run's log can hold: seqs (and a run's `last_seq`) are
 * Postgres `integer`s. A cursor past it is refused as bad input; sent to the
 * database it would be an "out of range" error, a 5xx.
 */
export const maxSeq = 2_147_483_647

export const makeRunEvent = (runId: RunId, seq: number, type: string, data: unknown, at: number | Date): RunEvent => {
  const event = Object.create(runEventPrototype) as { -readonly [K in keyof RunEvent]: RunEvent[K] }
  event.runId = runId
  event.seq = seq
  event.type = type
  event.data = data ?? null
  event.at = DateTime.unsafeMake(at)
  return event as RunEvent
}

/** System event types. Task events may use any type not starting with `run.`. */
export const SystemEventType = {
  queued: "run.queued",
  started: "run.started",
  retrying: "run.retrying",
  released: "run.released",
  succeeded: "run.succeeded",
  failed: "run.failed",
  cancelled: "run.cancelled"
} as const

/** After one of these, a run's log never grows again. */
export const isTerminalType = (type: string): boolean =>
  type === SystemEventType.succeeded || type === SystemEventType.failed || type === SystemEventType.cancelled

/** A task event's type: non-empty, short, and never in the reserved `run.` namespace. */
export const TaskEventType = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(100),
  // It becomes an SSE `event:` line: no line breaks or other control characters.
  Schema.pattern(/^[^\x00-\x1f\x7f]+$/, { message: () => "event types have no control characters" }),
  Schema.filter((t) => !t.startsWith("run.") || "event types starting with 'run.' are reserved")
)
