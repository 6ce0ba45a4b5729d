/**
 * An OTLP/HTTP (JSON) collector stand-in on a free port of this process: each
 * request it receives (its path and parsed body) goes to a queue, answered 200.
 */
import { Effect, Queue } from "effect"
import { createServer } from "node:http"

export interface Received {
  readonly path: string
  readonly body: any
}

export const collector = Effect.gen(function*() {
  const received = yield* Queue.unbounded<Received>()
  const server = yield* Effect.acquireRelease(
    Effect.async<ReturnType<typeof createServer>>((resume) => {
      const server = createServer((request, response) => {
        let body = ""
        request.on("data", (chunk) => body += chunk)
        request.on("end", () => {
          Queue.unsafeOffer(received, { path: request.url ?? "", body: JSON.parse(body) })
          response.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )
  const address = server.address() as { port: number }
  return { endpoint: `http://127.0.0.1:${address.port}`, received }
})
