/**
 * `POST /rpc` (and the REST side's last gaps) against a hostile client with a
 * valid key: the refusals of issue 16, each against a real server.
 */
import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Logger, LogLevel, Queue, Stream } from "effect"
import * as diagnostics from "node:diagnostics_channel"
import { Agent, type ClientRequest, createServer, type IncomingMessage, request as httpRequest } from "node:http"
import { connect, type Socket } from "node:net"
import * as Demo from "../../src/demo/tasks.ts"
import * as ReadTokens from "../../src/http/ReadTokens.ts"
import * as Streams from "../../src/http/Streams.ts"
import * as TimeSlicedScheduler from "../../src/internal/TimeSlicedScheduler.ts"
import { RunstreamClient } from "../../src/rpc/index.ts"
import * as RpcServer from "../../src/rpc/RpcServer.ts"
import * as Stats from "../../src/Stats.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { BaseUrl, call, Gate, post, program } from "../http/support.ts"

/** What the server logged at level Error or above (a bad input must log none). */
const errors: Array<string> = []
const collectErrors = Logger.add(Logger.make(({ logLevel, message }) => {
  if (LogLevel.greaterThanEqual(logLevel, LogLevel.Error)) errors.push(String(message))
}))

interface RawAnswer {
  readonly status: number
  readonly text: string
}

/**
 * A `POST /rpc` with Node's client, which reads the answer while the body is
 * still being sent: `head` first, then `more()` for as long as the server
 * reads (an endless body) when given, else the body ends after `head`
 * (or never, with `end: false`). The request is destroyed once the answer ends.
 */
const rawPost = (head: string, options: { readonly more?: () => string; readonly end?: boolean } = {}) =>
  Effect.flatMap(BaseUrl, (base) =>
    Effect.async<RawAnswer>((resume) => {
      let open = true
      const request = httpRequest(`${base}/rpc`, { method: "POST", headers: { "content-type": "application/ndjson" } })
      request.on("error", () => {})
      request.on("response", (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () => {
          open = false
          request.destroy()
          resume(Effect.succeed({ status: response.statusCode!, text: Buffer.concat(chunks).toString() }))
        })
      })
      request.write(head)
      const more = options.more
      if (more !== undefined) {
        const pump = () => {
          while (open && request.write(more())) { /* until the socket's buffer is full */ }
          if (open) request.once("drain", pump)
        }
        pump()
      } else if (options.end !== false) {
        request.end()
      }
      return Effect.sync(() => {
        open = false
        request.destroy()
      })
    }).pipe(
      // The old protocol read the whole body before answering: without a limit here it would hang.
      Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("no answer within 10 seconds") }),
      Effect.orDie
    ))

/** An SSE connection held open (a slot of the stream budget) until the scope closes. */
const heldSse = Effect.flatMap(BaseUrl, (base) =>
  Effect.acquireRelease(
    Effect.sync(() => new AbortController()),
    (controller) => Effect.sync(() => controller.abort())
  ).pipe(Effect.flatMap((controller) =>
    Effect.promise(() => fetch(`${base}/v1/events`, { headers: { accept: "text/event-stream" }, signal: controller.signal }))
  )))

const line = (message: unknown) => `${JSON.stringify(message)}\n`
const request = (id: unknown, tag: string, payload: unknown, extra: Record<string, unknown> = { headers: [] }) =>
  line({ _tag: "Request", id, tag, payload, ...extra })

const errorCode = (answer: RawAnswer) => {
  try {
    return { status: answer.status, code: JSON.parse(answer.text)?.error?.code }
  } catch {
    return { status: answer.status, code: `not JSON: ${answer.text.slice(0, 100)}` }
  }
}

const messagesOf = (answer: RawAnswer): Array<any> =>
  answer.text.split("\n").filter((text) => text !== "").map((text) => JSON.parse(text))

const clientLayer = Layer.unwrapEffect(Effect.map(BaseUrl, (base) => RunstreamClient.layer({ url: `${base}/rpc` })))

const withClient = <A, E>(f: (client: RunstreamClient.RunstreamClient["Type"]) => Effect.Effect<A, E>) =>
  Effect.flatMap(RunstreamClient.RunstreamClient, f).pipe(Effect.provide(clientLayer))

const maxBodyBytes = 64 * 1024

describe("POST /rpc against hostile clients", () => {
  layer(program({ maxBodyBytes, maxRpcCalls: 4, maxStreams: 100 }).pipe(Layer.provide(collectErrors)), {
    excludeTestServices: true
  })((it) => {
    it.effect("ends the answer of a request with more calls in flight than allowed, without reading the rest of its body", () =>
      Effect.gen(function*() {
        let id = 0
        const allEvents = () => request(String(++id), "AllEvents", {})
        const answer = yield* rawPost(allEvents(), { more: allEvents })
        expect(answer.status).toBe(200)
        const messages = messagesOf(answer)
        expect(messages.at(-1)).toMatchObject({ _tag: "Defect" })
        expect(messages.at(-1).defect.message).toContain("too_many_calls")
        // The refusal came at the fifth call, not after the body was read.
        expect(id).toBeLessThan(100_000)
      }))

    it.effect("sends the status of a stream's answer at once, before its first event", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const status = yield* Effect.async<number>((resume) => {
          const req = httpRequest(`${base}/rpc`, { method: "POST", headers: { "content-type": "application/ndjson" } })
          req.on("error", () => {})
          req.on("response", (response) => resume(Effect.succeed(response.statusCode!)))
          req.end(request("1", "AllEvents", { task: "no.such.task" }))
          return Effect.sync(() => req.destroy())
        }).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("no status within 10 seconds") }), Effect.orDie)
        expect(status).toBe(200)
      }))

    it.effect("refuses a message over RUNSTREAM_MAX_BODY_BYTES as soon as it passes the limit", () =>
      Effect.gen(function*() {
        const head = `{"_tag":"Request","id":"1","tag":"Start","headers":[],"payload":{"task":"demo.echo","input":"`
        const endless = yield* rawPost(head, { more: () => "x".repeat(1024) })
        expect(errorCode(endless)).toEqual({ status: 413, code: "payload_too_large" })
        // No newline and no end either: the limit alone answers.
        const stalled = yield* rawPost(head + "x".repeat(2 * maxBodyBytes), { end: false })
        expect(errorCode(stalled)).toEqual({ status: 413, code: "payload_too_large" })
        expect((yield* call("/v1/runs")).body.runs).toEqual([])
      }))

    it.effect("refuses request ids that are not short decimal strings, before anything else", () =>
      Effect.gen(function*() {
        for (const id of ["1".repeat(21), "9".repeat(maxBodyBytes / 2), "abc", "-1", " 1", 7, null]) {
          const answer = yield* rawPost(request(id, "List", {}))
          expect.soft({ id: String(id).slice(0, 30), ...errorCode(answer) }).toEqual({
            id: String(id).slice(0, 30),
            status: 400,
            code: "invalid_rpc_message"
          })
        }
        const interrupt = yield* rawPost(line({ _tag: "Interrupt", requestId: "1".repeat(1000) }))
        expect(errorCode(interrupt)).toEqual({ status: 400, code: "invalid_rpc_message" })
        const ok = yield* rawPost(request("18446744073709551615", "List", {}))
        expect(ok.status).toBe(200)
        expect(messagesOf(ok)[0]).toMatchObject({ _tag: "Exit", requestId: "18446744073709551615", exit: { _tag: "Success" } })
      }))

    it.effect("stops reading a refused body of one-byte chunks after a few hundred of them", () =>
      Effect.gen(function*() {
        const port = Number(new URL(yield* BaseUrl).port)
        const mark = `one-byte-chunks-${Math.random()}`
        // The server's side of the connection, to read how much of it the server read.
        const serverSide = yield* Deferred.make<Socket>()
        const onRequest = (message: unknown) => {
          const { request, socket } = message as { request: IncomingMessage; socket: Socket }
          if (request.headers["x-test"] === mark) Deferred.unsafeDone(serverSide, Exit.succeed(socket))
        }
        diagnostics.subscribe("http.server.request.start", onRequest)
        yield* Effect.addFinalizer(() => Effect.sync(() => diagnostics.unsubscribe("http.server.request.start", onRequest)))
        // A call answered, then a bad line: the answer has begun, so the connection stays open `linger.ms` after its end.
        const refused = request("1", "List", {}) + request("x", "List", {})
        const frame = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`
        // 10,000 chunks of one newline each (60 KB on the wire), written for as long as the server reads.
        const newlines = Buffer.from(frame("\n").repeat(10_000))
        const { answer, written } = yield* Effect.async<{ answer: string; written: number }>((resume) => {
          const socket = connect(port, "127.0.0.1")
          let answer = ""
          let written = 0
          socket.on("data", (chunk) => answer += chunk.toString())
          socket.on("error", () => {})
          // The server closes the connection `linger.ms` after its answer.
          socket.on("close", () => resume(Effect.succeed({ answer, written })))
          socket.write(
            `POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ndjson\r\nTransfer-Encoding: chunked\r\nX-Test: ${mark}\r\n\r\n${frame(refused)}`
          )
          const pump = () => {
            while (!socket.destroyed && socket.write(newlines)) written += newlines.length
            if (!socket.destroyed) socket.once("drain", pump)
          }
          pump()
          return Effect.sync(() => socket.destroy())
        })
        expect(answer).toMatch(/^HTTP\/1.1 200/)
        expect(answer).toContain("invalid_rpc_message")
        // Dropping the rest of the body stops after 256 chunks, not after a MiB of them (6 MB on the wire).
        const read = (yield* Deferred.await(serverSide)).bytesRead
        expect(read).toBeLessThan(256 * 1024)
        expect(written).toBeGreaterThan(read)
      }).pipe(Effect.scoped), { timeout: 30_000 })

    it.effect("skips blank lines between messages, however many", () =>
      Effect.gen(function*() {
        const answer = yield* rawPost(`\n\n${request("1", "List", {})}${"\n".repeat(200_000)}\r\n${request("2", "List", {})}\n`)
        expect(answer.status).toBe(200)
        expect(messagesOf(answer).map((message) => message.requestId).sort()).toEqual(["1", "2"])
      }))

    it.effect("answers malformed messages with 400, not 500 nor an empty 200", () =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [string, string, number, string]> = [
          ["headers as an object", request("1", "List", {}, { headers: { a: "b" } }), 400, "invalid_rpc_message"],
          ["no headers", request("1", "List", {}, {}), 400, "invalid_rpc_message"],
          ["headers that are not pairs", request("1", "List", {}, { headers: [["a"]] }), 400, "invalid_rpc_message"],
          ["an unknown RPC", request("1", "Drop", {}), 400, "invalid_rpc_message"],
          ["an unknown _tag", line({ _tag: "Hello" }), 400, "invalid_rpc_message"],
          ["an array", line([1, 2]), 400, "invalid_rpc_message"],
          ["junk without a newline", "x".repeat(100), 400, "invalid_json"],
          ["an empty body", "", 400, "invalid_rpc_message"],
          ["only blank lines", "\n".repeat(100_000) + " \r\n\t\n", 400, "invalid_rpc_message"],
          ["2 MB of junk without a newline", "x".repeat(2 * 1024 * 1024), 413, "payload_too_large"],
          ["deep nesting", request("1", "Start", { task: "demo.echo", input: JSON.parse("[".repeat(100) + "]".repeat(100)) }), 400, "invalid_json"]
        ]
        for (const [name, body, status, code] of cases) {
          const answer = yield* rawPost(body)
          expect.soft({ name, ...errorCode(answer) }).toEqual({ name, status, code })
        }
        expect((yield* call("/v1/runs")).body.runs).toEqual([])
      }))

    it.effect("answers bad values with InvalidInput / 400, never as a database outage, and logs no error", () =>
      Effect.gen(function*() {
        errors.length = 0
        for (const runAt of ["0000-01-01T00:00:00Z", "-000001-01-01T00:00:00Z", "+010000-01-01T00:00:00Z", "+275760-09-13T00:00:00.000Z", "2024-02-30T00:00:00Z", "2023-02-29", "2024-01-01T24:00:00Z"]) {
          const answer = yield* post("/v1/runs", { task: "demo.echo", input: 1, runAt })
          expect.soft({ runAt, status: answer.status, code: answer.body?.error?.code }).toEqual({ runAt, status: 400, code: "invalid_input" })
          const viaRpc = yield* withClient((client) => Effect.flip(client.start("demo.echo", 1, { runAt } as never)))
          expect.soft({ runAt, tag: viaRpc._tag }).toEqual({ runAt, tag: "InvalidInput" })
        }
        const accepted = yield* post("/v1/runs", { task: "demo.echo", input: 1, runAt: "2024-02-29T12:00:00+01:00" })
        expect(accepted.status).toBe(201)
        expect(accepted.body.run.runAt).toBe("2024-02-29T11:00:00.000Z")

        const list = yield* withClient((client) => Effect.flip(client.list({ task: "a\u0000b" })))
        expect(list._tag).toBe("InvalidInput")
        // Past what a seq can be: 2^31 (seqs are Postgres integers; the database would refuse it with a 5xx) and 2^63.
        for (const after of [2147483648, 9223372036854775808]) {
          const page = yield* withClient((client) => Effect.flip(client.readEvents(accepted.body.run.id, { after })))
          expect.soft({ after, tag: page._tag }).toEqual({ after, tag: "InvalidInput" })
          const followed = yield* withClient((client) => Effect.flip(Stream.runDrain(client.events(accepted.body.run.id, { after }))))
          expect.soft({ after, tag: followed._tag }).toEqual({ after, tag: "InvalidInput" })
          for (const accept of ["application/json", "text/event-stream"]) {
            const rest = yield* call(`/v1/runs/${accepted.body.run.id}/events?after=${after}`, { headers: { accept } })
            expect.soft({ after, accept, status: rest.status, code: rest.body?.error?.code })
              .toEqual({ after, accept, status: 400, code: "invalid_input" })
          }
        }
        expect(errors).toEqual([])
        // Only the one valid start was written.
        expect((yield* call("/v1/runs")).body.runs.map((run: any) => run.id)).toEqual([accepted.body.run.id])
      }))

    it.effect("refuses a REST body at its first unknown key, naming that one", () =>
      Effect.gen(function*() {
        const body: Record<string, unknown> = { task: "demo.echo", input: 1 }
        for (let i = 0; i < 5_000; i++) body[`k${i}`] = i
        const answer = yield* post("/v1/runs", body)
        expect({ status: answer.status, code: answer.body.error.code }).toEqual({ status: 400, code: "invalid_input" })
        expect(answer.body.error.message).toContain("k0")
        expect(answer.body.error.message).not.toContain("k1")
      }))

    it.effect("answers 400, not 405, for a run id the router cannot take", () =>
      Effect.gen(function*() {
        for (const path of [`/v1/runs/${"a".repeat(101)}`, "/v1/runs/%zz", `/v1/runs/${"a".repeat(101)}/events`]) {
          const answer = yield* call(path)
          expect.soft({ path: path.slice(0, 20), status: answer.status, code: answer.body?.error?.code }).toEqual({
            path: path.slice(0, 20),
            status: 400,
            code: "invalid_input"
          })
        }
        expect((yield* call("/v1/runs/%zz/cancel", { method: "POST" })).status).toBe(400)
      }))

    it.effect("answers a start before refusing a bad line after it: no run is created unseen", () =>
      Effect.gen(function*() {
        const before = new Set((yield* call("/v1/runs")).body.runs.map((run: any) => run.id))
        for (const bad of [line({ _tag: "Hello" }), "x".repeat(100) + "\n", request("2", "Drop", {})]) {
          const answer = yield* rawPost(request("1", "Start", { task: "demo.echo", input: "seen" }) + bad)
          expect(answer.status).toBe(200)
          const messages = answer.text.trim().split("\n").map((text) => JSON.parse(text))
          // The start's exit first, then the refusal of the line after it.
          expect(messages.map((m) => m._tag)).toEqual(["Exit", "Defect"])
          expect(messages[0].exit._tag).toBe("Success")
          const created = messages[0].exit.value.run.id
          const runs = (yield* call("/v1/runs")).body.runs.map((run: any) => run.id).filter((id: string) => !before.has(id))
          expect(runs).toEqual([created])
          before.add(created)
        }
      }))
  })
})

describe("one budget of live streams for SSE and RPC", () => {
  layer(program({ maxStreams: 2 }), { excludeTestServices: true })((it) => {
    it.scoped("refuses SSE with 503 while RPC streams hold the budget, and RPC streams with TooManyStreams while SSE does", () =>
      Effect.gen(function*() {
        const client = Context.get(yield* Layer.build(clientLayer), RunstreamClient.RunstreamClient)
        const { run } = (yield* post("/v1/runs", { task: "test.stepper", input: { steps: 1 } })).body

        // RPC streams hold both slots (each has had its first event): SSE is refused.
        const rpcStreams = []
        for (let i = 0; i < 2; i++) {
          const first = yield* Deferred.make<void>()
          rpcStreams.push(yield* Effect.forkScoped(Stream.runForEach(client.events(run.id), () => Deferred.succeed(first, undefined))))
          yield* Deferred.await(first)
        }
        const refused = yield* call("/v1/events", { headers: { accept: "text/event-stream" } })
        expect({ status: refused.status, code: refused.body?.error?.code }).toEqual({ status: 503, code: "too_many_streams" })

        // The run finishes: the RPC streams end, and gave their slots back before they did.
        yield* Queue.offer(yield* Gate, undefined)
        yield* Fiber.joinAll(rpcStreams)

        // SSE holds both slots: RPC streams, and awaits, are refused with a typed error.
        expect((yield* heldSse).status).toBe(200)
        expect((yield* heldSse).status).toBe(200)
        const { run: other } = (yield* post("/v1/runs", { task: "test.stepper", input: { steps: 1 } })).body
        const held = yield* Effect.all([
          Effect.flip(Stream.runDrain(client.allEvents())),
          Effect.flip(Stream.runDrain(client.events(other.id))),
          Effect.flip(client.awaitCompletion(other.id))
        ]).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("an RPC stream was not refused") }), Effect.orDie)
        expect(held.map((error) => error._tag)).toEqual(["TooManyStreams", "TooManyStreams", "TooManyStreams"])
        yield* Queue.offer(yield* Gate, undefined)
      }))
  })

  // A program of its own: the test above gives its slots back as its connections close.
  layer(program({ maxStreams: 2 }), { excludeTestServices: true })((it) => {
    it.scoped("ends a request whose stream calls keep being refused for the budget (a flood of them never ended)", () =>
      Effect.gen(function*() {
        expect((yield* heldSse).status).toBe(200)
        expect((yield* heldSse).status).toBe(200)
        let id = 0
        const allEvents = () => request(String(++id), "AllEvents", {})
        const answer = yield* rawPost(allEvents(), { more: allEvents })
        expect(answer.status).toBe(200)
        const messages = messagesOf(answer)
        const refusals = messages.filter((message) => message._tag === "Exit")
        // RUNSTREAM_RPC_MAX_CALLS (16) refusals are answered, the next one ends the request.
        expect(refusals).toHaveLength(17)
        for (const refusal of refusals) expect(refusal.exit.cause.error._tag).toBe("TooManyStreams")
        expect(messages.at(-1)).toMatchObject({ _tag: "Defect" })
        expect(messages.at(-1).defect.message).toMatch(/^too_many_streams: more than 16 stream calls/)
        // Ended, not read on for as long as the client writes (what it wrote includes what the sockets buffer).
        expect(id).toBeLessThan(100_000)
      }))
  })
})

/**
 * Bodies shaped like the two fuzz cases of scenario 6 that went unanswered with
 * the reverted hand-read body and Node `Readable` answer (26a176d, d481a9f):
 * 10 KB in 5 lines, 1.9 MB in 4. Those exact bodies were not kept, and this
 * test passes against the reverted protocol too: it guards the per-call
 * admission (which pauses the reading of a body), not that hang.
 */
describe("bodies of several lines, some of them large (scenario 6's fuzz cases)", () => {
  // The default limit of a message, 1 MiB, as in the fault suite.
  layer(program(), { excludeTestServices: true })((it) => {
    it.effect("answers each: every call of a body of five lines (10 KB), and the calls before a line over the limit", () =>
      Effect.gen(function*() {
        const unknownRun = "00000000-0000-4000-8000-000000000000"
        // Stream calls that end at once (a bad filter, no such run) among the others, with and without a last newline.
        const tenKB = [
          request("1", "Get", { runId: "x".repeat(10_000) }),
          request("2", "AllEvents", { runId: "not a run id" }),
          request("3", "Events", { runId: unknownRun }),
          request("4", "AwaitCompletion", { runId: unknownRun, timeoutMs: 0 }),
          request("5", "List", {})
        ].join("")
        for (const body of [tenKB, tenKB.slice(0, -1)]) {
          const answer = yield* rawPost(body)
          expect(answer.status).toBe(200)
          expect(messagesOf(answer).filter((m) => m._tag === "Exit").map((m) => m.requestId).sort()).toEqual(["1", "2", "3", "4", "5"])
        }

        // A line of 1.9 MB (an id of as many digits) after two calls, then one more: the two are answered, then the refusal.
        const huge = request("9".repeat(1_900_000), "List", {})
        for (const body of [request("1", "List", {}) + request("2", "AllEvents", { runId: "x" }) + huge + request("3", "List", {})]) {
          const answer = yield* rawPost(body)
          expect(answer.status).toBe(200)
          const messages = messagesOf(answer)
          // The calls before it may be answered (those that write are: see the test of a start before a bad line).
          for (const m of messages.slice(0, -1)) expect(m).toMatchObject({ _tag: "Exit", requestId: expect.stringMatching(/^[12]$/) })
          expect(messages.at(-1)).toMatchObject({ _tag: "Defect" })
          expect(messages.at(-1).defect.message).toContain("payload_too_large")
        }
        // The same line first: nothing was answered yet, so it is a 413.
        const first = yield* rawPost(huge + request("1", "List", {}) + request("2", "AllEvents", {}) + request("3", "List", {}))
        expect(errorCode(first)).toEqual({ status: 413, code: "payload_too_large" })
        // Last, without its newline (the body's end hands it over).
        const last = yield* rawPost(request("1", "List", {}) + request("2", "AllEvents", { runId: "x" }) + request("3", "List", {}) + huge.slice(0, -1))
        expect(last.status).toBe(200)
        expect(messagesOf(last).at(-1).defect.message).toContain("payload_too_large")
        // A large line of its own last, without its newline.
        const tail = yield* rawPost(tenKB.split("\n").slice(0, 4).join("\n") + "\n" + request("6", "Get", { runId: "y".repeat(10_000) }).slice(0, -1))
        expect(tail.status).toBe(200)
        expect(messagesOf(tail).filter((m) => m._tag === "Exit").map((m) => m.requestId).sort()).toEqual(["1", "2", "3", "4", "6"])
      }))
  })
})

/**
 * Stream calls are admitted a few at a time, each set up in a scheduler turn
 * of its own. Counted, not timed: a probe request reads how many stream slots
 * are taken (one per `AllEvents` call set up), yields `turns` times (each
 * time behind what is queued), and reads again; meanwhile ten bodies of 16
 * `AllEvents` calls are being set up. Before, one step of the fiber reading a
 * body set up its 16 calls, and the probe's turn came after 16 setups or more
 * per body read ahead of it.
 */
describe("stream calls admitted a few at a time", () => {
  const streamSetups = 2
  const turns = 3
  const bodies = 10
  const callsPerBody = 16

  const ProbeServer = Layer.unwrapScoped(Effect.gen(function*() {
    const rpc = yield* RpcServer.makeHttpApp({ maxMessageBytes: 64 * 1024, maxCalls: callsPerBody + 1, streamSetups })
    const streams = yield* Streams.Streams
    const probe = Effect.gen(function*() {
      const before = yield* streams.active
      for (let i = 0; i < turns; i++) yield* Effect.yieldNow()
      return HttpServerResponse.unsafeJson({ before, after: yield* streams.active })
    })
    return HttpRouter.empty.pipe(HttpRouter.post("/rpc", rpc), HttpRouter.get("/probe", probe), HttpServer.serve())
  })).pipe(
    Layer.provideMerge(Streams.layer({ maxStreams: 1000 })),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
    // The production processes' scheduler (`Main.layerScheduler`).
    Layer.provide(Layer.setScheduler(TimeSlicedScheduler.make(10)))
  )

  layer(
    Layer.effect(BaseUrl, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
      Layer.provideMerge(ProbeServer),
      Layer.provideMerge(Layer.merge(Stats.layer(), ReadTokens.layer(undefined))),
      Layer.provideMerge(RunstreamTest.layer({ tasks: Demo.all }))
    ),
    { excludeTestServices: true }
  )((it) => {
    it.scoped("a request made meanwhile waits behind at most `streamSetups` setups a turn", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        // Each body ends with a `Tasks` call: its answer comes once the 16 before it are set up.
        const body = Array.from({ length: callsPerBody }, (_, i) => request(String(i + 1), "AllEvents", {})).join("") +
          request("0", "Tasks", {})
        const allSetUp = yield* Effect.all(Array.from({ length: bodies }, () => Deferred.make<void>()))
        const probed = yield* Deferred.make<{ readonly before: number; readonly after: number }>()
        // The probe's connection is open (and accepted) first: Node accepts one
        // connection per turn of its loop, so a probe on a new connection would
        // wait behind the bodies' and could come after every setup.
        const agent = yield* Effect.acquireRelease(Effect.sync(() => new Agent({ keepAlive: true, maxSockets: 1 })), (agent) => Effect.sync(() => agent.destroy()))
        yield* Effect.async<void>((resume) => {
          httpRequest(`${base}/probe`, { agent }, (response) => response.resume().on("end", () => resume(Effect.void))).end()
        })
        // The probe leaves as soon as the first call is set up (a body's answer begins), while the others are.
        const sendProbe = () => {
          const probe = httpRequest(`${base}/probe`, { agent })
          probe.on("response", (response) => {
            let text = ""
            response.on("data", (chunk: Buffer) => (text += chunk.toString()))
            response.on("end", () => Deferred.unsafeDone(probed, Effect.succeed(JSON.parse(text))))
          })
          probe.end()
          return probe
        }
        let probe: ClientRequest | undefined
        yield* Effect.acquireRelease(
          Effect.sync(() => {
            const sent: Array<ClientRequest> = allSetUp.map((done) => {
              const req = httpRequest(`${base}/rpc`, { method: "POST", agent: false, headers: { "content-type": "application/ndjson" } })
              req.on("error", () => {})
              req.on("response", (response) => {
                probe ??= sendProbe()
                let text = ""
                response.on("data", (chunk: Buffer) => {
                  text += chunk.toString()
                  if (text.includes(`"requestId":"0"`)) Deferred.unsafeDone(done, Effect.void)
                })
              })
              req.end(body)
              return req
            })
            return sent
          }),
          (sent) => Effect.sync(() => [...sent, probe].forEach((req) => req?.destroy()))
        )
        const { after, before } = yield* Deferred.await(probed)
        yield* Effect.forEach(allSetUp, Deferred.await, { discard: true })
        const total = bodies * callsPerBody
        expect(yield* (yield* Streams.Streams).active).toBe(total)
        // The probe came while the calls were being set up.
        expect(before).toBeLessThan(total)
        // A turn's worth per yield, and the setups already admitted when it first read
        // (they end during its first yield): 8. Before the per-call admission, 16-32.
        expect(after - before).toBeLessThanOrEqual((turns + 1) * streamSetups)
      }))
  })
})
