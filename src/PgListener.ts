/**
 * One LISTEN connection per program, shared by every part that waits on a
 * Postgres notification, and kept alive: when it drops (database restart,
 * network cut, stalled socket) it reconnects with backoff and tells every
 * subscriber `Reconnected`, because NOTIFY is lossy and whatever was sent while
 * it was away must be re-read from the tables.
 *
 * (`PgClient.listen` keeps one connection too, but ignores its errors: after a
 * restart of the database its streams stay silent for good.)
 * @since 0.1.0
 */
import { Context, Deferred, Duration, Effect, Layer, PubSub, Queue, Redacted, Schedule, type Scope } from "effect"
import pg from "pg"
import { DatabaseUrl } from "./Database.ts"

/** The channels Runstream uses. Notifications reach listeners of the same database only. */
export const NotifyChannel = {
  events: "runstream_events",
  queue: "runstream_queue",
  cancel: "runstream_cancel"
} as const
export type NotifyChannel = typeof NotifyChannel[keyof typeof NotifyChannel]

export type ListenMessage =
  | { readonly _tag: "Notification"; readonly channel: string; readonly payload: string }
  | { readonly _tag: "Reconnected" }

export class PgListener extends Context.Tag("runstream/PgListener")<PgListener, {
  /**
   * Messages on `channel`, plus `Reconnected` after each reconnect. The
   * subscription is active when this returns; it ends with the scope.
   */
  readonly subscribe: (channel: NotifyChannel) => Effect.Effect<Queue.Dequeue<ListenMessage>, never, Scope.Scope>
  /** Whether the LISTEN connection is up now (for readiness). */
  readonly isConnected: Effect.Effect<boolean>
}>() {}

const subscriberCapacity = 4096

export const make = Effect.gen(function*() {
  const { url } = yield* DatabaseUrl
  const hub = yield* PubSub.sliding<ListenMessage & { readonly channel?: string }>(subscriberCapacity)
  const firstConnect = yield* Deferred.make<void>()
  let connected = false

  const connectOnce = Effect.gen(function*() {
    const client = yield* Effect.acquireRelease(
      Effect.tryPromise(async () => {
        const client = new pg.Client({ connectionString: Redacted.value(url), keepAlive: true, application_name: "runstream-listen" })
        client.on("error", () => {}) // surfaced through `closed` below
        await client.connect()
        return client
      }),
      // Release runs uninterruptibly: let the timeout cut a stalled `end()`.
      (client) => Effect.promise(() => client.end().catch(() => undefined)).pipe(Effect.interruptible, Effect.timeoutOption(1000))
    )
    const closed = yield* Deferred.make<void, Error>()
    client.on("notification", (msg) => {
      if (msg.payload !== undefined) {
        hub.unsafeOffer({ _tag: "Notification", channel: msg.channel, payload: msg.payload })
      }
    })
    client.on("error", (error) => Deferred.unsafeDone(closed, Effect.fail(error)))
    client.on("end", () => Deferred.unsafeDone(closed, Effect.fail(new Error("connection ended"))))
    yield* Effect.tryPromise(() =>
      client.query(Object.values(NotifyChannel).map((c) => `LISTEN ${c}`).join(";"))
    )
    const wasReconnect = yield* Deferred.isDone(firstConnect)
    connected = true
    yield* Deferred.succeed(firstConnect, undefined)
    if (wasReconnect) {
      yield* Effect.logInfo("LISTEN connection re-established")
      yield* PubSub.publish(hub, { _tag: "Reconnected" })
    }
    // A stalled socket raises no error: probe it, and treat a slow answer as a cut.
    const probe = Effect.tryPromise(() => client.query("SELECT 1")).pipe(
      Effect.timeoutFail({ duration: Duration.seconds(3), onTimeout: () => new Error("probe timed out") }),
      Effect.repeat(Schedule.spaced(Duration.seconds(5)))
    )
    yield* Effect.raceFirst(Deferred.await(closed), probe)
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.sync(() => {
      connected = false
    }))
  )

  yield* connectOnce.pipe(
    Effect.catchAllCause((cause) => Effect.logWarning("LISTEN connection lost; reconnecting", cause)),
    Effect.zipRight(Effect.fail("reconnect" as const)),
    Effect.retry(Schedule.exponential("50 millis").pipe(Schedule.union(Schedule.spaced("1 second")))),
    Effect.annotateLogs("component", "PgListener"),
    Effect.forkScoped
  )
  yield* Deferred.await(firstConnect)

  return PgListener.of({
    subscribe: (channel) =>
      Effect.gen(function*() {
        const upstream = yield* PubSub.subscribe(hub)
        const out = yield* Effect.acquireRelease(
          Queue.sliding<ListenMessage>(subscriberCapacity),
          Queue.shutdown
        )
        yield* Queue.take(upstream).pipe(
          Effect.flatMap((message) =>
            message._tag === "Reconnected" || message.channel === channel ? Queue.offer(out, message) : Effect.void
          ),
          Effect.forever,
          Effect.forkScoped
        )
        return out
      }),
    isConnected: Effect.sync(() => connected)
  })
})

/** @category layers */
export const layer = Layer.scoped(PgListener, make)
