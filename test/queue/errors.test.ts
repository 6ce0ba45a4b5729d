import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Stream } from "effect"
import { Count, Echo } from "../../src/demo/tasks.ts"
import { makeRunId } from "../../src/domain/Ids.ts"
import { Runs, type StartRequest } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { rowCounts } from "./support.ts"

const program = RunstreamTest.layer({ tasks: [Echo, Count], workers: false })

describe.concurrent("refused requests", () => {
  it.live("an unknown run id gives RunNotFound on get, cancel, events, readEvents and awaitCompletion", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const runId = yield* makeRunId
      const errors = [
        yield* Effect.flip(runs.get(runId)),
        yield* Effect.flip(runs.cancel(runId)),
        yield* Effect.flip(Stream.runCollect(runs.events(runId))),
        yield* Effect.flip(runs.readEvents(runId, { after: 0 })),
        yield* Effect.flip(runs.awaitCompletion(runId, { timeout: "5 seconds" }))
      ]
      for (const error of errors) {
        expect(error._tag).toBe("RunNotFound")
        expect(error).toMatchObject({ runId })
      }
    }).pipe(Effect.provide(program)))

  it.live("input that fails the task's schema gives InvalidInput and writes nothing", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const before = yield* rowCounts
      const error = yield* Effect.flip(runs.startMany([{ task: Count.name, input: { to: -1 } }]))
      expect(error._tag).toBe("InvalidInput")
      expect(error.message).toContain("demo.count")
      const missing = yield* Effect.flip(runs.startMany([{ task: Count.name, input: "three" }]))
      expect(missing._tag).toBe("InvalidInput")
      expect(yield* rowCounts).toEqual(before)
    }).pipe(Effect.provide(program)))

  it.live("one bad request refuses the whole batch", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const before = yield* rowCounts
      const error = yield* Effect.flip(runs.startMany([
        { task: Echo.name, input: "fine" },
        { task: Count.name, input: { to: 1.5 } },
        { task: Echo.name, input: "also fine" }
      ]))
      expect(error._tag).toBe("InvalidInput")
      expect(yield* rowCounts).toEqual(before)
      const unknown = yield* Effect.flip(runs.startMany([{ task: Echo.name, input: 1 }, { task: "nope", input: 2 }]))
      expect(unknown._tag).toBe("UnknownTask")
      expect(yield* rowCounts).toEqual(before)
    }).pipe(Effect.provide(program)))

  it.live("an unregistered task gives UnknownTask and writes nothing", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const before = yield* rowCounts
      const error = yield* Effect.flip(runs.startMany([{ task: "no.such.task", input: {} }]))
      expect(error._tag).toBe("UnknownTask")
      expect(error).toMatchObject({ task: "no.such.task" })
      expect(yield* rowCounts).toEqual(before)
    }).pipe(Effect.provide(program)))

  it.live("start options outside their bounds give InvalidInput and write nothing", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const before = yield* rowCounts
      // What a caller without types (JSON, RPC) can send; StartOptions says each is refused.
      const bad: ReadonlyArray<[string, unknown]> = [
        ["maxAttempts 0", { maxAttempts: 0 }],
        ["maxAttempts 1.5", { maxAttempts: 1.5 }],
        ["priority 1.5", { priority: 1.5 }],
        ["priority beyond the bound", { priority: 2_000_000_000 }],
        ["timeoutMs 0", { timeoutMs: 0 }],
        ["queue with a space", { queue: "a b" }],
        ["empty idempotency key", { idempotencyKey: "" }]
      ]
      const outcomes = yield* Effect.forEach(bad, ([what, options]) =>
        Effect.map(
          Effect.exit(runs.startMany([{ task: Echo.name, input: what, options } as StartRequest])),
          (exit) => [what, Exit.match(exit, { onFailure: (cause) => Cause.squash(cause), onSuccess: () => "accepted" })] as const
        ))
      expect(outcomes.map(([what, outcome]) => [what, (outcome as { _tag?: string })._tag ?? outcome]))
        .toEqual(bad.map(([what]) => [what, "InvalidInput"]))
      expect(yield* rowCounts).toEqual(before)
    }).pipe(Effect.provide(program)))
})
