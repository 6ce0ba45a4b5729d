/**
 * Events of a run's log. Every event has a per-run sequence number 1..n.
 * @since 0.1.0
 */
import { DateTime, Option, ParseResult, Predicate, Schema } from "effect"
import { isRunId, RunId } from "./Ids.ts"

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
  /**
   * The body suspended (`ctx.sleep`): the run gives its worker back and is
   * claimed again at `until` (`{ attempt, until, waitingFor }`).
   */
  waiting: "run.waiting",
  /** Over its task's rate limit: waits until `until` (written once, the first time). */
  throttled: "run.throttled",
  succeeded: "run.succeeded",
  failed: "run.failed",
  cancelled: "run.cancelled"
} as const

/**
 * The journal's event: a step of the run's body finished (`ctx.step`), with
 * `{ name, position, output }`. Written by the worker alone: a task's own
 * event of this type would be read back as a step's result.
 */
export const stepCompletedType = "step.completed"

/**
 * The journal's event for a durable sleep (`ctx.sleep`), with
 * `{ name, position, until }`: written when the body first calls it, read
 * back by every replay, which returns once `until` has passed.
 */
export const sleepStartedType = "sleep.started"

/**
 * The journal's events for a wait for a signal (`ctx.waitForSignal`), all
 * with `{ name, position }`: `signal.waiting` (and `until`, the deadline or
 * null) when the body first waits and the signal is not there,
 * `signal.received` (and `data`, as sent) when the body gets it,
 * `signal.timedOut` when the deadline passed first. A replay decides as the
 * journal says.
 */
export const signalWaitingType = "signal.waiting"
export const signalReceivedType = "signal.received"
export const signalTimedOutType = "signal.timedOut"

/**
 * The journal's event for a child run started by the body (`ctx.start`), with
 * `{ name, position, childId, task }`: a replay gets the same child back.
 */
export const childStartedType = "child.started"

/**
 * The journal's event for a child run's result, as the body awaited it
 * (`ctx.await`, `ctx.all`), with `{ name, childId, output }` or, for a child
 * that failed or was cancelled, `{ name, childId, error: { tag, message, status } }`.
 */
export const childCompletedType = "child.completed"

/** The event types the journal reads back, written by the worker alone. */
export const journalTypes: ReadonlyArray<string> = [
  stepCompletedType,
  sleepStartedType,
  signalWaitingType,
  signalReceivedType,
  signalTimedOutType,
  childStartedType,
  childCompletedType
] as const

/** After one of these, a run's log never grows again. */
export const isTerminalType = (type: string): boolean =>
  type === SystemEventType.succeeded || type === SystemEventType.failed || type === SystemEventType.cancelled

/** A task event's type: non-empty, short, and never in the reserved `run.` namespace. */
export const TaskEventType = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(100),
  // It becomes an SSE `event:` line: no line breaks or other control characters.
  Schema.pattern(/^[^\x00-\x1f\x7f]+$/, { message: () => "event types have no control characters" }),
  Schema.filter((t) => !t.startsWith("run.") || "event types starting with 'run.' are reserved"),
  Schema.filter((t) => !journalTypes.includes(t) || `'${t}' is written by the run's journal alone (ctx.step, ctx.sleep, ctx.waitForSignal, ctx.start, ctx.await)`)
)

/** A `RunEvent` as JSON: `RunEvent`'s own encoding (`at` an ISO 8601 date-time in UTC). */
export type RunEventJson = typeof RunEvent.Encoded

/** `input` as a `RunEvent`, or why it is no `RunEventJson`. */
const fromWire = (input: unknown): RunEvent | string => {
  if (!Predicate.isRecord(input)) return "a run event is an object"
  const { at, data, runId, seq, type } = input
  if (typeof runId !== "string" || !isRunId(runId)) return "runId: a lowercase UUID"
  if (typeof seq !== "number" || !Number.isSafeInteger(seq)) return "seq: an integer"
  if (typeof type !== "string") return "type: a string"
  const when = typeof at === "string" ? DateTime.make(at) : Option.none()
  if (Option.isNone(when)) return "at: an ISO 8601 date-time"
  return makeRunEvent(runId, seq, type, data, when.value.epochMillis)
}

/**
 * `RunEvent` on the wire of the RPC streams: the same JSON as `RunEvent`'s
 * schema encodes and decodes, by hand. Schema's generic walk (the class, a
 * struct, the id's pattern and brand, the date) cost 7-40 µs per event, which
 * made one page of 2,000 events a block of 15-150 ms on the server's event
 * loop and most of its CPU for a client following a long log over RPC; this
 * costs a few µs. A test checks that both agree on valid and invalid values
 * (one difference: a missing `data` is `null` here, as in every event the log holds).
 */
export const RunEventWire: Schema.Schema<RunEvent, RunEventJson> = Schema.transformOrFail(
  // The JSON side is checked by `fromWire` (a declaration, not a struct: no generic walk).
  Schema.declare((_: unknown): _ is RunEventJson => true, { identifier: "RunEventJson" }),
  Schema.declare((u: unknown): u is RunEvent => u instanceof RunEvent, { identifier: "RunEvent" }),
  {
    strict: true,
    decode: (input, _options, ast) => {
      const event = fromWire(input)
      return typeof event === "string" ? ParseResult.fail(new ParseResult.Type(ast, input, event)) : ParseResult.succeed(event)
    },
    encode: (event) =>
      ParseResult.succeed({
        runId: event.runId,
        seq: event.seq,
        type: event.type,
        data: event.data,
        at: new Date(event.at.epochMillis).toISOString()
      })
  }
)
