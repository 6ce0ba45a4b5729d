/**
 * The fan-out of bus messages to this program's subscribers, shared by every
 * driver: a driver hands it what arrived, it offers each message to the
 * subscriptions that want it. Subscriber mailboxes slide (drop the oldest)
 * when full: the newest message of a run, its terminal event included, always
 * arrives, and the subscriber fills any gap from the log. Mailboxes, not
 * Queues: waking a subscriber that waits on a Queue costs about twice as much,
 * and a popular run's fan-out is that cost times its subscribers.
 * @since 0.1.0
 */
import { Config, type ConfigError, Duration, Effect, Mailbox, type Scope } from "effect"
import type { BusEvent, BusMessage, EventBus, SubscribeFilter } from "./EventBus.ts"

/** @category config */
export const FanoutConfig = Config.all({
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

export interface Fanout {
  /** To the subscribers of each event's run and to the wide ones (no run in their filter). */
  readonly dispatch: (events: ReadonlyArray<BusEvent>) => void
  /** To the subscribers of each event's run only (a driver that receives runs and wide subscriptions apart). */
  readonly dispatchToRuns: (events: ReadonlyArray<BusEvent>) => void
  /** To the wide subscribers only. */
  readonly dispatchToWide: (events: ReadonlyArray<BusEvent>) => void
  /** A `Resync` to every subscriber: messages may have been lost. */
  readonly resync: () => void
  readonly subscribe: EventBus["Type"]["subscribe"]
}

/** A fan-out in the scope, with its idle-check timer. */
export const make: Effect.Effect<Fanout, ConfigError.ConfigError, Scope.Scope> = Effect.gen(
  function*() {
    const { idleCheck, subscriberBuffer } = yield* FanoutConfig
    const byRun = new Map<string, Set<Mailbox.Mailbox<BusMessage>>>()
    const wide = new Map<Mailbox.Mailbox<BusMessage>, SubscribeFilter>()
    // Runs that got an event since the last idle check.
    const active = new Set<string>()

    const dispatchToRuns = (events: ReadonlyArray<BusEvent>) => {
      for (const { event, task } of events) {
        const subscribers = byRun.get(event.runId)
        if (subscribers === undefined) continue
        active.add(event.runId)
        const message: BusMessage = { _tag: "Event", task, event }
        for (const mailbox of subscribers) mailbox.unsafeOffer(message)
      }
    }

    const dispatchToWide = (events: ReadonlyArray<BusEvent>) => {
      if (wide.size === 0) return
      for (const { event, task } of events) {
        const message: BusMessage = { _tag: "Event", task, event }
        for (const [mailbox, filter] of wide) {
          if (filter.task === undefined || filter.task === task) mailbox.unsafeOffer(message)
        }
      }
    }

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

    const subscribe: Fanout["subscribe"] = (filter) =>
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

    return { dispatch, dispatchToRuns, dispatchToWide, resync, subscribe }
  }
)
