/**
 * The fanout phase's emitting process: a Runstream program with workers
 * (concurrency = runs) whose `bench.fanout` runs wait for `go`, then emit
 * their ticks; its relay NOTIFYs the server.
 *
 * env: BENCH_DATABASE_URL, BENCH_RUNS. Messages: sends `ready`; on `start`
 * (with `events`, `intervalMs`) starts BENCH_RUNS runs and answers `started`
 * with their `ids`; `go` releases every run waiting; `stop` ends it.
 */
import { Context, Effect, Layer, Queue } from "effect"
import { Runs } from "../../src/Runs.ts"
import { fromParent, programLayer, runChild, toParent } from "./common.ts"
import { makeFanoutTick } from "./fanout-tasks.ts"

const url = process.env["BENCH_DATABASE_URL"]!
const runCount = Number(process.env["BENCH_RUNS"])

const program = Effect.gen(function*() {
  const go = yield* Queue.unbounded<void>()
  const Tick = makeFanoutTick(Queue.take(go))
  const context = yield* Layer.build(programLayer({ url, tasks: [Tick], bus: "postgres", workers: { concurrency: runCount } }))
  const runs = Context.get(context, Runs)
  process.on("message", (message) => {
    const m = message as { type?: unknown; events?: number; intervalMs?: number }
    if (m.type === "go") for (let i = 0; i < runCount; i++) go.unsafeOffer(undefined)
    if (m.type === "start") {
      Effect.runFork(
        Effect.forEach(Array.from({ length: runCount }), () => runs.start(Tick, { events: m.events!, intervalMs: m.intervalMs! })).pipe(
          Effect.flatMap((started) => toParent({ type: "started", ids: started.map((run) => run.id) })),
          Effect.catchAllCause((cause) => toParent({ type: "error", message: String(cause) }))
        )
      )
    }
  })
  yield* toParent({ type: "ready" })
  yield* fromParent("stop")
})

runChild(Effect.scoped(program))
