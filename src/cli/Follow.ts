/**
 * Following a run's events to its end (`runs tail`, `runs start --follow`),
 * and the debug stream of every run's events (`events`). A dropped connection
 * (or a server that restarts) is resumed after the last seq printed, so each
 * event is printed once and in order; the run's end decides the exit code.
 * @since 0.1.0
 */
import { DateTime, Effect, Option, Predicate, Schedule, Schema, Stream } from "effect"
import { isTerminalType, RunEvent, SystemEventType } from "../domain/RunEvent.ts"
import { RunstreamClient } from "../rpc/RunstreamClient.ts"
import { RunNotSucceeded } from "./CliError.ts"
import { dim, Output, statusAnsi } from "./Output.ts"

/** The stream ended before the run's terminal event (a proxy closed it cleanly): resume. */
export class EndedEarly extends Schema.TaggedError<EndedEarly>()("EndedEarly", {}) {
  override get message() {
    return "the server kept ending the event stream early"
  }
}

/** Errors after which asking again may work: the connection, the server's database, its stream budget, its restart. */
const isTransient = (error: unknown) =>
  Predicate.isTagged(error, "RpcClientError") || Predicate.isTagged(error, "Unavailable") ||
  Predicate.isTagged(error, "TooManyStreams") || Predicate.isTagged(error, "ShuttingDown") ||
  Predicate.isTagged(error, "EndedEarly")

/**
 * Reconnects at once, then backs off to every 2 seconds, about 30 seconds in
 * all; an event that comes through starts the count again (`Stream.retry`).
 */
const reconnect = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("2 seconds")),
  Schedule.intersect(Schedule.recurs(18)),
  Schedule.whileInput(isTransient)
)

const encodeEvent = Schema.encodeSync(RunEvent)

const time = (event: RunEvent) => DateTime.formatIso(event.at).slice(11, 23)

/** One line per event: seq, time, type and data; with the run's id when the stream mixes runs. */
export const printEvent = (options: { readonly json: boolean; readonly withRun: boolean }) => {
  return (event: RunEvent) =>
    Effect.flatMap(Output, (output) => {
      if (options.json) return output.json(encodeEvent(event))
      const data = event.data === null || event.data === undefined ? "" : JSON.stringify(event.data)
      return output.line([
        ...(options.withRun ? [output.paint(event.runId, dim)] : []),
        String(event.seq).padStart(4),
        output.paint(time(event), dim),
        output.paint(event.type, statusAnsi(event.type)),
        data
      ].join("  "))
    })
}

/** The reason in a failure event's data (`{error: {message}}`), when it has one. */
const reasonOf = (event: RunEvent): string | undefined => {
  const error = Predicate.hasProperty(event.data, "error") ? event.data.error : undefined
  return Predicate.hasProperty(error, "message") && typeof error.message === "string" ? error.message : undefined
}

/**
 * Prints the run's events after `after` until its terminal event; succeeds
 * when the run succeeded, fails with `RunNotSucceeded` otherwise.
 */
export const tail = (runId: string, options: { readonly json: boolean; readonly after?: number }) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const print = printEvent({ json: options.json, withRun: false })
    let last = options.after ?? 0
    let terminal: RunEvent | undefined
    yield* Stream.suspend(() => client.events(runId, { after: last })).pipe(
      Stream.tap((event) => {
        last = event.seq
        if (isTerminalType(event.type)) {
          terminal = event
        }
        return print(event)
      }),
      Stream.concat(Stream.suspend(() => terminal === undefined ? Stream.fail(new EndedEarly()) : Stream.empty)),
      Stream.retry(reconnect),
      Stream.runDrain
    )
    const end = terminal!
    if (end.type === SystemEventType.failed) {
      return yield* new RunNotSucceeded({ runId, status: "failed", reason: reasonOf(end) })
    }
    if (end.type === SystemEventType.cancelled) return yield* new RunNotSucceeded({ runId, status: "cancelled" })
  })

/**
 * Prints live events of every run (or one task's, or one run's) until
 * interrupted. Not replayed: after a reconnection, what happened while
 * disconnected is not shown.
 */
export const debugStream = (filter: { readonly task: Option.Option<string>; readonly run: Option.Option<string> }, json: boolean) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const print = printEvent({ json, withRun: true })
    yield* Stream.suspend(() =>
      client.allEvents({ task: Option.getOrUndefined(filter.task), runId: Option.getOrUndefined(filter.run) })
    ).pipe(
      Stream.tap(print),
      Stream.concat(Stream.fail(new EndedEarly())),
      Stream.retry(reconnect),
      Stream.runDrain
    )
  })
