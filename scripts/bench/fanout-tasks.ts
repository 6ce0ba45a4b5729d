/**
 * The fanout phase's task: waits for the bench's `go`, then emits `events`
 * ticks on a fixed schedule, each stamped with the shared monotonic clock
 * just before its `emit` (the clients measure delivery from it).
 */
import { Effect, Schema } from "effect"
import * as Task from "../../src/Task.ts"
import { nowMs } from "./common.ts"

export const FanoutInput = Schema.Struct({ events: Schema.Int, intervalMs: Schema.Number })

export const makeFanoutTick = (go: Effect.Effect<void>) =>
  Task.make("bench.fanout", {
    input: FanoutInput,
    output: Schema.Struct({ events: Schema.Int }),
    run: ({ events, intervalMs }, ctx) =>
      Effect.gen(function*() {
        yield* go
        const start = nowMs()
        for (let n = 1; n <= events; n++) {
          const wait = start + (n - 1) * intervalMs - nowMs()
          if (wait > 0) yield* Effect.sleep(wait)
          yield* ctx.emit("tick", { n, t: nowMs() })
        }
        return { events }
      })
  })

/** The task as the server registers it (it never runs it). */
export const FanoutTick = makeFanoutTick(Effect.void)
