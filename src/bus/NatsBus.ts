/**
 * The bus on core NATS, for a fleet of processes on several hosts: the relay
 * publishes each drained batch to NATS and every program subscribes to the
 * runs its streams follow, with no LISTEN/NOTIFY limit (8,000-byte payloads, a
 * database-wide lock at each NOTIFY's commit) and no load on the database.
 *
 * Subjects are per run, `<prefix>.run.<run id>`: a process subscribes to the
 * runs its streams follow, and to `<prefix>.run.*` for the debug stream. The
 * prefix (`NatsConfig`, default `runstream.<database name>`) keeps programs of
 * different databases apart on one server. A message carries events of one
 * run in seq order; one too large for the server's `max_payload` travels as a
 * reference that receivers read from the log before handing the message on. On a reconnect every subscriber
 * gets `Resync`: core NATS does not replay what was sent while a client was
 * away, the event log does.
 *
 * Loaded only by programs that use it: `runstream/nats`, with
 * `@nats-io/transport-node` installed.
 * @since 0.1.0
 */
import { SqlClient } from "@effect/sql"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { Duration, Effect, Layer, Queue } from "effect"
import type { RunId } from "../domain/Ids.ts"
import { makeRunEvent } from "../domain/RunEvent.ts"
import { type BusEvent, BusUnavailable, EventBus } from "./EventBus.ts"
import * as Fanout from "./Fanout.ts"
import { NatsConfig, type NatsOptions } from "./NatsConfig.ts"

export { NatsConfig, type NatsOptions } from "./NatsConfig.ts"

/**
 * The wire format: one message is `{r: run, k: task, e: entries}`, entries in
 * seq order, each `[seq, type, epoch ms, data]`, or `[seq]` alone for an event
 * too large for a message (read from the log by the receiver).
 */
interface Wire {
  readonly r: string
  readonly k: string
  readonly e: ReadonlyArray<readonly [number, string, number, unknown] | readonly [number]>
}

/** What the server takes when it does not say (its default `max_payload`). */
const defaultMaxPayload = 1024 * 1024

/**
 * How long a publish waits for the server to have the messages (the relay's
 * transaction stays open meanwhile), and a new subscription to be live.
 */
const serverWait = Duration.seconds(5)

/** Messages received and not yet handed to the fan-out; past this, dropped (and subscribers resync). */
const inboxCapacity = 4096

/** The messages of `events`: per run, as few as fit under `maxBytes`, in order. */
const encode = (events: ReadonlyArray<BusEvent>, maxBytes: number): Array<readonly [runId: string, payload: string]> => {
  const byRun = new Map<string, Array<BusEvent>>()
  for (const event of events) {
    const list = byRun.get(event.event.runId)
    if (list === undefined) byRun.set(event.event.runId, [event])
    else list.push(event)
  }
  const messages: Array<readonly [string, string]> = []
  for (const [runId, list] of byRun) {
    const head = `{"r":${JSON.stringify(runId)},"k":${JSON.stringify(list[0]!.task)},"e":[`
    const room = maxBytes - Buffer.byteLength(head) - 2
    let entries: Array<string> = []
    let size = 0
    for (const { event } of list) {
      let entry = JSON.stringify([event.seq, event.type, event.at.epochMillis, event.data])
      let bytes = Buffer.byteLength(entry) + 1
      if (bytes > room) {
        entry = `[${event.seq}]`
        bytes = entry.length + 1
      }
      if (size + bytes > room && entries.length > 0) {
        messages.push([runId, `${head}${entries.join(",")}]}`])
        entries = []
        size = 0
      }
      entries.push(entry)
      size += bytes
    }
    if (entries.length > 0) messages.push([runId, `${head}${entries.join(",")}]}`])
  }
  return messages
}

type Inbound = { readonly _tag: "Message"; readonly wide: boolean; readonly data: string } | { readonly _tag: "Resync" }

const unavailable = (message: string) => (cause: unknown) => new BusUnavailable({ bus: "nats", message, cause })

/** The connection, closed with the scope. */
const acquireConnection = (servers: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () =>
        connect({
          servers: [...servers],
          name: "runstream",
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          // A stalled link raises no error: ping, and count two unanswered as a cut.
          pingInterval: 5_000,
          maxPingOut: 2,
          timeout: 5_000
        }),
      catch: unavailable(`cannot connect to NATS at ${servers.join(", ")}`)
    }),
    (nc) => Effect.promise(() => nc.close().catch(() => undefined)).pipe(Effect.interruptible, Effect.timeoutOption(2_000))
  )

/** A subject token from a database name: anything but letters, digits, `_` and `-` becomes `_`. */
const subjectToken = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, "_") || "_"

export const make = (options: NatsOptions) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const fanout = yield* Fanout.make
    const prefix = options.subjectPrefix ??
      `runstream.${subjectToken((yield* sql<{ name: string }>`SELECT current_database() AS name`)[0]!.name)}`
    const runSubject = (runId: string) => `${prefix}.run.${runId}`
    const everyRun = `${prefix}.run.*`
    const nc: NatsConnection = yield* acquireConnection(options.servers)

    // Callbacks of the client put messages here; one fiber hands them to the
    // fan-out in order. Dropped when full (a stuck fan-out), then a Resync.
    const inbox = yield* Effect.acquireRelease(Queue.dropping<Inbound>(inboxCapacity), Queue.shutdown)
    let dropped = false
    const offer = (item: Inbound) => {
      if (!inbox.unsafeOffer(item)) dropped = true
    }

    const readReferenced = (runId: string, task: string, seqs: ReadonlyArray<number>) =>
      sql<{ seq: number; type: string; data: unknown; at: Date }>`
        SELECT seq, type, data, at FROM runstream_events WHERE run_id = ${runId} AND seq = ANY(${`{${seqs.join(",")}}`}::integer[])
        ORDER BY seq`.pipe(
        Effect.map((rows) =>
          rows.map((row): BusEvent => ({ task, event: makeRunEvent(runId as RunId, row.seq, row.type, row.data, row.at) }))
        )
      )

    const receive = (item: Inbound) =>
      Effect.gen(function*() {
        if (item._tag === "Resync") return fanout.resync()
        const wire = JSON.parse(item.data) as Wire
        const dispatch = item.wide ? fanout.dispatchToWide : fanout.dispatchToRuns
        const referenced = wire.e.filter((entry) => entry.length === 1).map((entry) => entry[0])
        // Events too large for a message are read from the log first, so that
        // the message's events reach subscribers whole and in seq order.
        const read = referenced.length === 0
          ? undefined
          : new Map((yield* readReferenced(wire.r, wire.k, referenced)).map((event) => [event.event.seq, event]))
        const events: Array<BusEvent> = []
        for (const entry of wire.e) {
          if (entry.length === 1) {
            const event = read?.get(entry[0])
            if (event !== undefined) events.push(event)
          } else {
            events.push({ task: wire.k, event: makeRunEvent(wire.r as RunId, entry[0], entry[1], entry[3], entry[2]) })
          }
        }
        dispatch(events)
      }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("dropped a bus message", cause)))

    // `takeBetween` waits for the first item (`takeAll` would return at once, empty).
    yield* Queue.takeBetween(inbox, 1, inboxCapacity).pipe(
      Effect.flatMap((items) =>
        Effect.zipRight(
          Effect.forEach(items, receive, { discard: true }),
          Effect.sync(() => {
            if (dropped) {
              dropped = false
              fanout.resync()
            }
          })
        )
      ),
      Effect.forever,
      Effect.annotateLogs("component", "NatsBus"),
      Effect.forkScoped
    )

    // What NATS sent while this client was away is lost: every subscriber
    // re-reads the log when the link drops and once the subscriptions are
    // back on the server.
    // Not `Stream.fromAsyncIterable`: its finalizer awaits the iterator's
    // `return`, which waits for the next status (a ping, seconds away); the
    // iterator ends with the connection anyway.
    const statuses = nc.status()[Symbol.asyncIterator]()
    yield* Effect.promise(() => statuses.next()).pipe(
      Effect.flatMap((next) => {
        if (next.done === true) return Effect.interrupt
        const status = next.value
        switch (status.type) {
          case "disconnect":
            // What was in flight is lost: re-read now, and again once back.
            return Effect.zipRight(
              Effect.sync(() => offer({ _tag: "Resync" })),
              Effect.logWarning(`NATS connection lost (${status.server}); reconnecting`)
            )
          case "reconnect":
            return Effect.promise(() => nc.flush().catch(() => undefined)).pipe(
              Effect.timeoutOption(serverWait),
              Effect.zipRight(Effect.sync(() => offer({ _tag: "Resync" }))),
              Effect.zipRight(Effect.logInfo(`NATS connection re-established (${status.server})`))
            )
          default:
            return Effect.void
        }
      }),
      Effect.forever,
      Effect.annotateLogs("component", "NatsBus"),
      Effect.forkScoped
    )

    /** One NATS subscription per subject, shared by this program's subscribers of it. */
    const interest = new Map<string, { count: number; readonly live: Promise<void>; readonly stop: () => void }>()
    const listen = (subject: string, wide: boolean) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          let entry = interest.get(subject)
          if (entry === undefined) {
            try {
              const sub = nc.subscribe(subject, {
                callback: (error, msg) => offer(error === null ? { _tag: "Message", wide, data: msg.string() } : { _tag: "Resync" })
              })
              // Live once the server has the SUB: a ping's answer comes after it.
              entry = { count: 0, live: nc.flush().catch(() => undefined), stop: () => sub.unsubscribe() }
            } catch {
              // A closed connection: nothing will arrive, the idle check resyncs the subscriber.
              entry = { count: 0, live: Promise.resolve(), stop: () => {} }
            }
            interest.set(subject, entry)
          }
          entry.count++
          return entry
        }),
        (entry) =>
          Effect.sync(() => {
            entry.count--
            if (entry.count === 0 && interest.get(subject) === entry) {
              interest.delete(subject)
              try {
                entry.stop()
              } catch {
                // Already closed with the connection.
              }
            }
          })
      ).pipe(Effect.flatMap((entry) => Effect.promise(() => entry.live).pipe(Effect.timeoutOption(serverWait))))

    const publishNow = (events: ReadonlyArray<BusEvent>) =>
      Effect.try({
        try: () => {
          for (const [runId, payload] of encode(events, nc.info?.max_payload ?? defaultMaxPayload)) {
            nc.publish(runSubject(runId), payload)
          }
        },
        catch: unavailable("cannot publish to NATS")
      }).pipe(
        // Until the server has them: a relay that dies before then has not committed its delete.
        Effect.zipRight(Effect.tryPromise({ try: () => nc.flush(), catch: unavailable("NATS did not confirm a publish") })),
        Effect.timeoutFail({ duration: serverWait, onTimeout: () => unavailable("NATS did not confirm a publish in time")(undefined) })
      )

    return EventBus.of({
      publish: (events) => events.length === 0 ? Effect.void : publishNow(events),
      // Published inside the drain's transaction, committed once NATS has the
      // events: a relay that dies leaves its rows to publish again.
      publishDrained: (drain) =>
        Effect.flatMap(drain.take, ({ events, taken }) => events.length === 0 ? Effect.succeed(taken) : Effect.as(publishNow(events), taken))
          .pipe(sql.withTransaction),
      subscribe: (filter) =>
        Effect.gen(function*() {
          const mailbox = yield* fanout.subscribe(filter)
          yield* filter.runId === undefined ? listen(everyRun, true) : listen(runSubject(filter.runId), false)
          return mailbox
        })
    })
  })

/** The bus on the servers and prefix given. @category layers */
export const layerWith = (options: NatsOptions) => Layer.scoped(EventBus, make(options))

/** The bus configured from the environment (`NatsConfig`: `RUNSTREAM_NATS_URL`, `RUNSTREAM_NATS_SUBJECT_PREFIX`). @category layers */
export const layer = Layer.scoped(EventBus, Effect.flatMap(NatsConfig, make))
