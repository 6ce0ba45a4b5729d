/**
 * The throughput phase's worker process, so that its memory is measured on its
 * own: a Runstream program (runtime, relay, memory bus) on the bench database,
 * with a pool of workers that drains the runs the bench enqueued.
 *
 * It counts terminal events as the relay publishes them (the last one ends the
 * measurement), then checks in the database that every run went through its
 * whole lifecycle and reports to the bench.
 *
 * argv: <runs> <concurrency> [limited]; env: BENCH_DATABASE_URL, and
 * BENCH_RETENTION=1 to run the retention (7 days, a pass as soon as the
 * previous one ends) from the moment the workers start, over the backlog the
 * bench seeded (`--retention-backlog N`). With `limited`, the runs are
 * LimitedNoop's (the concurrency phase).
 *
 * With BENCH_SLEEPERS=N (the sleepers phase), it first puts the N runs of
 * Sleeper the bench enqueued to sleep with a pool of the same concurrency,
 * and says `asleep` when the relay has published N `run.waiting`; the bench
 * then counts the places and connections they hold while that pool still runs
 * and says `measured`; the pool stops (`paused`: the no-op runs the bench
 * enqueues next must wait for the measured drain, as in the throughput phase),
 * and on `drain` the process goes on as above, beside the sleeping runs.
 */
import { SqlClient } from "@effect/sql"
import { Context, Deferred, Duration, Effect, Exit, Layer, Option, Queue, Scope } from "effect"
import { EventBus } from "../../src/bus/EventBus.ts"
import * as Retention from "../../src/Retention.ts"
import * as Workers from "../../src/Workers.ts"
import { BenchError, LimitedNoop, Noop, nowMs, programLayer, runChild, Sleeper, toParent } from "./common.ts"

export interface ThroughputResult {
  readonly runs: number
  /** Wall-clock ms (epoch) of the first claim, as recorded by the claim (`started_at`). */
  readonly firstClaimAt: number
  /** Wall-clock ms (epoch) when the relay published the last terminal event. */
  readonly lastTerminalAt: number
  /** The latest `finished_at` (the clock reading of the last completion's transaction). */
  readonly lastFinishedAt: number
  readonly runsPerSec: number
  readonly peakRssMB: number
  /** RSS when the workers were about to start (the program's baseline). */
  readonly baselineRssMB: number
  readonly heapUsedMB: number
  /** The largest V8 heap in use seen while draining (sampled every 25 ms). */
  readonly peakHeapUsedMB: number
  readonly baselineHeapUsedMB: number
  readonly events: number
  readonly eventsPerRun: string
  readonly outboxLeft: number
  /** The drain's window on the monotonic clock (ms), to cut a `--cpu-prof` profile to it. */
  readonly drainFromMono: number
  readonly drainToMono: number
  /** With BENCH_RETENTION: old runs the retention deleted while the workers drained. */
  readonly backlogDeleted?: number | undefined
  /** With BENCH_SLEEPERS: the sleeping runs still `waiting` once the drain is over (all of them, or the phase fails). */
  readonly stillWaiting?: number | undefined
}

/** What the sleepers phase's worker says once the runs are asleep. */
export interface AsleepMessage {
  readonly type: "asleep"
  /** From the pool's start to the relay publishing the last `run.waiting`. */
  readonly seconds: number
}

const runs = Number(process.argv[2])
const concurrency = Number(process.argv[3])
const limited = process.argv[4] === "limited"
const url = process.env["BENCH_DATABASE_URL"]!
const withRetention = process.env["BENCH_RETENTION"] === "1"
const sleepers = Number(process.env["BENCH_SLEEPERS"] ?? "0")
const task = limited ? LimitedNoop : Noop
/** The task of the backlog's runs (scripts/retention-backlog.ts). */
const backlogTask = "backlog.task"

const program = Effect.gen(function*() {
  // The runtime first, so that the counter is subscribed before any run ends.
  // Sleeper only in the sleepers phase: the throughput phase's claim stays the one task's.
  const runtime = yield* Layer.build(programLayer({ url, tasks: sleepers > 0 ? [task, Sleeper] : [task], bus: "memory", workers: false }))
  const bus = Context.get(runtime, EventBus)
  const sql = Context.get(runtime, SqlClient.SqlClient)
  const subscription = yield* bus.subscribe({})
  const allEnded = yield* Deferred.make<number, BenchError>()
  const allAsleep = yield* Deferred.make<void>()
  let ended = 0
  let asleep = 0
  let failed = 0
  let peakRss = process.memoryUsage.rss()
  let peakHeap = process.memoryUsage().heapUsed
  yield* subscription.takeAll.pipe(
    Effect.flatMap(([batch]) => {
      for (const message of batch) {
        if (message._tag === "Resync") continue
        const type = message.event.type
        if (type === "run.succeeded") ended++
        else if (type === "run.waiting") asleep++
        else if (type === "run.failed" || type === "run.cancelled") failed++
      }
      if (sleepers > 0 && asleep >= sleepers) Deferred.unsafeDone(allAsleep, Exit.void)
      return failed > 0
        ? Deferred.fail(allEnded, new BenchError({ message: `${failed} run(s) did not succeed` }))
        : ended >= runs
        ? Deferred.succeed(allEnded, Date.now())
        : Effect.void
    }),
    Effect.forever,
    Effect.forkScoped
  )
  const sampler = setInterval(() => {
    const usage = process.memoryUsage()
    peakRss = Math.max(peakRss, usage.rss)
    peakHeap = Math.max(peakHeap, usage.heapUsed)
  }, 25)

  if (sleepers > 0) {
    // The bench's messages, queued from now on: none is missed between two waits.
    const inbox = yield* Queue.unbounded<string>()
    process.on("message", (message) => Queue.unsafeOffer(inbox, String((message as { type?: unknown }).type)))
    const next = (type: string) => Effect.repeat(Queue.take(inbox), { until: (t) => t === type })
    const pool = yield* Scope.make()
    const sleepingFrom = nowMs()
    yield* Layer.buildWithScope(Workers.layer({ concurrency }), pool).pipe(Effect.provide(runtime))
    yield* Deferred.await(allAsleep).pipe(
      Effect.timeoutFail({ duration: "15 minutes", onTimeout: () => new BenchError({ message: `only ${asleep} of ${sleepers} runs asleep within 15 minutes` }) })
    )
    yield* toParent({ type: "asleep", seconds: (nowMs() - sleepingFrom) / 1000 } satisfies AsleepMessage)
    yield* next("measured")
    yield* Scope.close(pool, Exit.void)
    yield* toParent({ type: "paused" })
    yield* next("drain")
  }

  const baselineRss = process.memoryUsage.rss()
  const baselineHeap = process.memoryUsage().heapUsed
  yield* toParent({ type: "ready" })
  const backlog = sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_runs WHERE task = ${backlogTask}`
  const backlogBefore = withRetention ? (yield* backlog)[0]!.n : 0
  const cpuBefore = process.cpuUsage()
  const wallBefore = nowMs()
  if (withRetention) {
    yield* Layer.build(Retention.layer({ retention: Option.some("7 days"), interval: Duration.millis(10) })).pipe(Effect.provide(runtime))
  }
  yield* Layer.build(Workers.layer({ concurrency })).pipe(Effect.provide(runtime))
  const lastTerminalAt = yield* Deferred.await(allEnded).pipe(
    Effect.timeoutFail({ duration: "180 seconds", onTimeout: () => new BenchError({ message: `only ${ended} of ${runs} runs ended within 180 s` }) })
  )
  const drainToMono = nowMs()
  const cpu = process.cpuUsage(cpuBefore)
  const backlogDeleted = withRetention ? backlogBefore - (yield* backlog)[0]!.n : undefined
  yield* toParent({ type: "drained", cpuSeconds: (cpu.user + cpu.system) / 1e6, wallSeconds: (nowMs() - wallBefore) / 1000 })
  clearInterval(sampler)
  const heapUsed = process.memoryUsage().heapUsed
  // resourceUsage's maxRSS is the kernel's high-water mark: no sample can miss the peak.
  const peakRssBytes = Math.max(peakRss, process.resourceUsage().maxRSS * 1024)

  const [row] = yield* sql<{ first: number; last: number; succeeded: number; events: number; per_run: string; outbox: number; waiting: number }>`
    SELECT
      (extract(epoch FROM min(started_at)) * 1000)::float8 AS first,
      (extract(epoch FROM max(finished_at)) * 1000)::float8 AS last,
      count(*) FILTER (WHERE status = 'succeeded' AND last_seq = 3)::integer AS succeeded,
      (SELECT count(*) FROM runstream_events WHERE run_id IN (SELECT id FROM runstream_runs WHERE task = ${task.name}))::integer AS events,
      (SELECT string_agg(DISTINCT types, ' | ') FROM (
        SELECT string_agg(type, ',' ORDER BY seq) AS types FROM runstream_events
        WHERE run_id IN (SELECT id FROM runstream_runs WHERE task = ${task.name}) GROUP BY run_id
      ) t) AS per_run,
      (SELECT count(*) FROM runstream_outbox)::integer AS outbox,
      (SELECT count(*) FROM runstream_runs WHERE task = ${Sleeper.name} AND status = 'waiting')::integer AS waiting
    FROM runstream_runs WHERE task = ${task.name}`
  if (row === undefined || row.succeeded !== runs) {
    return yield* new BenchError({ message: `expected ${runs} succeeded runs with 3 events each, found ${row?.succeeded}` })
  }
  if (row.waiting !== sleepers) {
    return yield* new BenchError({ message: `expected ${sleepers} runs still asleep after the drain, found ${row.waiting}` })
  }
  const result: ThroughputResult = {
    runs,
    firstClaimAt: row.first,
    lastTerminalAt,
    lastFinishedAt: row.last,
    runsPerSec: runs / ((lastTerminalAt - row.first) / 1000),
    peakRssMB: peakRssBytes / 1024 / 1024,
    baselineRssMB: baselineRss / 1024 / 1024,
    heapUsedMB: heapUsed / 1024 / 1024,
    peakHeapUsedMB: peakHeap / 1024 / 1024,
    baselineHeapUsedMB: baselineHeap / 1024 / 1024,
    events: row.events,
    eventsPerRun: row.per_run,
    outboxLeft: row.outbox,
    drainFromMono: wallBefore,
    drainToMono,
    backlogDeleted,
    stillWaiting: sleepers > 0 ? row.waiting : undefined
  }
  yield* toParent({ type: "result", result })
})

runChild(Effect.scoped(program))
