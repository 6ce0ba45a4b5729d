/**
 * The in-process bus: the relay hands each drained batch straight to this
 * program's subscribers. One process only (tests, dev, a single server with
 * its workers); the default of `Runstream.layerRuntime`.
 * @since 0.1.0
 */
import { Effect, Layer } from "effect"
import { EventBus } from "./EventBus.ts"
import * as Fanout from "./Fanout.ts"

export const make = Effect.map(Fanout.make, (fanout) =>
  EventBus.of({
    publish: (events) => Effect.sync(() => fanout.dispatch(events)),
    // After the drain commits, outside any transaction (one round trip): the
    // subscribers share the relay's process and die with it, so no message
    // can outlive a relay that dies before its commit.
    publishDrained: (drain) =>
      Effect.map(drain.take, ({ events, taken }) => {
        if (events.length > 0) fanout.dispatch(events)
        return taken
      }),
    subscribe: fanout.subscribe
  }))

/** @category layers */
export const layer = Layer.scoped(EventBus, make)
