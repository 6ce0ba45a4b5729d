/**
 * Publish / subscribe of run events inside a program. The bus is a fast path,
 * not the record: subscribers deduplicate by (run, seq) and fill gaps from the
 * event log, so a dropped or repeated message never shows in a stream.
 *
 * - `layerMemory`: one process (tests, dev). The relay publishes straight to
 *   the subscribers of this program.
 * - `layerPostgres`: across processes. The relay's drain statement NOTIFYs
 *   (so the notifications and the outbox delete commit together) and every
 *   program's listener fans the events out to its own subscribers.
 * @since 0.1.0
 */
import { SqlClient, type SqlError, type Statement } from "@effect/sql"
import { Config, Context, DateTime, Duration, Effect, Layer, Mailbox, Queue, type Scope } from "effect"
import type { RunId } from "./domain/Ids.ts"
import { makeRunEvent, type RunEvent } from "./domain/RunEvent.ts"
import { NotifyChannel, PgListener } from "./PgListener.ts"

/** An event with the task of its run (for the debug stream's filter). */
export interface BusEvent {
  readonly task: string
  readonly event: RunEvent
}

/**
 * `Resync` means messages may have been lost (the bus reconnected, or a run's
 * subscription stayed idle for a while): a subscriber re-reads the log from
 * its cursor.
 */
export type BusMessage =
  | { readonly _tag: "Event"; readonly task: string; readonly event: RunEvent }
  | { readonly _tag: "Resync" }

export interface SubscribeFilter {
  readonly runId?: RunId | undefined
  readonly task?: string | undefined
}

export class EventBus extends Context.Tag("runstream/EventBus")<EventBus, {
  readonly publish: (events: ReadonlyArray<BusEvent>) => Effect.Effect<void, SqlError.SqlError>
  /**
   * Without `notifyDrained`: whether the relay must call `publish` inside the
   * transaction that deletes the outbox rows, so that a relay that dies leaves
   * the rows to publish again, never a message lost. The memory bus's
   * subscribers die with its process, so it publishes after the commit.
   */
  readonly publishesInTransaction: boolean
  /**
   * The postgres bus: a CTE body that NOTIFYs the events of a CTE named
   * `drained` (run_id, task, seq, type, data, at), so that the relay's drain
   * statement publishes what it deletes, atomically, in one round trip instead
   * of four (BEGIN, drain, NOTIFY, COMMIT). Its value is the number of
   * payloads sent. Without it, the relay calls `publish`.
   */
  readonly notifyDrained?: Statement.Fragment | undefined
  /** A bounded subscription, live when this returns, shut down with the scope. */
  readonly subscribe: (filter: SubscribeFilter) => Effect.Effect<Mailbox.ReadonlyMailbox<BusMessage>, never, Scope.Scope>
}>() {}

/** @category config */
export const BusConfig = Config.all({
  subscriberBuffer: Config.integer("RUNSTREAM_SUBSCRIBER_BUFFER").pipe(
    Config.validate({ message: "must be between 16 and 1000000", validation: (n) => n >= 16 && n <= 1_000_000 }),
    Config.withDefault(1024)
  ),
  /**
   * A run's subscription that got nothing for this long is sent a `Resync`, so
   * its stream re-reads the log: a safety net for an event the bus never
   * delivered. One timer per bus, not one per subscriber and message.
   */
  idleCheck: Config.duration("RUNSTREAM_STREAM_IDLE_CHECK").pipe(Config.withDefault(Duration.seconds(2)))
})

/**
 * Fans messages out to this program's subscribers. Subscriber mailboxes slide
 * (drop the oldest) when full: the newest message of a run, its terminal event
 * included, always arrives, and the subscriber fills any gap from the log.
 * Mailboxes, not Queues: waking a subscriber that waits on a Queue costs about
 * twice as much, and a popular run's fan-out is that cost times its subscribers.
 */
const makeDispatcher = Effect.gen(function*() {
  const { idleCheck, subscriberBuffer } = yield* BusConfig
  const byRun = new Map<string, Set<Mailbox.Mailbox<BusMessage>>>()
  const wide = new Map<Mailbox.Mailbox<BusMessage>, SubscribeFilter>()
  // Runs that got an event since the last idle check.
  const active = new Set<string>()

  const dispatch = (events: ReadonlyArray<BusEvent>) => {
    for (const { event, task } of events) {
      const message: BusMessage = { _tag: "Event", task, event }
      const subscribers = byRun.get(event.runId)
      if (subscribers !== undefined) {
        active.add(event.runId)
        for (const mailbox of subscribers) mailbox.unsafeOffer(message)
      }
      for (const [mailbox, filter] of wide) {
        if (filter.task === undefined || filter.task === task) mailbox.unsafeOffer(message)
      }
    }
  }

  const resync = () => {
    const message: BusMessage = { _tag: "Resync" }
    for (const subscribers of byRun.values()) {
      for (const mailbox of subscribers) mailbox.unsafeOffer(message)
    }
    for (const mailbox of wide.keys()) mailbox.unsafeOffer(message)
  }

  const resyncIdle = () => {
    const message: BusMessage = { _tag: "Resync" }
    for (const [runId, subscribers] of byRun) {
      if (!active.has(runId)) for (const mailbox of subscribers) mailbox.unsafeOffer(message)
    }
    active.clear()
  }
  yield* Effect.sync(resyncIdle).pipe(
    Effect.delay(idleCheck),
    Effect.forever,
    Effect.forkScoped
  )

  const subscribe = (filter: SubscribeFilter) =>
    Effect.acquireRelease(
      Effect.map(Mailbox.make<BusMessage>({ capacity: subscriberBuffer, strategy: "sliding" }), (mailbox) => {
        if (filter.runId !== undefined) {
          const set = byRun.get(filter.runId) ?? new Set()
          set.add(mailbox)
          byRun.set(filter.runId, set)
        } else {
          wide.set(mailbox, filter)
        }
        return mailbox
      }),
      (mailbox) =>
        Effect.suspend(() => {
          if (filter.runId !== undefined) {
            const set = byRun.get(filter.runId)
            set?.delete(mailbox)
            if (set?.size === 0) byRun.delete(filter.runId)
          } else {
            wide.delete(mailbox)
          }
          return mailbox.shutdown
        })
    )

  return { dispatch, resync, subscribe }
})

/** In-process bus. */
export const layerMemory = Layer.scoped(
  EventBus,
  Effect.map(makeDispatcher, (dispatcher) =>
    EventBus.of({
      publish: (events) => Effect.sync(() => dispatcher.dispatch(events)),
      publishesInTransaction: false,
      subscribe: dispatcher.subscribe
    }))
)

/** NOTIFY payloads must stay under 8000 bytes; leave room for the envelope. */
const maxPayloadBytes = 7800

type WireEvent =
  | { readonly r: string; readonly s: number; readonly k: string; readonly t: string; readonly a: number; readonly d: unknown }
  | { readonly r: string; readonly s: number; readonly k: string; readonly big: 1 }

const toWire = ({ event, task }: BusEvent): WireEvent => ({
  r: event.runId,
  s: event.seq,
  k: task,
  t: event.type,
  a: DateTime.toEpochMillis(event.at),
  d: event.data
})

/**
 * In the drain statement, events are packed by SQL, which cannot pack greedily
 * as `encodePayloads` does: an event starts a new payload when the bytes before
 * it cross a multiple of this size. Payloads then stay under two of these, and
 * larger events travel as references.
 */
const statementChunkBytes = Math.floor(maxPayloadBytes / 2) - 100

/**
 * Packs events into as few NOTIFY payloads as fit under the limit. An event too
 * large for a notification on its own travels as a reference and is read from
 * the log by the receivers.
 */
export const encodePayloads = (events: ReadonlyArray<BusEvent>): Array<string> => {
  const payloads: Array<string> = []
  let batch: Array<string> = []
  let size = 2
  for (const event of events) {
    let json = JSON.stringify(toWire(event))
    if (Buffer.byteLength(json) > maxPayloadBytes - 2) {
      json = JSON.stringify({ r: event.event.runId, s: event.event.seq, k: event.task, big: 1 })
    }
    const bytes = Buffer.byteLength(json) + 1
    if (size + bytes > maxPayloadBytes && batch.length > 0) {
      payloads.push(`[${batch.join(",")}]`)
      batch = []
      size = 2
    }
    batch.push(json)
    size += bytes
  }
  if (batch.length > 0) payloads.push(`[${batch.join(",")}]`)
  return payloads
}

const makeEvent = (runId: string, seq: number, type: string, data: unknown, at: number | Date) =>
  makeRunEvent(runId as RunId, seq, type, data, at)

/** Cross-process bus on LISTEN/NOTIFY. */
export const layerPostgres = Layer.scoped(
  EventBus,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const listener = yield* PgListener
    const dispatcher = yield* makeDispatcher
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
        const wire = JSON.parse(payload) as ReadonlyArray<WireEvent>
        const events: Array<BusEvent> = []
        const big: Array<{ r: string; s: number; k: string }> = []
        for (const w of wire) {
          if ("big" in w) big.push(w)
          else events.push({ task: w.k, event: makeEvent(w.r, w.s, w.t, w.d, w.a) })
        }
        dispatcher.dispatch(events)
        // Large events arrive after the small ones of the same payload; the
        // subscriber sees a gap and fills it from the log, so order still holds.
        if (big.length > 0) {
          dispatcher.dispatch((yield* readBig(big)).flat())
        }
      })

    yield* Queue.take(notifications).pipe(
      Effect.flatMap((message) =>
        message._tag === "Reconnected" ? Effect.sync(dispatcher.resync) : receive(message.payload)
      ),
      Effect.catchAllCause((cause) => Effect.logWarning("dropped a bus notification", cause)),
      Effect.forever,
      Effect.annotateLogs("component", "EventBus"),
      Effect.forkScoped
    )

    return EventBus.of({
      // All payloads in one statement (one round trip), in order.
      publish: (events) =>
        Effect.asVoid(sql`
          SELECT pg_notify(${NotifyChannel.events}, payload)
          FROM jsonb_array_elements_text(${JSON.stringify(encodePayloads(events))}::jsonb) WITH ORDINALITY AS p(payload, n)
          ORDER BY n`),
      publishesInTransaction: true,
      // The wire format of `toWire` and `encodePayloads`, built by Postgres.
      notifyDrained: sql`
        SELECT pg_notify(${NotifyChannel.events}, payload) FROM (
          SELECT '[' || string_agg(wire, ',' ORDER BY n) || ']' AS payload, part
          FROM (
            SELECT wire, n, (sum(octet_length(wire) + 1) OVER (ORDER BY n) - octet_length(wire) - 1)
              / ${statementChunkBytes} AS part
            FROM (
              SELECT row_number() OVER (ORDER BY run_id, seq) AS n,
                CASE WHEN octet_length(wire) <= ${statementChunkBytes} THEN wire
                  ELSE json_build_object('r', run_id, 's', seq, 'k', task, 'big', 1)::text END AS wire
              FROM (
                SELECT run_id, seq, task, json_build_object('r', run_id, 's', seq, 'k', task, 't', type,
                  'a', floor(extract(epoch FROM at) * 1000), 'd', data)::text AS wire
                FROM drained
              ) events
            ) sized
          ) numbered
          GROUP BY part ORDER BY part
        ) payloads`,
      subscribe: dispatcher.subscribe
    })
  })
)
