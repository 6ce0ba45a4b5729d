import { FetchHttpClient, HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { RpcClient } from "@effect/rpc"
import { SqlError } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Chunk, DateTime, Effect, Layer, Stream } from "effect"
import { createServer } from "node:http"
import * as Demo from "../../src/demo/tasks.ts"
import {
  AwaitTimeout,
  IdempotencyConflict,
  InvalidCursor,
  InvalidInput,
  RunAlreadyFinished,
  RunNotFound,
  TokensDisabled,
  UnknownTask
} from "../../src/domain/Errors.ts"
import type { RunEvent } from "../../src/domain/RunEvent.ts"
import * as ReadTokens from "../../src/http/ReadTokens.ts"
import * as Streams from "../../src/http/Streams.ts"
import * as RpcServer from "../../src/rpc/RpcServer.ts"
import * as RunstreamClient from "../../src/rpc/RunstreamClient.ts"
import { RunstreamRpcs, Unavailable } from "../../src/rpc/RunstreamRpcs.ts"
import { Runs } from "../../src/Runs.ts"
import { Schedules } from "../../src/schedules/Schedules.ts"
import * as Stats from "../../src/Stats.ts"
import * as QueueLimits from "../../src/queue/QueueLimits.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"

const apiKey = "test-key"

/** `POST /rpc` on a real HTTP server (port 0), behind a bearer-token check like the API's. */
const RpcHttpServer = Layer.unwrapScoped(Effect.map(RpcServer.httpApp, (app) => {
  const authorized = Effect.flatMap(
    HttpServerRequest.HttpServerRequest,
    (request) =>
      request.headers["authorization"] === `Bearer ${apiKey}`
        ? app
        : Effect.succeed(HttpServerResponse.unsafeJson({ error: { code: "Unauthorized" } }, { status: 401 }))
  )
  return HttpRouter.empty.pipe(HttpRouter.post("/rpc", authorized), HttpServer.serve())
})).pipe(
  Layer.provide(Streams.layer({ maxStreams: 1000 })),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

const rpcUrl = HttpServer.addressFormattedWith((address) => Effect.succeed(`${address}/rpc`))

const clientLayer = (key: string | undefined) =>
  Layer.unwrapEffect(Effect.map(rpcUrl, (url) => RunstreamClient.layer({ url, apiKey: key })))

const types = (events: Chunk.Chunk<RunEvent>) => Chunk.toArray(events).map((event) => event.type)
const seqs = (events: Chunk.Chunk<RunEvent>) => Chunk.toArray(events).map((event) => event.seq)
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

describe("RPC over HTTP", () => {
  layer(
    clientLayer(apiKey).pipe(
      Layer.provideMerge(RpcHttpServer),
      Layer.provideMerge(Layer.merge(Stats.layer(), ReadTokens.layer(undefined))),
      Layer.provideMerge(RunstreamTest.layer({ tasks: Demo.all }))
    ),
    { excludeTestServices: true }
  )((it) => {
    it.effect("streams a run from run.queued to run.succeeded with seq 1..n", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const { created, run } = yield* client.start("demo.count", { to: 5 })
        expect(created).toBe(true)
        const events = yield* Stream.runCollect(client.events(run.id))
        expect(seqs(events)).toEqual(range(1, 8))
        expect(types(events)).toEqual(["run.queued", "run.started", ...Array(5).fill("tick"), "run.succeeded"])
        expect(Chunk.toArray(events).slice(2, 7).map((event) => event.data)).toEqual(range(1, 5).map((n) => ({ n })))
        const done = yield* client.get(run.id)
        expect(done.status).toBe("succeeded")
        expect(done.output).toEqual({ count: 5 })
      }))

    it.effect("serves concurrent event streams on one client, each complete", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const counts = [1, 3, 10, 25]
        const streams = yield* Effect.forEach(
          counts,
          (to) =>
            client.start(Demo.Count, { to, delayMs: 2 }).pipe(
              Effect.flatMap(({ run }) => Stream.runCollect(client.events(run.id)))
            ),
          { concurrency: "unbounded" }
        )
        streams.forEach((events, i) => expect(seqs(events)).toEqual(range(1, counts[i]! + 3)))
      }))

    it.effect("resumes a stream from a cursor with exactly the rest", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const { run } = yield* client.start("demo.count", { to: 6, delayMs: 20 })
        const head = yield* Stream.runCollect(Stream.take(client.events(run.id), 4))
        expect(seqs(head)).toEqual([1, 2, 3, 4])
        const rest = yield* Stream.runCollect(client.events(run.id, { after: 4 }))
        expect(seqs(rest)).toEqual(range(5, 9))
        expect(types(rest)).toEqual(["tick", "tick", "tick", "tick", "run.succeeded"])
        expect(Chunk.size(yield* Stream.runCollect(client.events(run.id, { after: 9 })))).toBe(0)
      }))

    it.effect("pages the log with readEvents", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const { run } = yield* client.start("demo.count", { to: 4 })
        yield* client.awaitCompletion(run.id, { timeout: "15 seconds" })
        const first = yield* client.readEvents(run.id, { limit: 3 })
        expect(seqs(Chunk.fromIterable(first.events))).toEqual([1, 2, 3])
        const second = yield* client.readEvents(run.id, { after: first.nextAfter })
        expect(seqs(Chunk.fromIterable(second.events))).toEqual([4, 5, 6, 7])
        const end = yield* client.readEvents(run.id, { after: second.nextAfter })
        expect(end).toEqual({ events: [], nextAfter: 7 })
      }))

    it.effect("gets, lists with a cursor, and returns the same run for a repeated idempotency key", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const started = yield* Effect.forEach(range(1, 3), () => client.start(Demo.Flaky, { failures: 0 }))
        const ids = started.map(({ run }) => run.id).sort()
        const done = yield* client.awaitCompletion(ids[0]!)
        expect(done.status).toBe("succeeded")
        expect(done.output).toEqual({ attempts: 1 })

        const page1 = yield* client.list({ task: "demo.flaky", limit: 2 })
        expect(page1.runs).toHaveLength(2)
        expect(page1.nextCursor).not.toBeNull()
        const page2 = yield* client.list({ task: "demo.flaky", limit: 2, cursor: page1.nextCursor! })
        expect(page2.runs).toHaveLength(1)
        expect(page2.nextCursor).toBeNull()
        expect([...page1.runs, ...page2.runs].map((run) => run.id).sort()).toEqual(ids)

        const once = yield* client.start("demo.echo", "hello", { idempotencyKey: "rpc-idem" })
        const twice = yield* client.start("demo.echo", "hello", { idempotencyKey: "rpc-idem" })
        expect(once.created).toBe(true)
        expect(twice.created).toBe(false)
        expect(twice.run.id).toBe(once.run.id)
        const conflict = yield* Effect.flip(client.start("demo.echo", "again", { idempotencyKey: "rpc-idem" }))
        expect(conflict).toBeInstanceOf(IdempotencyConflict)
        expect(conflict).toMatchObject({ idempotencyKey: "rpc-idem", runId: once.run.id })
        expect((yield* client.awaitCompletion(once.run.id)).output).toBe("hello")
      }))

    it.effect("cancels a waiting run at once and a running one through its worker", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const runAt = DateTime.add(yield* DateTime.now, { hours: 1 })
        const waiting = yield* client.start(Demo.Sleep, { ms: 60_000 }, { runAt })
        expect(waiting.run.status).toBe("queued")
        const cancelled = yield* client.cancel(waiting.run.id)
        expect(cancelled.status).toBe("cancelled")
        const again = yield* Effect.flip(client.cancel(waiting.run.id))
        expect(again).toBeInstanceOf(RunAlreadyFinished)
        expect(types(yield* Stream.runCollect(client.events(waiting.run.id)))).toEqual(["run.queued", "run.cancelled"])

        const { run } = yield* client.start(Demo.Sleep, { ms: 60_000 })
        yield* client.events(run.id).pipe(Stream.takeUntil((event) => event.type === "run.started"), Stream.runDrain)
        yield* client.cancel(run.id)
        const finished = yield* client.awaitCompletion(run.id, { timeout: "15 seconds" })
        expect(finished.status).toBe("cancelled")
      }))

    it.effect("sees a started run's live events on the debug stream", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        // The debug stream is not replayed: a run that emits until cancelled is
        // seen once the subscription exists, whenever that is.
        const { run } = yield* client.start("demo.count", { to: 1_000_000, delayMs: 5 })
        const seen = yield* client.allEvents({ runId: run.id }).pipe(
          Stream.zipWithIndex,
          Stream.mapEffect(([event, i]) => i === 0 ? Effect.as(client.cancel(run.id), event) : Effect.succeed(event)),
          Stream.takeUntil((event) => event.type === "run.cancelled"),
          Stream.runCollect
        )
        const all = Chunk.toArray(seen)
        expect(all.every((event) => event.runId === run.id)).toBe(true)
        expect(seqs(seen)).toEqual(range(all[0]!.seq, all[0]!.seq + all.length - 1))
        expect(all.at(-1)!.type).toBe("run.cancelled")
      }))

    it.effect("folds debounced starts into one run, and says so", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const debounce = { key: "rpc-debounce", delayMs: 3_600_000, mode: "leading" } as const
        const first = yield* client.start("demo.echo", "first", { debounce })
        const second = yield* client.start(Demo.Echo, "second", { debounce })
        expect(first).toMatchObject({ created: true })
        expect(first.folded).toBeUndefined()
        expect(second).toMatchObject({ created: false, folded: true })
        expect(second.run.id).toBe(first.run.id)
        expect(second.run.input).toBe("first")
        const refused = yield* Effect.flip(client.start("demo.echo", 1, { debounce: { key: "k", delayMs: 0 } }))
        expect(refused).toBeInstanceOf(InvalidInput)
        expect(refused.message).toContain("delayMs")
        yield* client.cancel(first.run.id)
      }))

    it.effect("answers with the domain's typed errors", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const unknownId = "0190a6d2-8f3c-7000-8000-000000000000"

        const notFound = yield* Effect.flip(client.get(unknownId))
        expect(notFound).toBeInstanceOf(RunNotFound)
        expect(notFound).toMatchObject({ runId: unknownId })
        expect(yield* Effect.flip(client.get("not-a-run-id"))).toBeInstanceOf(RunNotFound)
        expect(yield* Effect.flip(client.cancel(unknownId))).toBeInstanceOf(RunNotFound)
        expect(yield* Effect.flip(Stream.runDrain(client.events(unknownId)))).toBeInstanceOf(RunNotFound)

        const unknownTask = yield* Effect.flip(client.start("no.such.task", {}))
        expect(unknownTask).toBeInstanceOf(UnknownTask)
        expect(unknownTask).toMatchObject({ task: "no.such.task" })

        const badInput = yield* Effect.flip(client.start("demo.count", { to: -1 }))
        expect(badInput).toBeInstanceOf(InvalidInput)
        expect(badInput.message).toContain("demo.count")
        expect(badInput).toMatchObject({ issues: [{ path: ["to"], message: expect.stringContaining("non-negative") }] })
        const typedBadInput = yield* Effect.flip(client.start(Demo.Count, { to: -1 }))
        expect(typedBadInput).toBeInstanceOf(InvalidInput)
        expect(typedBadInput).toMatchObject({ issues: [{ path: ["to"] }] })
        expect(yield* Effect.flip(client.start("demo.echo", 1, { maxAttempts: 0 }))).toBeInstanceOf(InvalidInput)
        expect(yield* Effect.flip(client.list({ limit: 0 }))).toBeInstanceOf(InvalidInput)
        expect(yield* Effect.flip(client.list({ cursor: "not-a-cursor" }))).toBeInstanceOf(InvalidCursor)
        expect(yield* Effect.flip(Stream.runDrain(client.allEvents({ runId: "x" })))).toBeInstanceOf(InvalidInput)

        const { run } = yield* client.start(Demo.Sleep, { ms: 60_000 })
        expect(yield* Effect.flip(Stream.runDrain(client.events(run.id, { after: -1 })))).toBeInstanceOf(InvalidInput)
        expect(yield* Effect.flip(Stream.runDrain(client.events(run.id, { after: 100 })))).toBeInstanceOf(InvalidInput)
        const timeout = yield* Effect.flip(client.awaitCompletion(run.id, { timeout: "50 millis" }))
        expect(timeout).toBeInstanceOf(AwaitTimeout)
        yield* client.cancel(run.id)
      }))

    it.effect("replays a run, answers stats and tasks, filters the list, and says when tokens are disabled", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        // A queue no worker serves: the runs stay queued.
        const { run } = yield* client.start(Demo.Echo, { hello: "replay" }, { queue: "rpc-replay" })
        const replayed = yield* client.replay(run.id, { priority: 3 })
        expect(replayed.created).toBe(true)
        expect(replayed.run).toMatchObject({ task: "demo.echo", input: { hello: "replay" }, queue: "rpc-replay", priority: 3, replayOf: run.id })
        expect(yield* Effect.flip(client.replay("0190a6d2-8f3c-7000-8000-000000000000"))).toBeInstanceOf(RunNotFound)
        expect(yield* Effect.flip(client.replay(run.id, { maxAttempts: 0 }))).toBeInstanceOf(InvalidInput)

        const page = yield* client.list({ queue: "rpc-replay", q: run.id.slice(0, 8), createdAfter: "2000-01-01T00:00:00Z" })
        expect(page.runs.map((r) => r.id)).toContain(run.id)
        expect(page.runs.every((r) => r.queue === "rpc-replay")).toBe(true)
        const badPrefix = yield* Effect.flip(client.list({ q: "XYZ" }))
        expect(badPrefix).toBeInstanceOf(InvalidInput)
        expect(badPrefix).toMatchObject({ issues: [{ path: ["q"] }] })
        expect(yield* Effect.flip(client.list({ createdBefore: "soon" }))).toMatchObject({ _tag: "InvalidInput", message: expect.stringContaining("createdBefore") })

        const stats = yield* client.stats()
        expect(stats.finishedPerMinute).toHaveLength(60)
        expect(stats.queues.find((q) => q.queue === "rpc-replay")).toMatchObject({ waiting: 2, running: 0 })
        const { tasks } = yield* client.tasks()
        expect(tasks.map((t) => t.name)).toEqual(Demo.all.map((t) => t.name))

        // This server has no token secret.
        expect(yield* Effect.flip(client.createToken({ runId: run.id, ttlSeconds: 60 }))).toBeInstanceOf(TokensDisabled)
        expect(yield* Effect.flip(client.createToken({ ttlSeconds: 60 }))).toBeInstanceOf(InvalidInput)
      }))

    it.scoped("checks start options on the server too", () =>
      Effect.gen(function*() {
        // The raw RPC client skips RunstreamClient's own check of the options.
        const raw = yield* RpcClient.make(RunstreamRpcs)
        const error = yield* Effect.flip(raw.Start({ task: "demo.echo", input: 1, options: { maxAttempts: 0 } }))
        expect(error).toBeInstanceOf(InvalidInput)
        expect(error.message).toContain("maxAttempts")
      }).pipe(
        Effect.provide(Layer.unwrapEffect(Effect.map(rpcUrl, (url) => RunstreamClient.layerProtocol({ url, apiKey })))),
        Effect.provide(FetchHttpClient.layer)
      ))

    it.effect("fails a call the server refuses with Unauthorized instead of waiting forever", () =>
      Effect.gen(function*() {
        const anonymous = yield* RunstreamClient.RunstreamClient
        const error = yield* Effect.flip(anonymous.list())
        expect(error).toBeInstanceOf(RunstreamClient.Unauthorized)
      }).pipe(Effect.provide(clientLayer(undefined))))
  })
})

describe("RPC without a database", () => {
  const secret = "password authentication failed for user \"runstream\" at db.internal:5432"
  const down = Effect.fail(new SqlError.SqlError({ cause: new Error(secret), message: secret }))
  // Only the operations exercised here: each fails as a lost database would.
  const RunsDown = Layer.succeed(Runs, {
    get: () => down,
    events: () => Stream.fromEffect(down)
  } as unknown as Runs["Type"])

  const StatsDown = Layer.succeed(Stats.Stats, { read: down })
  const SchedulesDown = Layer.succeed(Schedules, { get: () => down } as unknown as Schedules["Type"])
  layer(
    clientLayer(apiKey).pipe(
      Layer.provideMerge(RpcHttpServer),
      Layer.provide([RunsDown, StatsDown, SchedulesDown, ReadTokens.layer(undefined), Task.layerRegistry(), QueueLimits.layer()])
    ),
    {
    excludeTestServices: true
  })((it) => {
    it.effect("answers Unavailable and keeps the database error to itself", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const runId = "0190a6d2-8f3c-7000-8000-000000000000"
        const error = yield* Effect.flip(client.get(runId))
        expect(error).toBeInstanceOf(Unavailable)
        expect(JSON.stringify(error)).not.toContain("db.internal")
        expect(error.message).not.toContain("db.internal")
        expect(yield* Effect.flip(Stream.runDrain(client.events(runId)))).toBeInstanceOf(Unavailable)
      }))
  })
})
