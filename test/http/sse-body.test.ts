/**
 * The body of an event-stream response (`Sse.body`): its order, its ends (the
 * messages end or fail, the server shuts down) and its keep-alive comments.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Queue, Stream, TestClock } from "effect"
import * as Sse from "../../src/http/Sse.ts"

const text = (chunks: Chunk.Chunk<Uint8Array>) => Chunk.toArray(chunks).map((bytes) => Buffer.from(bytes).toString("utf8")).join("")

const options = { keepAlive: "10 seconds", retry: "2 seconds", until: Effect.never, name: "test stream" } as const

describe("Sse.body", () => {
  it.effect("sends the retry hint, then every message in order, and ends with them", () =>
    Effect.gen(function*() {
      const body = Sse.body(Stream.make("a\n\n", "b\n\n", "c\n\n"), options)
      expect(text(yield* Stream.runCollect(body))).toBe("retry: 2000\n\na\n\nb\n\nc\n\n")
    }))

  it.effect("ends (without failing) after the messages before a failure", () =>
    Effect.gen(function*() {
      const messages = Stream.concat(Stream.make("a\n\n"), Stream.fail("the database went away"))
      expect(text(yield* Stream.runCollect(Sse.body(messages, options)))).toBe("retry: 2000\n\na\n\n")
    }))

  it.effect("ends when `until` completes, though the messages go on", () =>
    Effect.gen(function*() {
      const shutdown = yield* Deferred.make<void>()
      const messages = yield* Queue.unbounded<string>()
      yield* Queue.offer(messages, "a\n\n")
      const received = yield* Queue.unbounded<string>()
      const fiber = yield* Sse.body(Stream.fromQueue(messages), { ...options, until: Deferred.await(shutdown) }).pipe(
        Stream.runForEach((bytes) => Queue.offer(received, Buffer.from(bytes).toString("utf8"))),
        Effect.fork
      )
      let seen = ""
      while (!seen.includes("a\n\n")) seen += yield* Queue.take(received)
      yield* Deferred.succeed(shutdown, undefined)
      yield* Fiber.join(fiber)
      expect(seen).toBe("retry: 2000\n\na\n\n")
    }))

  it.effect("sends a comment after `keepAlive` of silence, and none while messages flow", () =>
    Effect.gen(function*() {
      const messages = yield* Queue.unbounded<string>()
      const received = yield* Queue.unbounded<string>()
      yield* Sse.body(Stream.fromQueue(messages), options).pipe(
        Stream.runForEach((bytes) => Queue.offer(received, Buffer.from(bytes).toString("utf8"))),
        Effect.fork
      )
      expect(yield* Queue.take(received)).toBe("retry: 2000\n\n")
      // A message every 6 s: never 10 s of silence, so no comment.
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("6 seconds")
        yield* Queue.offer(messages, `m${i}\n\n`)
        expect(yield* Queue.take(received)).toBe(`m${i}\n\n`)
      }
      yield* TestClock.adjust("10 seconds")
      expect(yield* Queue.take(received)).toBe(": keep-alive\n\n")
      expect(yield* Queue.size(received)).toBe(0)
    }))
})
