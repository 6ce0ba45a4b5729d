/**
 * Tasks and helpers shared by the core tests.
 */
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Queue, Ref, Schema } from "effect"
import type { RunId } from "../../src/domain/Ids.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import * as Task from "../../src/Task.ts"

/** Steps released by the test, one per event the stepper emits. */
export class Gate extends Context.Tag("test/Gate")<Gate, Queue.Queue<void>>() {}

/** Which runs this program's workers executed. */
export class Executed extends Context.Tag("test/Executed")<Executed, Ref.Ref<ReadonlyArray<RunId>>>() {}

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

/** Records its run id in the program's `Executed`, emits `n` events `concurrency` at a time. */
export const Burst = Task.make("test.burst", {
  input: Schema.Struct({ n: Schema.Int, concurrency: Schema.Int }),
  output: Schema.Struct({ n: Schema.Int }),
  run: ({ concurrency, n }, ctx) =>
    Effect.gen(function*() {
      const executed = yield* Executed
      yield* Ref.update(executed, (ids) => [...ids, ctx.runId])
      yield* Effect.forEach(
        Array.from({ length: n }, (_, i) => i + 1),
        (i) => ctx.emit("burst", { i }),
        { concurrency, discard: true }
      )
      return { n }
    })
})

/** Emits, all at once (one append, one outbox row), one event per size: `{ pad }` of about that many bytes. */
export const Sized = Task.make("test.sized", {
  input: Schema.Struct({ sizes: Schema.Array(Schema.Int) }),
  output: Schema.Struct({ n: Schema.Int }),
  run: ({ sizes }, ctx) =>
    Effect.as(
      Effect.forEach(sizes, (size, i) => ctx.emit("sized", { i, pad: "x".repeat(size) }), {
        concurrency: "unbounded",
        discard: true
      }),
      { n: sizes.length }
    )
})

export const testServices = Layer.mergeAll(
  Layer.effect(Gate, Queue.unbounded<void>()),
  Layer.effect(Executed, Ref.make<ReadonlyArray<RunId>>([]))
)

/**
 * A whole program with the test tasks. The lease is long: these tests are not
 * about leases (test/queue/leases.test.ts is), and on a loaded machine a
 * heartbeat can come seconds late — with a 3 s lease, a test:repeat run saw a
 * run reclaimed and retried in the middle of a test counting its events.
 */
export const program = (options: Omit<RunstreamTest.Options<readonly []>, "tasks"> = {}) =>
  RunstreamTest.layer({
    tasks: [Stepper, Burst, Sized] as const,
    reclaimInterval: "200 millis",
    ...options,
    workers: options.workers === false ? false : {
      lease: "30 seconds",
      pollInterval: "500 millis",
      shutdownGrace: "1 second",
      ...options.workers
    }
  }).pipe(Layer.provideMerge(testServices))

/** `SELECT current_database()` of this program's pool. */
export const currentDatabase = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(sql<{ name: string }>`SELECT current_database() AS name`, (rows) => rows[0]!.name))
