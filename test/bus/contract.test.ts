/**
 * The bus contract, one set of tests run against every driver. A publishing
 * program (workers, relay) and a subscribing program share a database (one
 * program for the memory bus, which does not leave its process). The NATS
 * driver runs where a NATS server answers (RUNSTREAM_TEST_NATS_URL, default
 * nats://127.0.0.1:4222); elsewhere its tests are skipped with a notice, and
 * fail instead when RUNSTREAM_TEST_NATS=required (CI, where one answers).
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, ConfigProvider, Context, Effect, Fiber, Layer, Queue, Stream } from "effect"
import { EventBus } from "../../src/bus/EventBus.ts"
import { makeRunId } from "../../src/domain/Ids.ts"
import { makeRunEvent, type RunEvent } from "../../src/domain/RunEvent.ts"
import * as Programs from "../../src/main/Programs.ts"
import { Runs } from "../../src/Runs.ts"
import { TestDatabase } from "../../src/testing/index.ts"
import { buildProgram, collect, type Driver, drivers, natsAnswers, natsUrl, Sized, Ticker } from "./support.ts"

const natsUp = await natsAnswers()
const natsRequired = process.env["RUNSTREAM_TEST_NATS"] === "required"
if (!natsUp) {
  console.warn(
    `NOTICE: no NATS server answers at ${natsUrl}: the NATS bus contract tests are skipped` +
      (natsRequired ? " (and fail: RUNSTREAM_TEST_NATS=required)" : "")
  )
}

const isTerminal = (event: RunEvent) => event.type.startsWith("run.") && ["run.succeeded", "run.failed", "run.cancelled"].includes(event.type)

/** Per run, the seqs in the order they arrived. */
const seqsByRun = (events: ReadonlyArray<RunEvent>) => {
  const byRun = new Map<string, Array<number>>()
  for (const event of events) byRun.set(event.runId, [...(byRun.get(event.runId) ?? []), event.seq])
  return byRun
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** A fresh database in the test's scope: dropped after the programs on it have stopped. */
const freshDatabase = Layer.build(Layer.fresh(TestDatabase.layerUrl))

/** The publishing program (workers) and the subscribing one (runtime only; the same program on a memory bus). */
const programs = (driver: Driver, options: { readonly idle?: boolean } = {}) =>
  Effect.gen(function*() {
    const database = yield* freshDatabase
    const gate = yield* Queue.unbounded<void>()
    const publisherLink = yield* driver.connect
    const publisher = yield* buildProgram(publisherLink.bus, { workers: true, gate, idle: options.idle ?? true }).pipe(
      Effect.provide(database)
    )
    if (!driver.shared) return { gate, publisher, subscriber: publisher, link: publisherLink.cut }
    const subscriberLink = yield* driver.connect
    const subscriber = yield* buildProgram(subscriberLink.bus, { workers: false, gate, idle: options.idle ?? true }).pipe(
      Effect.provide(database)
    )
    return { gate, publisher, subscriber, link: subscriberLink.cut }
  })

const contract = (driver: Driver) => {
  it.scopedLive("each run's events arrive in order, on run and wide subscriptions, through the relay", () =>
    Effect.gen(function*() {
      const { gate, publisher, subscriber } = yield* programs(driver)
      const bus = Context.get(subscriber, EventBus)
      const wide = yield* bus.subscribe({ task: Ticker.name })
      const runs = yield* Effect.forEach(range(1, 5), () => Context.get(publisher, Runs).start(Ticker, { n: 40 }))
      const narrow = yield* Effect.forEach(runs, (run) => bus.subscribe({ runId: run.id }))
      const wideDone = yield* collect(wide, (events) => events.filter(isTerminal).length === runs.length).pipe(Effect.fork)
      const narrowDone = yield* Effect.forEach(narrow, (mailbox) => collect(mailbox, (events) => events.some(isTerminal)).pipe(Effect.fork))
      yield* Queue.offerAll(gate, range(1, 40 * runs.length).map(() => undefined))
      // queued, started, 40 ticks, succeeded: every one, once, in order.
      const byRun = seqsByRun((yield* Fiber.join(wideDone)).events)
      for (const run of runs) expect(byRun.get(run.id)).toEqual(range(1, 43))
      // A run's subscription taken after its start: a run of seqs ending with the terminal one.
      for (const fiber of narrowDone) {
        const seqs = (yield* Fiber.join(fiber)).events.map((e) => e.seq)
        expect(seqs).toEqual(range(seqs[0]!, 43))
      }
    }))

  it.scopedLive("a subscription is live when subscribe returns: an event published right after it arrives", () =>
    Effect.gen(function*() {
      const { publisher, subscriber } = yield* programs(driver)
      const bus = Context.get(subscriber, EventBus)
      for (const _ of range(1, 20)) {
        const runId = yield* makeRunId
        const subscription = yield* Effect.scoped(Effect.gen(function*() {
          const mailbox = yield* bus.subscribe({ runId })
          yield* Context.get(publisher, EventBus).publish([{ task: "t", event: makeRunEvent(runId, 1, "ping", null, Date.now()) }])
          return yield* collect(mailbox, (events) => events.length > 0).pipe(Effect.timeout("10 seconds"))
        }))
        expect(subscription.events.map((e) => [e.runId, e.seq])).toEqual([[runId, 1]])
      }
    }))

  it.scopedLive("events published twice reach the bus twice and a follower once", () =>
    Effect.gen(function*() {
      const { gate, publisher, subscriber } = yield* programs(driver)
      const run = yield* Context.get(publisher, Runs).start(Ticker, { n: 3 })
      const wide = yield* Context.get(subscriber, EventBus).subscribe({ task: Ticker.name })
      const follower = yield* Context.get(subscriber, Runs).events(run.id).pipe(Stream.runCollect, Effect.fork)
      yield* Queue.offerAll(gate, [undefined, undefined])
      yield* Context.get(publisher, Runs).events(run.id).pipe(Stream.takeUntil((e) => e.seq >= 4), Stream.runDrain)
      const replay = yield* Context.get(publisher, Runs).readEvents(run.id, { after: 0 })
      const bus = Context.get(publisher, EventBus)
      yield* bus.publish(replay.map((event) => ({ task: run.task, event })))
      yield* bus.publish(replay.map((event) => ({ task: run.task, event })))
      yield* Queue.offer(gate, undefined)
      expect(Chunk.toArray(yield* Fiber.join(follower)).map((e) => e.seq)).toEqual(range(1, 6))
      const raw = yield* collect(wide, (events) => events.some(isTerminal))
      // The replayed seqs went through the bus again (not only through the log).
      expect(raw.events.filter((e) => e.seq === 4).length).toBeGreaterThanOrEqual(2)
    }))

  it.scopedLive("large events arrive whole: around NOTIFY's 8,000 bytes and NATS's 1 MiB, in one drained batch", () =>
    Effect.gen(function*() {
      const { publisher, subscriber } = yield* programs(driver)
      const sizes = [10, 3000, 3790, 3800, 3900, 7800, 9000, 60_000, 600_000, 1_048_576, 1_500_000, ...range(1, 60).map(() => 100)]
      const wide = yield* Context.get(subscriber, EventBus).subscribe({ task: Sized.name })
      const run = yield* Context.get(publisher, Runs).start(Sized, { sizes })
      // Until every seq arrived: a driver may send a large event as a reference read after the rest.
      const { events } = yield* collect(wide, (events) => new Set(events.map((e) => e.seq)).size >= sizes.length + 3).pipe(
        Effect.timeout("30 seconds")
      )
      // The raw bus (no reading of the log to fill gaps): every event once.
      expect(events.map((e) => e.seq).sort((a, b) => a - b)).toEqual(range(1, sizes.length + 3))
      expect(events.every((e) => e.runId === run.id)).toBe(true)
      const pads = events.filter((e) => e.type === "sized").map((e) => (e.data as { pad: string }).pad.length)
      expect(pads.sort((a, b) => a - b)).toEqual([...sizes].sort((a, b) => a - b))
    }), 120_000)

  it.scopedLive("programs on different databases see none of each other's events", () =>
    Effect.gen(function*() {
      const { subscriber } = yield* programs(driver)
      const otherLink = yield* driver.connect
      const gate = yield* Queue.unbounded<void>()
      const otherDatabase = yield* freshDatabase
      const other = yield* buildProgram(otherLink.bus, { workers: false, gate }).pipe(Effect.provide(otherDatabase))
      const wide = yield* Context.get(subscriber, EventBus).subscribe({})
      const [theirs, ours] = [yield* makeRunId, yield* makeRunId]
      yield* Context.get(other, EventBus).publish([{ task: "t", event: makeRunEvent(theirs, 1, "theirs", null, Date.now()) }])
      yield* Context.get(subscriber, EventBus).publish([{ task: "t", event: makeRunEvent(ours, 1, "ours", null, Date.now()) }])
      const { events } = yield* collect(wide, (events) => events.some((e) => e.runId === ours))
      expect(events.map((e) => e.type)).toEqual(["ours"])
    }))

  if (driver.name === "memory") return
  it.scopedLive("across a cut of the bus connection: subscribers get Resync, a follower every event once, in order", () =>
    Effect.gen(function*() {
      // No idle-check Resync: only the bus's own can bring back what it lost.
      const { gate, link, publisher, subscriber } = yield* programs(driver, { idle: false })
      const run = yield* Context.get(publisher, Runs).start(Ticker, { n: 20 })
      const raw = yield* Context.get(subscriber, EventBus).subscribe({ runId: run.id })
      const follower = yield* Context.get(subscriber, Runs).events(run.id).pipe(Stream.runCollect, Effect.fork)
      yield* Queue.offerAll(gate, range(1, 10).map(() => undefined))
      // The subscriber has seq 12 (queued, started, 10 ticks) from the bus.
      yield* collect(raw, (events) => events.some((e) => e.seq === 12))
      yield* link!.cut.pipe(Effect.provide(subscriber))
      // The rest is published while the subscriber's bus is down: lost to it.
      yield* Queue.offerAll(gate, range(1, 10).map(() => undefined))
      yield* Context.get(publisher, Runs).awaitCompletion(run.id, { timeout: "30 seconds" })
      yield* link!.restore
      // The follower can only finish on the bus's Resync (or, if the bus came
      // back before the last events, on them): every event once, in order.
      expect(Chunk.toArray(yield* Fiber.join(follower)).map((e) => e.seq)).toEqual(range(1, 23))
      const resynced = yield* collect(raw, (_, resyncs) => resyncs > 0).pipe(Effect.timeout("20 seconds"))
      expect(resynced.resyncs).toBeGreaterThan(0)
    }))
}

/** Where no NATS server answers: a skipped test that says why, or a failing one where NATS is required. */
const natsMissing = () => {
  if (natsRequired) {
    it(`fails: no NATS server answers at ${natsUrl}, and RUNSTREAM_TEST_NATS=required`, () => {
      expect.fail(`no NATS server answers at ${natsUrl}`)
    })
  } else {
    it.skip(`skipped: no NATS server answers at ${natsUrl} (set RUNSTREAM_TEST_NATS_URL)`, () => {})
  }
}

for (const driver of drivers) {
  describe.concurrent(`bus contract: ${driver.name}`, () => {
    if (driver.name === "nats" && !natsUp) return natsMissing()
    contract(driver)
  })
}

describe("NATS bus, end to end", () => {
  if (!natsUp) return natsMissing()
  it.scopedLive("a run started in one program is followed through Runs.events in another on the same database (RUNSTREAM_BUS=nats)", () =>
    Effect.gen(function*() {
      const database = yield* freshDatabase
      const gate = yield* Queue.unbounded<void>()
      // The bus as the entry points pick it from the environment.
      const config = yield* Programs.BusConfig("postgres").pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["RUNSTREAM_BUS", "nats"], ["RUNSTREAM_NATS_URL", natsUrl]])))
      )
      expect(config.kind).toBe("nats")
      const bus = Programs.busLayer(config)
      const starter = yield* buildProgram(bus, { workers: true, gate }).pipe(Effect.provide(database))
      // No idle-check Resync in the follower: its stream moves on what NATS delivers.
      const follower = yield* buildProgram(bus, { workers: false, gate, idle: false }).pipe(Effect.provide(database))
      const raw = yield* Context.get(follower, EventBus).subscribe({ task: Ticker.name })
      const run = yield* Context.get(starter, Runs).start(Ticker, { n: 5 })
      const followed = yield* Context.get(follower, Runs).events(run.id).pipe(Stream.runCollect, Effect.fork)
      yield* Queue.offerAll(gate, range(1, 5).map(() => undefined))
      expect(Chunk.toArray(yield* Fiber.join(followed)).map((e) => e.seq)).toEqual(range(1, 8))
      const { events } = yield* collect(raw, (events) => events.some(isTerminal))
      expect(events.map((e) => e.seq)).toEqual(range(1, 8))
    }))
})
