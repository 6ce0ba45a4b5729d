/**
 * The delivery phase's emitting process (postgres or nats bus): a Runstream program
 * with workers whose `bench.paced` task waits for the bench's `go`, emits its
 * ticks on a fixed schedule and records when each `emit` returned. The relay
 * of this process publishes; the subscribers live in the bench's process.
 *
 * env: BENCH_DATABASE_URL, BENCH_BUS (postgres or nats). Messages: sends `ready`; then, for each run, receives
 * `go` and sends `result` when the body has emitted everything; `stop` ends it.
 */
import { Effect, Layer, Queue } from "effect"
import { fromParent, makePaced, programLayer, runChild, toParent } from "./common.ts"

export interface EmitterResult {
  /** When `emit` returned, per seq, on the shared monotonic clock. */
  readonly emittedAt: Record<number, number>
}

const url = process.env["BENCH_DATABASE_URL"]!
const bus = process.env["BENCH_BUS"] === "nats" ? "nats" : "postgres"

const program = Effect.gen(function*() {
  // Every `go` is kept until a run's body takes it, whenever it arrives.
  const go = yield* Queue.unbounded<void>()
  process.on("message", (message) => {
    if ((message as { type?: unknown }).type === "go") go.unsafeOffer(undefined)
  })
  let emittedAt: Record<number, number> = {}
  const Paced = makePaced({
    go: Queue.take(go),
    emitted: (seq, at) => {
      emittedAt[seq] = at
    },
    finished: Effect.suspend(() => {
      const result: EmitterResult = { emittedAt }
      emittedAt = {}
      return toParent({ type: "result", result })
    })
  })
  yield* Layer.build(programLayer({ url, tasks: [Paced], bus, workers: { concurrency: 1 } }))
  yield* toParent({ type: "ready" })
  yield* fromParent("stop")
})

runChild(Effect.scoped(program))
