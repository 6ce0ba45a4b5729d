import { RpcClientError } from "@effect/rpc"
import { describe, expect, layer } from "@effect/vitest"
import { Chunk, Effect, Layer, Redacted, Stream } from "effect"
import * as RunstreamClient from "../../src/rpc/RunstreamClient.ts"
import { BaseUrl, program } from "../http/support.ts"

/** A client of the server under test's `POST /rpc`. */
const withClient = (apiKey: string) =>
  Effect.provide(Layer.unwrapEffect(Effect.map(BaseUrl, (base) => RunstreamClient.layer({ url: `${base}/rpc`, apiKey }))))

describe("RPC mounted in the API server", () => {
  layer(program({ apiKeys: [Redacted.make("key-1")] }), { excludeTestServices: true })((it) => {
    it.effect("streams a run's events and the debug stream through the API's middleware", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const { run } = yield* client.start("demo.count", { to: 3, delayMs: 10 })
        const events = yield* Stream.runCollect(client.events(run.id))
        expect(Chunk.toArray(events).map((event) => event.seq)).toEqual([1, 2, 3, 4, 5, 6])

        const { run: endless } = yield* client.start("demo.count", { to: 1_000_000, delayMs: 5 })
        const seen = yield* Stream.runCollect(Stream.take(client.allEvents({ runId: endless.id }), 3))
        expect(Chunk.toArray(seen).map((event) => event.runId)).toEqual([endless.id, endless.id, endless.id])
        yield* client.cancel(endless.id)
        expect((yield* client.awaitCompletion(endless.id)).status).toBe("cancelled")
      }).pipe(withClient("key-1")))

    it.effect("fails every kind of call with a refused API key with Unauthorized", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const refusals = [
          yield* Effect.flip(client.list()),
          yield* Effect.flip(client.start("demo.echo", 1)),
          yield* Effect.flip(client.get("0190b2b0-0000-7000-8000-000000000000")),
          yield* Effect.flip(Stream.runDrain(client.events("0190b2b0-0000-7000-8000-000000000000"))),
          yield* Effect.flip(Stream.runDrain(client.allEvents()))
        ]
        for (const error of refusals) {
          expect(error).toBeInstanceOf(RunstreamClient.Unauthorized)
          expect(error.message).toContain("401")
        }
      }).pipe(withClient("wrong-key")))

    it.effect("a server that cannot be reached is still an RpcClientError", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        expect(yield* Effect.flip(client.list())).toBeInstanceOf(RpcClientError.RpcClientError)
      }).pipe(Effect.provide(RunstreamClient.layer({ url: "http://127.0.0.1:1/rpc", apiKey: "key-1" }))))
  })
})
