import { HttpServer } from "@effect/platform"
import { describe, expect, it, layer } from "@effect/vitest"
import {
  ConfigProvider,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Option,
  Queue,
  Redacted,
  Scope,
  Stream
} from "effect"
import * as Demo from "../../src/demo/tasks.ts"
import { makeVerifier } from "../../src/http/Auth.ts"
import { HttpConfig } from "../../src/http/HttpConfig.ts"
import * as Server from "../../src/http/Server.ts"
import * as Streams from "../../src/http/Streams.ts"
import * as RunstreamClient from "../../src/rpc/RunstreamClient.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import * as Sse from "./sse.ts"
import { BaseUrl, call, follow, open, post, program } from "./support.ts"

describe("HTTP API: authentication", () => {
  layer(program({ apiKeys: [Redacted.make("key-one"), Redacted.make("key-two")] }), { excludeTestServices: true })((it) => {
    it.effect("requires a valid bearer key on every route but the health checks", () =>
      Effect.gen(function*() {
        for (const headers of [{}, { authorization: "Bearer key-three" }, { authorization: "key-one" }, { authorization: "Bearer " }]) {
          for (const path of ["/v1/runs", "/v1/events", "/openapi.json", "/v2/unknown"]) {
            const answer = yield* call(path, { headers })
            expect({ path, status: answer.status }).toEqual({ path, status: 401 })
            expect(answer.body.error.code).toBe("unauthorized")
            expect(answer.headers.get("www-authenticate")).toBe("Bearer realm=\"runstream\"")
          }
        }
        const refused = yield* post("/v1/runs", { task: "demo.echo", input: 1 })
        expect(refused.status).toBe(401)
        expect((yield* call("/v1/runs", { headers: { authorization: "Bearer key-two" } })).body).toEqual({ runs: [], nextCursor: null })
        const started = yield* post("/v1/runs", { task: "demo.echo", input: 1 }, { authorization: "bearer key-one" })
        expect(started.status).toBe(201)
        expect((yield* call("/healthz")).status).toBe(200)
        expect((yield* call("/readyz")).status).toBe(200)
      }))

    it.effect("guards /rpc too, and serves the RPC group there", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const anonymous = yield* call("/rpc", { method: "POST", headers: { "content-type": "application/ndjson" }, body: "" })
        expect(anonymous.status).toBe(401)
        const program = Effect.gen(function*() {
          const client = yield* RunstreamClient.RunstreamClient
          const { run } = yield* client.start("demo.count", { to: 2 })
          return yield* Stream.runCollect(client.events(run.id))
        })
        const events = yield* program.pipe(
          Effect.provide(RunstreamClient.layer({ url: `${base}/rpc`, apiKey: "key-two" }))
        )
        expect([...events].map((event) => event.type)).toEqual(["run.queued", "run.started", "tick", "tick", "run.succeeded"])
      }))
  })

  it("compares keys whole: no prefix, no other key, no empty key", () => {
    const verify = makeVerifier([Redacted.make("alpha"), Redacted.make("beta")])
    expect(verify("Bearer alpha")).toBe(true)
    expect(verify("Bearer beta")).toBe(true)
    expect(verify("Bearer alph")).toBe(false)
    expect(verify("Bearer alphabet")).toBe(false)
    expect(verify("Basic alpha")).toBe(false)
    expect(verify(undefined)).toBe(false)
    expect(makeVerifier([])("Bearer ")).toBe(false)
  })

  it.effect("reads RUNSTREAM_API_KEYS as a comma list, and refuses one that lists no key", () =>
    Effect.gen(function*() {
      const read = (keys: string) =>
        HttpConfig.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["RUNSTREAM_API_KEYS", keys]]))))
      const config = yield* read(" a ,b,, ")
      expect(config.apiKeys.map(Redacted.value)).toEqual(["a", "b"])
      const error = yield* Effect.flip(read(" , "))
      expect(String(error)).toContain("RUNSTREAM_API_KEYS")
    }))
})

describe("HTTP API: event streams", () => {
  layer(program({ maxStreams: 2 }), { excludeTestServices: true })((it) => {
    it.scoped("answers 503 past the limit of open streams", () =>
      Effect.gen(function*() {
        yield* follow("/v1/events")
        const run = (yield* post("/v1/runs", { task: "test.stepper", input: { steps: 1 } })).body.run
        yield* follow(`/v1/runs/${run.id}/events`)
        for (const path of ["/v1/events", `/v1/runs/${run.id}/events`]) {
          const refused = yield* call(path)
          expect(refused.status).toBe(503)
          expect(refused.body.error.code).toBe("too_many_streams")
        }
        // JSON pages are no streams.
        expect((yield* call(`/v1/runs/${run.id}/events`, { headers: { accept: "application/json" } })).status).toBe(200)
      }))
  })

  layer(program({ keepAlive: Duration.millis(50) }), { excludeTestServices: true })((it) => {
    it.scoped("sends a keep-alive comment while idle", () =>
      Effect.gen(function*() {
        const response = yield* open("/v1/events")
        const comment = yield* Sse.frames(response.body!).pipe(
          Stream.filter((frame) => frame.comments.length > 0),
          Stream.runHead
        )
        expect(response.status).toBe(200)
        expect(Option.map(comment, (frame) => frame.comments)).toEqual(Option.some(["keep-alive"]))
      }))
  })

  it.scoped("frees a slot when its stream closes", () =>
    Effect.gen(function*() {
      const streams = yield* Streams.make({ maxStreams: 1 })
      const first = yield* Scope.make()
      yield* Scope.extend(streams.acquire, first)
      expect((yield* Effect.flip(Effect.scoped(streams.acquire))).code).toBe("too_many_streams")
      yield* Scope.close(first, Exit.void)
      yield* Effect.scoped(streams.acquire)
      expect(yield* streams.active).toBe(0)
    }))

  it.live("ends open event streams when the server stops, so that it can stop", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(program(), scope)
      const base = Context.get(context, BaseUrl)
      const response = yield* Effect.promise(() => fetch(`${base}/v1/events`))
      expect(response.status).toBe(200)
      const reading = yield* Effect.fork(Sse.collect(Sse.frames(response.body!)))
      // An RPC stream that is open too: a run's events, the run waiting on its gate.
      const run = yield* Effect.promise(() =>
        fetch(`${base}/v1/runs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ task: "test.stepper", input: { steps: 1 } })
        }).then((response) => response.json() as Promise<{ run: { id: string } }>)
      )
      const first = yield* Deferred.make<void>()
      const rpcStream = yield* RunstreamClient.RunstreamClient.pipe(
        Effect.flatMap((client) => Stream.runForEach(client.events(run.run.id), () => Deferred.succeed(first, undefined))),
        Effect.provide(RunstreamClient.layer({ url: `${base}/rpc` })),
        Effect.flip,
        Effect.fork
      )
      yield* Deferred.await(first)
      // And an RPC debug stream (AllEvents), open once an event of a run started after it arrives.
      const firstWide = yield* Deferred.make<void>()
      const wideStream = yield* RunstreamClient.RunstreamClient.pipe(
        Effect.flatMap((client) => Stream.runForEach(client.allEvents({ task: "demo.echo" }), () => Deferred.succeed(firstWide, undefined))),
        Effect.provide(RunstreamClient.layer({ url: `${base}/rpc` })),
        Effect.flip,
        Effect.fork
      )
      yield* post("/v1/runs", { task: "demo.echo", input: { message: "live?" } }).pipe(
        Effect.provideService(BaseUrl, base),
        Effect.zipRight(Deferred.await(firstWide).pipe(Effect.timeoutOption("1 second"))),
        Effect.repeat({ until: Option.isSome })
      )
      yield* Scope.close(scope, Exit.void).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => "the server did not stop" }))
      const frames = yield* Fiber.join(reading)
      expect(frames[0]?.retry).toBe(3000)
      // The RPC streams end, told why.
      expect((yield* Fiber.join(rpcStream))._tag).toBe("ShuttingDown")
      expect((yield* Fiber.join(wideStream))._tag).toBe("ShuttingDown")
      const address = Context.get(context, HttpServer.HttpServer).address
      expect(address._tag).toBe("TcpAddress")
      const after = yield* Effect.either(Effect.tryPromise(() => fetch(`${base}/healthz`)))
      expect(after._tag).toBe("Left")
    }))
})

describe("HTTP API: request log", () => {
  const requests = Effect.runSync(Queue.unbounded<string>())
  const capture = Logger.add(Logger.make(({ logLevel, message }) => {
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    if (text === "Sent HTTP response") Queue.unsafeOffer(requests, logLevel.label)
  }))
  const logged = Layer.effect(BaseUrl, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
    Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1" })),
    Layer.provideMerge(RunstreamTest.layer({ tasks: Demo.all, workers: false })),
    Layer.provide(Layer.merge(capture, Logger.minimumLogLevel(LogLevel.All)))
  )
  layer(logged, { excludeTestServices: true })((it) => {
    it.effect("logs each answered request at debug level, not info", () =>
      Effect.gen(function*() {
        expect((yield* call("/v1/runs")).status).toBe(200)
        // Written once the response is sent: waited for.
        expect(yield* Queue.take(requests)).toBe("DEBUG")
      }))
  })
})
