/**
 * The outbox: every transaction that appends events also inserts an outbox row
 * naming the run and the seq range it appended (see the statements in
 * `EventLog`, `Queue` and `RunStore`). This service is the in-process hint that
 * rows were committed, so the program's relay drains them at once instead of
 * waiting for its poll; nothing is lost if a hint is, the rows stay in the table.
 * @since 0.1.0
 */
import { Context, Effect, Layer, PubSub, type Queue, type Scope } from "effect"

export class Outbox extends Context.Tag("runstream/Outbox")<Outbox, {
  /** Call after a commit that wrote outbox rows. */
  readonly written: Effect.Effect<void>
  /** A subscription to `written` hints (for relays). */
  readonly hints: Effect.Effect<Queue.Dequeue<void>, never, Scope.Scope>
}>() {}

export const layer = Layer.effect(
  Outbox,
  Effect.gen(function*() {
    const hub = yield* PubSub.sliding<void>(1)
    return Outbox.of({
      written: Effect.asVoid(PubSub.publish(hub, undefined)),
      // A sliding hub of one: a burst of hints is one wake-up per relay.
      hints: PubSub.subscribe(hub)
    })
  })
)
