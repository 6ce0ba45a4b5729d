/**
 * The bus on Postgres LISTEN/NOTIFY, across the processes of one database.
 * The relay's drain statement NOTIFYs what it deletes, so the notifications
 * commit with the delete, in one round trip; every program's listener
 * (`PgListener`) fans them out to its own subscribers.
 *
 * Limits: a payload stays under 8,000 bytes (events are packed into as few as
 * fit; an event too large travels as a reference that receivers read from the
 * log), and a NOTIFY takes a database-wide lock at commit (one per drained
 * batch here).
 * @since 0.1.0
 */
import { SqlClient, type Statement } from "@effect/sql"
import { DateTime, Effect, Layer, Queue } from "effect"
import type { RunId } from "../domain/Ids.ts"
import { makeRunEvent } from "../domain/RunEvent.ts"
import { NotifyChannel, PgListener } from "../PgListener.ts"
import { type BusEvent, EventBus } from "./EventBus.ts"
import * as Fanout from "./Fanout.ts"

/**
 * NOTIFY payloads must stay under 8000 bytes. Events are packed by SQL, which
 * cannot pack greedily: an event starts a new payload when the bytes before it
 * cross a multiple of this size, so payloads stay under two of these, and an
 * event larger than one travels as a reference.
 */
const chunkBytes = 3800

/**
 * The wire format, written once: a payload is a JSON array of events
 * `{r: run, s: seq, k: task, t: type, a: epoch ms, d: data}`, or references
 * `{r, s, k, big: 1}` to events too large for a payload.
 */
type Wire =
  | { readonly r: string; readonly s: number; readonly k: string; readonly t: string; readonly a: number; readonly d: unknown }
  | { readonly r: string; readonly s: number; readonly k: string; readonly big: 1 }

/**
 * A query that NOTIFYs the events of the relation `events` (run_id, task,
 * seq, type, data, at), in (run, seq) order, packed into payloads of the
 * `Wire` format. Its rows are the payloads sent.
 */
export const notifyEvents = (sql: SqlClient.SqlClient, events: Statement.Fragment): Statement.Fragment =>
  sql`
  SELECT pg_notify(${NotifyChannel.events}, payload) FROM (
    SELECT '[' || string_agg(wire, ',' ORDER BY n) || ']' AS payload, part
    FROM (
      SELECT wire, n, (sum(octet_length(wire) + 1) OVER (ORDER BY n) - octet_length(wire) - 1) / ${chunkBytes} AS part
      FROM (
        SELECT row_number() OVER (ORDER BY run_id, seq) AS n,
          CASE WHEN octet_length(wire) <= ${chunkBytes} THEN wire
            ELSE json_build_object('r', run_id, 's', seq, 'k', task, 'big', 1)::text END AS wire
        FROM (
          SELECT run_id, seq, task, json_build_object('r', run_id, 's', seq, 'k', task, 't', type,
            'a', floor(extract(epoch FROM at) * 1000), 'd', data)::text AS wire
          FROM ${events}
        ) events
      ) sized
    ) numbered
    GROUP BY part ORDER BY part
  ) payloads`

/**
 * The statement that NOTIFYs `events` now (through `notifyEvents`): on the
 * program's pool by `publish`, and compiled for another connection by the
 * fault suite's leaky relay.
 */
export const publishStatement = (sql: SqlClient.SqlClient, events: ReadonlyArray<BusEvent>) =>
  sql`
  WITH events AS (
    SELECT * FROM jsonb_to_recordset(${
    JSON.stringify(events.map(({ event, task }) => ({
      run_id: event.runId,
      task,
      seq: event.seq,
      type: event.type,
      data: event.data,
      at: DateTime.formatIso(event.at)
    })))
  }::jsonb) AS e(run_id uuid, task text, seq integer, type text, data jsonb, at timestamptz)
  ), notified AS (${notifyEvents(sql, sql`events`)})
  SELECT count(*)::integer AS payloads FROM notified`

const makeEvent = (runId: string, seq: number, type: string, data: unknown, at: number | Date) =>
  makeRunEvent(runId as RunId, seq, type, data, at)

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const listener = yield* PgListener
  const fanout = yield* Fanout.make
  const notifications = yield* listener.subscribe(NotifyChannel.events)

  const readBig = (refs: ReadonlyArray<{ r: string; s: number; k: string }>) =>
    Effect.forEach(refs, (ref) =>
      sql<{ type: string; data: unknown; at: Date }>`
        SELECT type, data, at FROM runstream_events WHERE run_id = ${ref.r} AND seq = ${ref.s}`.pipe(
        Effect.map((rows) =>
          rows.map((row): BusEvent => ({ task: ref.k, event: makeEvent(ref.r, ref.s, row.type, row.data, row.at) }))
        )
      ))

  const receive = (payload: string) =>
    Effect.gen(function*() {
      const wire = JSON.parse(payload) as ReadonlyArray<Wire>
      const events: Array<BusEvent> = []
      const big: Array<{ r: string; s: number; k: string }> = []
      for (const w of wire) {
        if ("big" in w) big.push(w)
        else events.push({ task: w.k, event: makeEvent(w.r, w.s, w.t, w.d, w.a) })
      }
      fanout.dispatch(events)
      // Large events arrive after the small ones of the same payload; the
      // subscriber sees a gap and fills it from the log, so order still holds.
      if (big.length > 0) {
        fanout.dispatch((yield* readBig(big)).flat())
      }
    })

  yield* Queue.take(notifications).pipe(
    Effect.flatMap((message) => message._tag === "Reconnected" ? Effect.sync(fanout.resync) : receive(message.payload)),
    Effect.catchAllCause((cause) => Effect.logWarning("dropped a bus notification", cause)),
    Effect.forever,
    Effect.annotateLogs("component", "PostgresBus"),
    Effect.forkScoped
  )

  return EventBus.of({
    publish: (events) => events.length === 0 ? Effect.void : Effect.asVoid(publishStatement(sql, events)),
    // In the drain statement itself: the notifications commit with the delete
    // (a relay that dies leaves the rows to publish again, never a message
    // lost) in one round trip, where BEGIN, drain, NOTIFY and COMMIT took four.
    publishDrained: (drain) => drain.takeAndPublishInStatement((events) => notifyEvents(sql, events)),
    subscribe: fanout.subscribe
  })
})

/** @category layers */
export const layer = Layer.scoped(EventBus, make)
