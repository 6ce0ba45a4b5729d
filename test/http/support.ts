/**
 * The HTTP server on a test program (fresh database, port 0) and a fetch-based
 * client for it.
 */
import { HttpServer } from "@effect/platform"
import { Context, Effect, Layer, Logger, LogLevel, Queue, Schema, Stream } from "effect"
import * as Demo from "../../src/demo/tasks.ts"
import * as Server from "../../src/http/Server.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import * as Task from "../../src/Task.ts"
import * as Sse from "./sse.ts"

/** Steps released by the test, one per `step` event the stepper emits. */
export class Gate extends Context.Tag("test/http/Gate")<Gate, Queue.Queue<void>>() {}

/** Emits one `step` event each time the test opens the gate. */
export const Stepper = Task.make("test.stepper", {
  input: Schema.Struct({ steps: Schema.Int }),
  output: Schema.Struct({ steps: Schema.Int }),
  run: ({ steps }, ctx) =>
    Effect.gen(function*() {
      const gate = yield* Gate
      for (let i = 1; i <= steps; i++) {
        yield* Queue.take(gate)
        yield* ctx.emit("step", { i })
      }
      return { steps }
    })
})

/** Takes a record of numbers: an input can have as many faults as keys. */
export const Numbers = Task.make("test.numbers", {
  input: Schema.Record({ key: Schema.String, value: Schema.Number }),
  output: Schema.Void,
  run: () => Effect.void
})

/** The middle of a three-run tree: a child of `TreeRoot`, the parent of an echo (its grandchild). */
export const TreeMiddle = Task.make("test.tree-middle", {
  input: Schema.Unknown,
  output: Schema.Unknown,
  run: (_, ctx) => Effect.flatMap(ctx.start(Demo.Echo, { leaf: true }, { name: "leaf" }), ctx.await)
})

/** The root of a three-run tree (root → `TreeMiddle` → echo): it ends once the whole tree has. */
export const TreeRoot = Task.make("test.tree", {
  input: Schema.Unknown,
  output: Schema.Unknown,
  run: (_, ctx) => Effect.flatMap(ctx.start(TreeMiddle, {}, { name: "middle" }), ctx.await)
})

export const tasks = [...Demo.all, Stepper, Numbers, TreeMiddle, TreeRoot] as const

/** A queue with limits, as `GET /v1/tasks` lists it (no worker of the program serves it). */
export const queues = { mail: { concurrency: { limit: 1 }, rateLimit: { limit: 100, period: "1 minute" } } } as const

/** Logs of the server under test above `Info` only. */
export const quiet = Logger.minimumLogLevel(LogLevel.Warning)

/** The base URL of the server under test. */
export class BaseUrl extends Context.Tag("test/http/BaseUrl")<BaseUrl, string>() {}

/** The API on a fresh program with the demo tasks and `Stepper`, on a free port. */
export const program = (overrides: Partial<Server.ServerOptions> = {}) =>
  Layer.effect(BaseUrl, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
    Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1", ...overrides })),
    Layer.provideMerge(RunstreamTest.layer({ tasks, workers: { lease: "30 seconds", shutdownGrace: "1 second" }, queues })),
    Layer.provideMerge(Layer.effect(Gate, Queue.unbounded<void>())),
    Layer.provide(quiet)
  )

export interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: any
}

/** A request to the server under test; the body read as JSON (or null when empty). */
export const call = (path: string, init: RequestInit = {}) =>
  Effect.flatMap(BaseUrl, (base) =>
    Effect.promise(async (signal): Promise<Answer> => {
      const response = await fetch(`${base}${path}`, { signal, ...init })
      const text = await response.text()
      return { status: response.status, headers: response.headers, body: text === "" ? null : JSON.parse(text) }
    }))

/** `POST` of a JSON body. */
export const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  call(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })

/** Opens a response and hands it over unread (event streams); it is aborted when the scope closes. */
export const open = (path: string, headers: Record<string, string> = {}) =>
  Effect.flatMap(BaseUrl, (base) =>
    Effect.acquireRelease(
      Effect.sync(() => new AbortController()),
      (controller) => Effect.sync(() => controller.abort())
    ).pipe(
      Effect.flatMap((controller) =>
        Effect.promise(() => fetch(`${base}${path}`, { headers: { accept: "text/event-stream", ...headers }, signal: controller.signal }))
      )
    ))

/**
 * Follows an event stream frame by frame: `next` is the next event frame
 * (failing with `None` at the end of the stream). The connection closes with the scope.
 */
export const follow = (path: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const response = yield* open(path, headers)
    const frames = yield* Stream.toQueueOfElements(Sse.events(response.body!))
    return { response, next: Effect.flatten(Queue.take(frames)) }
  })
