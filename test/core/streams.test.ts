import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Fiber, Layer, Mailbox, Queue, Stream } from "effect"
import type { RunId } from "../../src/domain/Ids.ts"
import type { RunEvent } from "../../src/domain/RunEvent.ts"
import * as Bus from "../../src/bus/index.ts"
import { EventLog } from "../../src/EventLog.ts"
import * as OutboxRelay from "../../src/OutboxRelay.ts"
import { Runs } from "../../src/Runs.ts"
import { Burst, Gate, program, Sized, Stepper } from "./support.ts"

const steps = 40

/** Every event of a run: seq 1..n with no gap, no duplicate, ending with the terminal event. */
const expectComplete = (events: ReadonlyArray<RunEvent>, from = 1) => {
  expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => from + i))
  expect(events[events.length - 1]!.type).toBe("run.succeeded")
}

/** Opens the gate `n` times and waits until the run's log has seq `untilSeq`. */
const advance = (runId: RunId, n: number, untilSeq: number) =>
  Effect.gen(function*() {
    const gate = yield* Gate
    const runs = yield* Runs
    yield* Effect.forEach(Array.from({ length: n }), () => Queue.offer(gate, undefined), { discard: true })
    yield* runs.events(runId).pipe(Stream.takeUntil((e) => e.seq >= untilSeq), Stream.runDrain)
  })

describe.concurrent("run event streams", () => {
  for (const [name, bus] of [["memory", Bus.layerMemory], ["postgres", Bus.layerPostgres]] as const) {
    it.scopedLive(`a subscriber joining mid-run gets every event once, in order (${name} bus)`, () =>
      Effect.gen(function*() {
        const ctx = yield* Layer.build(program({ bus }))
        const runs = Context.get(ctx, Runs)
        const run = yield* runs.start(Stepper, { steps })
        const early = yield* runs.events(run.id).pipe(Stream.runCollect, Effect.fork)
        // queued, started, then 10 steps: seq 12.
        yield* Effect.provide(advance(run.id, 10, 12), ctx)
        const fromStart = yield* runs.events(run.id).pipe(Stream.runCollect, Effect.fork)
        const fromCursor = yield* runs.events(run.id, { after: 7 }).pipe(Stream.runCollect, Effect.fork)
        yield* Queue.offerAll(Context.get(ctx, Gate), Array.from({ length: steps - 10 }, () => undefined))
        expectComplete(Chunk.toArray(yield* Fiber.join(early)))
        expectComplete(Chunk.toArray(yield* Fiber.join(fromStart)))
        expectComplete(Chunk.toArray(yield* Fiber.join(fromCursor)), 8)
      }))
  }

  it.scopedLive("a subscriber gets every event once, in order, across a drop and restart of the bus connection", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program({ bus: Bus.layerPostgres }))
      const runs = Context.get(ctx, Runs)
      const sql = Context.get(ctx, SqlClient.SqlClient)
      const run = yield* runs.start(Stepper, { steps })
      const follower = yield* runs.events(run.id).pipe(Stream.runCollect, Effect.fork)
      yield* Effect.provide(advance(run.id, 10, 12), ctx)
      // Cut the LISTEN connection: notifications sent until it is back are lost.
      const killed = yield* sql<{ ok: boolean }>`
        SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
        WHERE application_name = 'runstream-listen' AND datname = current_database()`
      expect(killed.length).toBeGreaterThan(0)
      yield* Queue.offerAll(Context.get(ctx, Gate), Array.from({ length: steps - 10 }, () => undefined))
      expectComplete(Chunk.toArray(yield* Fiber.join(follower)))
    }))

  it.scopedLive("two relays draining at once: each event reaches a subscriber once", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program())
      // A second relay on the same program and database.
      yield* Layer.build(Layer.fresh(OutboxRelay.layer).pipe(Layer.provide(Layer.succeedContext(ctx))))
      const runs = Context.get(ctx, Runs)
      const run = yield* runs.start(Stepper, { steps })
      const debug = yield* Mailbox.toStream(yield* runs.subscribeAll({ runId: run.id })).pipe(
        Stream.takeUntil((e) => e.type === "run.succeeded"),
        Stream.runCollect,
        Effect.fork
      )
      const follower = yield* runs.events(run.id).pipe(Stream.runCollect, Effect.fork)
      yield* Queue.offerAll(Context.get(ctx, Gate), Array.from({ length: steps }, () => undefined))
      expectComplete(Chunk.toArray(yield* Fiber.join(follower)))
      // The raw bus too: the drain lock keeps two relays from publishing the same rows.
      const seen = Chunk.toArray(yield* Fiber.join(debug)).map((e) => e.seq)
      expect(new Set(seen).size).toBe(seen.length)
    }))

  it.scopedLive("events published twice (a relay that died before its delete) reach a subscriber once", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program())
      const runs = Context.get(ctx, Runs)
      const bus = Context.get(ctx, Bus.EventBus)
      const log = Context.get(ctx, EventLog)
      const run = yield* runs.start(Stepper, { steps: 3 })
      const follower = yield* runs.events(run.id).pipe(Stream.runCollect, Effect.fork)
      yield* Effect.provide(advance(run.id, 2, 4), ctx)
      const replay = yield* log.read(run.id, { after: 0, limit: 100 })
      yield* bus.publish(replay.map((event) => ({ task: run.task, event })))
      yield* bus.publish(replay.map((event) => ({ task: run.task, event })))
      yield* Queue.offer(Context.get(ctx, Gate), undefined)
      expectComplete(Chunk.toArray(yield* Fiber.join(follower)))
    }))

  it.scopedLive("postgres bus: one drain of events of every size reaches the raw bus whole, each event once", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program({ bus: Bus.layerPostgres }))
      const runs = Context.get(ctx, Runs)
      // Around the size at which the relay's statement starts a new NOTIFY
      // payload (3,800 bytes) and the limit of one (8,000): an event too large
      // travels as a reference. Any payload over the limit fails the drain.
      const sizes = [10, 3000, 3700, 3790, 3800, 3900, 5000, 7800, 9000, 20_000, ...Array.from({ length: 60 }, () => 100)]
      const debug = yield* Mailbox.toStream(yield* runs.subscribeAll({ task: Sized.name })).pipe(
        Stream.takeUntil((e) => e.type === "run.succeeded"),
        Stream.runCollect,
        Effect.fork
      )
      const run = yield* runs.start(Sized, { sizes })
      const follower = yield* runs.events(run.id).pipe(Stream.runCollect, Effect.fork)
      const events = Chunk.toArray(yield* Fiber.join(follower))
      expectComplete(events)
      // The raw bus (no reading of the log to fill gaps): every event once.
      const raw = Chunk.toArray(yield* Fiber.join(debug))
      expect(raw.map((e) => e.seq).sort((a, b) => a - b)).toEqual(events.map((e) => e.seq))
      const pads = raw.filter((e) => e.type === "sized").map((e) => e.data as { i: number; pad: string })
      expect(pads.map((d) => d.pad.length).sort((a, b) => a - b)).toEqual([...sizes].sort((a, b) => a - b))
    }))

  it.scopedLive("a stream resumed at or past the terminal event of a finished run ends at once, empty", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program())
      const runs = Context.get(ctx, Runs)
      const run = yield* runs.start(Stepper, { steps: 1 })
      yield* Queue.offer(Context.get(ctx, Gate), undefined)
      const done = yield* runs.awaitCompletion(run.id, { timeout: "20 seconds" })
      expect(Chunk.size(yield* runs.events(run.id, { after: done.lastSeq }).pipe(Stream.runCollect))).toBe(0)
      expect(Chunk.size(yield* runs.events(run.id, { after: done.lastSeq + 5 }).pipe(Stream.runCollect))).toBe(0)
      const last = yield* runs.events(run.id, { after: done.lastSeq - 1 }).pipe(Stream.runCollect)
      expect(Chunk.toArray(last).map((e) => e.type)).toEqual(["run.succeeded"])
    }))

  it.scopedLive("a cursor past the end of a running run's log is refused, not followed forever", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program())
      const runs = Context.get(ctx, Runs)
      const run = yield* runs.start(Stepper, { steps: 1 })
      const error = yield* runs.events(run.id, { after: 50 }).pipe(Stream.runDrain, Effect.flip)
      expect(error._tag).toBe("InvalidInput")
      yield* Queue.offer(Context.get(ctx, Gate), undefined)
      yield* runs.awaitCompletion(run.id, { timeout: "20 seconds" })
    }))

  it.scopedLive("a log longer than one read page is streamed whole, once, in order", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program({ workers: { concurrency: 1 } }))
      const runs = Context.get(ctx, Runs)
      // 2,500 events: more than the default page of 2,000.
      const run = yield* runs.start(Burst, { n: 2500, concurrency: 50 })
      yield* runs.awaitCompletion(run.id, { timeout: "120 seconds" })
      const events = Chunk.toArray(yield* runs.events(run.id).pipe(Stream.runCollect))
      expect(events).toHaveLength(2503)
      expectComplete(events)
    }), 180_000)
})
