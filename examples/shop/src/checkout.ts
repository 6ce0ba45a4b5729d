/**
 * Another service starting and following a run with `runstream/client` only:
 * `node dist/src/checkout.js [rpc-url]`. Exits 0 when the invoice is computed.
 */
import { Console, Effect, Stream } from "effect"
import { RunstreamClient } from "runstream/client"
import { Invoice } from "./tasks.js"

const url = process.argv[2] ?? "http://127.0.0.1:3000/rpc"

const program = Effect.gen(function*() {
  const client = yield* RunstreamClient.RunstreamClient
  const { run } = yield* client.start(Invoice, {
    orderId: `order-${Date.now()}`,
    lines: [{ sku: "tea", quantity: 2, unitCents: 450 }, { sku: "cup", quantity: 1, unitCents: 1200 }]
  })
  yield* client.events(run.id).pipe(Stream.runForEach((event) => Console.log(`${event.seq} ${event.type}`)))
  const done = yield* client.awaitCompletion(run.id, { timeout: "30 seconds" })
  if (done.status !== "succeeded") return yield* Effect.fail(`run ${run.id} ended ${done.status}`)
  yield* Console.log(`invoice ${run.id}: ${JSON.stringify(done.output)}`)
})

Effect.runPromise(program.pipe(Effect.provide(RunstreamClient.layer({ url, apiKey: process.env["RUNSTREAM_API_KEY"] })))).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
