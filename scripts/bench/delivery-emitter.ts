/**
 * The delivery phase's emitting process (postgres bus): a Runstream program
 * with workers whose `bench.paced` task waits for the bench's `go`, emits its
 * ticks on a fixed schedule and records when each `emit` returned. The relay
 * of this process NOTIFYs; the subscribers live in the bench's process.
 *
 * env: BENCH_DATABASE_URL. Messages: sends `ready`, receives `go`, sends `result`.
 */
import { Deferred, Effect, Layer } from "effect"
import { fromParent, makePaced, programLayer, runChild, toParent } from "./common.ts"

export interface EmitterResult {
  /** When `emit` returned, per seq, on the shared monotonic clock. */
  readonly emittedAt: Record<number, number>
}

const url = process.env["BENCH_DATABASE_URL"]!

const program = Effect.gen(function*() {
  const go = yield* Deferred.make<void>()
  const emittedAt: Record<number, number> = {}
  const done = yield* Deferred.make<void>()
  const Paced = makePaced({
    go: Deferred.await(go),
    emitted: (seq, at) => {
      emittedAt[seq] = at
    },
    finished: Deferred.succeed(done, undefined)
  })
  yield* Layer.build(programLayer({ url, tasks: [Paced], bus: "postgres", workers: { concurrency: 1 } }))
  yield* toParent({ type: "ready" })
  yield* fromParent("go")
  yield* Deferred.succeed(go, undefined)
  yield* Deferred.await(done)
  const result: EmitterResult = { emittedAt }
  yield* toParent({ type: "result", result })
  // Stay up until the bench has what it needs (the relay publishes the end).
  yield* fromParent("stop")
})

runChild(Effect.scoped(program))
