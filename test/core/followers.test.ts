/**
 * RunFollowers: one reader per followed run, shared by all its followers in a
 * program; followers behind the feed (resumed from an old cursor, or too slow
 * for their buffer) read the log themselves and join again, never losing or
 * repeating an event; the reader goes away with its last follower.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, ConfigProvider, Context, Deferred, Effect, Fiber, Layer, Option, Queue, Stream } from "effect"
import * as Bus from "../../src/bus/index.ts"
import type { RunId } from "../../src/domain/Ids.ts"
import type { RunEvent } from "../../src/domain/RunEvent.ts"
import { RunFollowers } from "../../src/RunFollowers.ts"
import { Runs } from "../../src/Runs.ts"
import { Burst, Gate, program, Stepper } from "./support.ts"

const steps = 30

/** seq `from`..n with no gap and no duplicate, ending with the terminal event. */
const expectComplete = (events: ReadonlyArray<RunEvent>, from = 1) => {
  expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => from + i))
  expect(events[events.length - 1]!.type).toBe("run.succeeded")
}

/** Follows the run; `seen` completes when the follower has received event `seq`. */
const followUntilSeen = (runs: Runs["Type"], runId: RunId, seq: number, after?: number) =>
  Effect.gen(function*() {
    const seen = yield* Deferred.make<void>()
    const fiber = yield* runs.events(runId, { after }).pipe(
      Stream.tap((event) => event.seq >= seq ? Deferred.succeed(seen, undefined) : Effect.void),
      Stream.runCollect,
      Effect.map(Chunk.toReadonlyArray),
      Effect.fork
    )
    return { seen: Deferred.await(seen), fiber }
  })

/** Opens the gate once and waits until `follower` (a live one) has the event that step emits. */
const step = (ctx: Context.Context<Runs | Gate>, runId: RunId, seq: number) =>
  Effect.gen(function*() {
    yield* Queue.offer(Context.get(ctx, Gate), undefined)
    yield* Context.get(ctx, Runs).events(runId, { after: seq - 1 }).pipe(Stream.take(1), Stream.runDrain)
  })

describe.concurrent("RunFollowers", () => {
  it.scopedLive("many followers of one run share one reader and one bus subscription, and it goes when they end", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program({ bus: Bus.layerPostgres }))
      const runs = Context.get(ctx, Runs)
      const followers = Context.get(ctx, RunFollowers)
      const run = yield* runs.start(Stepper, { steps })
      // queued and started: seq 2 in the log before anyone follows.
      yield* runs.events(run.id, { after: 1 }).pipe(Stream.take(1), Stream.runDrain)
      const clients = yield* Effect.forEach(Array.from({ length: 50 }), () => followUntilSeen(runs, run.id, 2))
      yield* Effect.forEach(clients, (client) => client.seen, { discard: true })
      const during = yield* followers.stats
      expect(during).toMatchObject({ readers: 1, subscriptions: 1, followers: 50 })

      yield* Queue.offerAll(Context.get(ctx, Gate), Array.from({ length: steps }, () => undefined))
      for (const client of clients) expectComplete(yield* Fiber.join(client.fiber))
      const after = yield* followers.stats
      expect(after).toMatchObject({ readers: 0, subscriptions: 0, followers: 0 })
      // Each follower read the log once (its backfill); the live events came from the shared feed.
      expect(after.followerLogReads - during.followerLogReads).toBe(0)
      expect(after.overflows).toBe(0)
    }))

  it.scopedLive("a follower resuming from an old cursor while others are live gets every event once, in order", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program())
      const runs = Context.get(ctx, Runs)
      const followers = Context.get(ctx, RunFollowers)
      const run = yield* runs.start(Stepper, { steps })
      yield* runs.events(run.id, { after: 1 }).pipe(Stream.take(1), Stream.runDrain)
      const live = yield* Effect.forEach(Array.from({ length: 10 }), () => followUntilSeen(runs, run.id, 2))
      yield* Effect.forEach(live, (client) => client.seen, { discard: true })
      // Ten steps: seq 12.
      for (let seq = 3; seq <= 12; seq++) yield* step(ctx, run.id, seq)
      const resumed = yield* followUntilSeen(runs, run.id, 12, 3)
      yield* resumed.seen
      expect(yield* followers.stats).toMatchObject({ readers: 1, subscriptions: 1, followers: 11 })
      yield* Queue.offerAll(Context.get(ctx, Gate), Array.from({ length: steps - 10 }, () => undefined))
      expectComplete(yield* Fiber.join(resumed.fiber), 4)
      for (const client of live) expectComplete(yield* Fiber.join(client.fiber))
    }))

  it.scopedLive("a follower too slow for its buffer still gets every event once, in order, from the log, and holds no one back", () =>
    Effect.gen(function*() {
      // Two batches of the live feed at most per follower.
      const ctx = yield* Layer.build(program().pipe(
        Layer.provide(Layer.setConfigProvider(
          ConfigProvider.fromMap(new Map([["RUNSTREAM_FOLLOWER_BUFFER", "2"]])).pipe(ConfigProvider.orElse(ConfigProvider.fromEnv))
        ))
      ))
      const runs = Context.get(ctx, Runs)
      const followers = Context.get(ctx, RunFollowers)
      const run = yield* runs.start(Stepper, { steps })
      yield* runs.events(run.id, { after: 1 }).pipe(Stream.take(1), Stream.runDrain)
      const fast = yield* followUntilSeen(runs, run.id, 2)
      yield* fast.seen
      // The slow one: its first events taken, then nothing read until the run is over.
      const slow = yield* Stream.toPull(runs.events(run.id))
      const first = yield* slow
      expect(Chunk.toReadonlyArray(first).map((e) => e.seq)).toEqual([1, 2])
      // One step at a time, each seen by another follower: separate batches of the feed.
      for (let seq = 3; seq <= steps + 2; seq++) yield* step(ctx, run.id, seq)
      // The fast follower ends while the slow one has read nothing more.
      expectComplete(yield* Fiber.join(fast.fiber))
      const stats = yield* followers.stats
      expect(stats.overflows).toBeGreaterThanOrEqual(1)
      const rest: Array<RunEvent> = []
      while (true) {
        const chunk = yield* Effect.option(slow)
        if (Option.isNone(chunk)) break
        rest.push(...Chunk.toReadonlyArray(chunk.value))
      }
      expectComplete([...Chunk.toReadonlyArray(first), ...rest])
    }))

  it.scopedLive("a stream that is not read holds one page of the log, not its buffer's worth of pages", () =>
    Effect.gen(function*() {
      // Pages of 10 events; a buffer of 64 batches would hold all 50 pages of this log.
      const ctx = yield* Layer.build(program().pipe(
        Layer.provide(Layer.setConfigProvider(
          ConfigProvider.fromMap(new Map([["RUNSTREAM_EVENT_PAGE_SIZE", "10"]])).pipe(ConfigProvider.orElse(ConfigProvider.fromEnv))
        ))
      ))
      const runs = Context.get(ctx, Runs)
      const followers = Context.get(ctx, RunFollowers)
      const run = yield* runs.start(Burst, { n: 497, concurrency: 1 })
      yield* runs.awaitCompletion(run.id)
      const before = (yield* followers.stats).followerLogReads
      const reads = Effect.map(followers.stats, (stats) => stats.followerLogReads - before)
      const pull = yield* Stream.toPull(runs.events(run.id))
      expect(Chunk.size(yield* pull)).toBe(10)
      // It reads the next page, then waits for this one to be taken.
      yield* Effect.repeat(reads, { until: (n) => n >= 2 })
      // Time for more: round trips to the database, in which it would have read further.
      for (let i = 0; i < 20; i++) yield* runs.get(run.id)
      expect(yield* reads).toBe(2)
      // Every chunk is at most a page, and it reads one page per chunk taken.
      const seqs: Array<number> = []
      for (let taken = 1; ; taken++) {
        const chunk = yield* Effect.option(pull)
        if (Option.isNone(chunk)) break
        expect(Chunk.size(chunk.value)).toBeLessThanOrEqual(10)
        seqs.push(...Chunk.toReadonlyArray(chunk.value).map((e) => e.seq))
        expect(yield* reads).toBeLessThanOrEqual(taken + 2)
      }
      expect(seqs).toEqual(Array.from({ length: 490 }, (_, i) => 11 + i))
    }))

  it.scopedLive("a page of the log comes as chunks of at most 256 events, in order", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program())
      const runs = Context.get(ctx, Runs)
      const run = yield* runs.start(Burst, { n: 997, concurrency: 1 })
      yield* runs.awaitCompletion(run.id)
      // One page of the default 2,000: a consumer (an RPC answer) encodes and buffers a chunk at a time.
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.chunks(runs.events(run.id))))
      expect(chunks.map(Chunk.size)).toEqual([256, 256, 256, 232])
      expect(chunks.flatMap((chunk) => Chunk.toReadonlyArray(chunk).map((e) => e.seq))).toEqual(Array.from({ length: 1000 }, (_, i) => 1 + i))
    }))

  it.scopedLive("the reader is released when its followers leave before the run ends", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(program({ bus: Bus.layerPostgres }))
      const runs = Context.get(ctx, Runs)
      const followers = Context.get(ctx, RunFollowers)
      const run = yield* runs.start(Stepper, { steps })
      yield* runs.events(run.id, { after: 1 }).pipe(Stream.take(1), Stream.runDrain)
      const clients = yield* Effect.forEach(Array.from({ length: 5 }), () => followUntilSeen(runs, run.id, 2))
      yield* Effect.forEach(clients, (client) => client.seen, { discard: true })
      expect(yield* followers.stats).toMatchObject({ readers: 1, subscriptions: 1, followers: 5 })
      yield* Fiber.interrupt(clients[0]!.fiber)
      expect(yield* followers.stats).toMatchObject({ readers: 1, subscriptions: 1, followers: 4 })
      yield* Effect.forEach(clients.slice(1), (client) => Fiber.interrupt(client.fiber), { discard: true })
      expect(yield* followers.stats).toMatchObject({ readers: 0, subscriptions: 0, followers: 0 })
      // A new follower gets a new reader, and the whole run.
      const again = yield* followUntilSeen(runs, run.id, 2)
      yield* again.seen
      expect(yield* followers.stats).toMatchObject({ readers: 1, subscriptions: 1 })
      yield* Queue.offerAll(Context.get(ctx, Gate), Array.from({ length: steps }, () => undefined))
      expectComplete(yield* Fiber.join(again.fiber))
      expect(yield* followers.stats).toMatchObject({ readers: 0, subscriptions: 0, followers: 0 })
    }))
})
