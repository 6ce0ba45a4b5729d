/**
 * `StreamAdmissionServer`: requests that may open an event stream are set up
 * a few at a time, in arrival order; the others wait as Node's own request
 * objects. Against a real Node server and client, with a listener standing in
 * for the API (it answers a stream request's head when told to).
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Deferred, Effect, Queue, Schedule } from "effect"
import { request as httpRequest, type ServerResponse } from "node:http"
import { type AddressInfo, connect, type Socket } from "node:net"
import { StreamAdmissionServer, type StreamAdmissionOptions } from "../../src/http/StreamAdmission.ts"
import { BaseUrl, Gate, post, program } from "./support.ts"

interface Arrival {
  readonly name: string
  readonly response: ServerResponse
}

/** A gated server whose listener offers each request to `arrivals` and answers `/healthz` at once. */
const server = (options: StreamAdmissionOptions) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const arrivals = yield* Queue.unbounded<Arrival>()
      const server = new StreamAdmissionServer(options)
      server.on("request", (request, response: ServerResponse) => {
        if (request.url === "/healthz") return void response.end("ok")
        Queue.unsafeOffer(arrivals, { name: String(request.headers["x-name"]), response })
      })
      yield* Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void)))
      return { server, arrivals, port: (server.address() as AddressInfo).port }
    }),
    ({ server }) => Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  )

/** A request; its status and body once it ends. */
const send = (port: number, name: string, path = "/rpc") =>
  Effect.gen(function*() {
    const status = yield* Deferred.make<{ readonly status: number; readonly body: string }>()
    const request = httpRequest({ host: "127.0.0.1", port, path, method: path === "/rpc" ? "POST" : "GET", headers: { "x-name": name }, agent: false })
    request.on("error", () => {})
    request.on("response", (response) => {
      let body = ""
      response.on("data", (chunk: Buffer) => (body += chunk.toString()))
      response.on("end", () => Deferred.unsafeDone(status, Effect.succeed({ status: response.statusCode!, body })))
    })
    request.end()
    yield* Effect.addFinalizer(() => Effect.sync(() => request.destroy()))
    return { status: Deferred.await(status), abort: Effect.sync(() => request.destroy()) }
  })

/** Until the server holds `count` stream requests (in setup or waiting). */
const arrived = (server: StreamAdmissionServer, count: number) =>
  Effect.repeat(Effect.sync(() => server.setups.inProgress + server.setups.waiting), {
    until: (n) => n >= count,
    schedule: Schedule.spaced("5 millis")
  })

const names = (arrivals: ReadonlyArray<Arrival>) => arrivals.map((arrival) => arrival.name)

describe("StreamAdmissionServer", () => {
  it.scopedLive("sets up stream requests a few at a time, in arrival order, and holds no other request", () =>
    Effect.gen(function*() {
      const gated = yield* server({ concurrency: 2, maxWaiting: 100, setupTimeoutMs: 60_000 })
      const { arrivals, port } = gated
      for (const [i, name] of ["a", "b", "c", "d", "e"].entries()) {
        yield* send(port, name)
        // In arrival order: the next is sent once the server has this one (in setup or waiting).
        yield* arrived(gated.server, i + 1)
      }
      const first = [yield* Queue.take(arrivals), yield* Queue.take(arrivals)]
      expect(names(first)).toEqual(["a", "b"])
      // The gate is full: a health check passes anyway, and no third stream request was let in.
      const health = yield* send(port, "health", "/healthz")
      expect((yield* health.status).status).toBe(200)
      expect(yield* Queue.size(arrivals)).toBe(0)
      // Each answered head lets the next one in.
      first[0]!.response.writeHead(200).end()
      expect((yield* Queue.take(arrivals)).name).toBe("c")
      first[1]!.response.writeHead(200).end()
      expect((yield* Queue.take(arrivals)).name).toBe("d")
    }))

  it.scopedLive("lets a request that waits on its client go after the setup timeout", () =>
    Effect.gen(function*() {
      const { arrivals, port } = yield* server({ concurrency: 1, maxWaiting: 100, setupTimeoutMs: 100 })
      yield* send(port, "slow")
      expect((yield* Queue.take(arrivals)).name).toBe("slow")
      // Never answered: the next is let in all the same.
      yield* send(port, "next")
      expect((yield* Queue.take(arrivals)).name).toBe("next")
    }))

  it.scopedLive("refuses with 503 server_busy past the waiting bound, and skips a waiting client that left", () =>
    Effect.gen(function*() {
      const gated = yield* server({ concurrency: 1, maxWaiting: 1, setupTimeoutMs: 60_000 })
      const { arrivals, port } = gated
      yield* send(port, "held")
      const held = yield* Queue.take(arrivals)
      const left = yield* send(port, "left")
      yield* arrived(gated.server, 2)
      const refused = yield* send(port, "refused")
      const answer = yield* refused.status
      expect(answer.status).toBe(503)
      expect(JSON.parse(answer.body).error.code).toBe("server_busy")
      // The waiting client leaves, and its place in line with it: the next one waits there, and is set up next.
      yield* left.abort
      yield* Effect.repeat(Effect.sync(() => gated.server.setups.waiting), { until: (n) => n === 0, schedule: Schedule.spaced("5 millis") })
      yield* send(port, "after")
      yield* arrived(gated.server, 2)
      held.response.writeHead(200).end()
      expect((yield* Queue.take(arrivals)).name).toBe("after")
    }))
})

describe("stream setups through the API's server", () => {
  layer(program({ streamSetups: 2 }), { excludeTestServices: true })((it) => {
    it.scoped("answers every one of 300 SSE clients of a run connecting at once, two set up at a time", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const { run } = (yield* post("/v1/runs", { task: "test.stepper", input: { steps: 1 } })).body
        const port = Number(new URL(base).port)
        // Each client: its first event (run.queued, seq 1) read off the raw socket.
        const firstEvents = yield* Effect.forEach(Array.from({ length: 300 }, (_, i) => i), () =>
          Effect.acquireRelease(
            Effect.async<Socket>((resume) => {
              const socket = connect(port, "127.0.0.1", () =>
                socket.write(`GET /v1/runs/${run.id}/events HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n`))
              let text = ""
              socket.on("data", (chunk: Buffer) => {
                text += chunk.toString()
                if (text.includes("id: 1\n")) resume(Effect.succeed(socket))
              })
            }),
            (socket) => Effect.sync(() => socket.destroy())
          ), { concurrency: "unbounded" }).pipe(
            Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error("a client was never answered") })
          )
        expect(firstEvents.length).toBe(300)
        yield* Queue.offer(yield* Gate, undefined)
      }))
  })
})
