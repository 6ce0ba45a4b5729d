/**
 * The fanout phase's server: one Runstream program with the HTTP API (the
 * production layers, postgres bus, no workers) on a free port of 127.0.0.1.
 *
 * env: BENCH_DATABASE_URL. Messages: sends `ready` with `port`; answers each
 * `cpu` with `cpu` (`process.cpuUsage()`: `user` and `system` µs); `stop` ends it.
 */
import { HttpServer } from "@effect/platform"
import { Effect, Layer } from "effect"
import * as Server from "../../src/http/Server.ts"
import { FanoutTick } from "./fanout-tasks.ts"
import { fromParent, programLayer, runChild, toParent } from "./common.ts"

const url = process.env["BENCH_DATABASE_URL"]!

const program = Effect.gen(function*() {
  const context = yield* Layer.build(
    Server.layer({ port: 0, host: "127.0.0.1", maxStreams: 100_000 }).pipe(
      Layer.provideMerge(programLayer({ url, tasks: [FanoutTick], bus: "postgres", workers: false }))
    )
  )
  const address = yield* HttpServer.addressWith((address) => Effect.succeed(address)).pipe(Effect.provide(context))
  process.on("message", (message) => {
    if ((message as { type?: unknown }).type === "cpu") {
      const used = process.cpuUsage()
      process.send!({ type: "cpu", user: used.user, system: used.system })
    }
  })
  yield* toParent({ type: "ready", port: address._tag === "TcpAddress" ? address.port : 0 })
  yield* fromParent("stop")
})

runChild(Effect.scoped(program))
