import { describe, expect, layer } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import { Runs } from "runstream"
import { RunstreamTest } from "runstream/testing"
import { Invoice, SendReceipt, tasks } from "../src/tasks.js"

describe("the shop's tasks", () => {
  // A whole program (queue, bus, relay, workers) on a fresh database of its own.
  layer(RunstreamTest.layer({ tasks }), { excludeTestServices: true })((it) => {
    it.effect("an invoice streams one event per line and totals the order", () =>
      Effect.gen(function*() {
        const runs = yield* Runs.Runs
        const run = yield* runs.start(Invoice, {
          orderId: "o-1",
          lines: [{ sku: "tea", quantity: 2, unitCents: 450 }, { sku: "cup", quantity: 1, unitCents: 1200 }]
        })
        const events = Chunk.toArray(yield* Stream.runCollect(runs.events(run.id)))
        expect(events.map((event) => event.type)).toEqual(["run.queued", "run.started", "line", "line", "run.succeeded"])
        expect(events.map((event) => event.seq)).toEqual([1, 2, 3, 4, 5])
        const done = yield* RunstreamTest.waitForRunCompletion(run.id)
        expect(done.output).toEqual({ orderId: "o-1", totalCents: 2100 })
      }))

    it.effect("a receipt to an impossible address fails once, without retries", () =>
      Effect.gen(function*() {
        const runs = yield* Runs.Runs
        const run = yield* runs.start(SendReceipt, { email: "nobody", orderId: "o-2" })
        const done = yield* RunstreamTest.waitForRunCompletion(run.id)
        expect(done.status).toBe("failed")
        expect(done.attempt).toBe(1)
      }))

    it.effect("an order without lines is refused at the start, and nothing is written", () =>
      Effect.gen(function*() {
        const runs = yield* Runs.Runs
        // The tests of this block share a database: compare with what the others left.
        const before = yield* runs.list({ task: Invoice.name })
        const error = yield* Effect.flip(runs.start(Invoice, { orderId: "o-3", lines: [] }))
        expect(error._tag).toBe("InvalidInput")
        const after = yield* runs.list({ task: Invoice.name })
        expect(after.runs.map((run) => run.id)).toEqual(before.runs.map((run) => run.id))
      }))
  })
})
