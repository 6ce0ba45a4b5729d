/**
 * Exactly one run per tick across processes (issue 19): three worker
 * processes declare the same 1-second schedule on one database; one is
 * killed with SIGKILL on the way. Every tick from the first to the last has
 * exactly one run: no gap, no duplicate. `SCHEDULE_TICKS` sets how many ticks
 * to watch (20 in the suite; the 60 by hand).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Mailbox, Redacted, Stream } from "effect"
import * as EventBus from "../../src/bus/index.ts"
import * as Database from "../../src/Database.ts"
import { DatabaseUrl } from "../../src/Database.ts"
import { Runs } from "../../src/Runs.ts"
import * as Runstream from "../../src/Runstream.ts"
import * as Task from "../../src/Task.ts"
import { TestDatabase } from "../../src/testing/index.ts"
import { mkdirSync, rmSync } from "node:fs"
import { join, relative } from "node:path"
import { bundle } from "../../scripts/bundle.ts"
import * as Child from "../e2e/Child.ts"

const ticks = Number(process.env["SCHEDULE_TICKS"] ?? 20)
const killAfter = Math.floor(ticks / 3)

const root = new URL("../..", import.meta.url).pathname

/**
 * The child program bundled once (under `bundle/`, beside `node_modules`):
 * three processes compiling it with tsx at once took a minute of a busy
 * 2-core machine before the first tick.
 */
const bundled = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = join(root, "bundle", `beat-test-${process.pid}`)
    mkdirSync(dir, { recursive: true })
    await bundle(join(root, "test", "schedules", "beat-process.ts"), join(dir, "beat.mjs"))
    return dir
  }),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => relative(root, join(dir, "beat.mjs"))))

/** This test's own program on the database: no tasks (its ticker claims nothing), the postgres bus to watch the runs start. */
const watcher = Runstream.layerRuntime({ bus: EventBus.layerPostgres }).pipe(
  Layer.provideMerge(Task.layerRegistry()),
  Layer.provideMerge(Database.layerClient({ maxConnections: 4, connectTimeout: TestDatabase.connectTimeout }))
)

describe("schedules across processes", () => {
  it.scopedLive(`three processes, a 1-second schedule, ${ticks} ticks, one process killed: each tick exactly once`, () =>
    Effect.gen(function*() {
      const url = Redacted.value((yield* DatabaseUrl).url)
      const runs = yield* Runs
      const program = yield* bundled
      const children = yield* Effect.forEach([1, 2, 3], () =>
        Child.start(program, {
          DATABASE_URL: url,
          RUNSTREAM_WORKER_CONCURRENCY: "2",
          RUNSTREAM_LOG_LEVEL: "info"
        }), { concurrency: "unbounded" })
      // Each is up (on a busy machine, starting three takes a while): the ticks counted from here see all three.
      yield* Effect.forEach(children, (child) => child.waitFor(/workers ready/, "120 seconds"), { concurrency: "unbounded" })
      // Subscribed now (a subscription not read for long is dropped by the bus's fan-out);
      // runs started before are in the table read below.
      const queued = Mailbox.toStream(yield* runs.subscribeAll({ task: "test.beat" }))
      const seen = new Set<string>()
      let killed = false
      yield* queued.pipe(
        Stream.filter((event) => event.type === "run.queued"),
        Stream.tap((event) =>
          Effect.gen(function*() {
            seen.add(event.runId)
            if (!killed && seen.size >= killAfter) {
              killed = true
              yield* children[0]!.kill("SIGKILL")
            }
          })
        ),
        Stream.takeUntil(() => seen.size >= ticks),
        Stream.runDrain,
        Effect.timeoutFail({ duration: `${ticks * 3 + 30} seconds`, onTimeout: () => new Error(`only ${seen.size} ticks started in time`) })
      )
      expect((yield* children[0]!.exited).signal).toBe("SIGKILL")
      // The others stop ticking (and are waited for) before the runs are read: no tick is being started.
      yield* Effect.forEach(children.slice(1), (child) => Effect.zipRight(child.kill("SIGTERM"), child.exited), { discard: true })

      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ key: string; created: Date }>`
        SELECT idempotency_key AS key, created_at AS created FROM runstream_runs WHERE task = 'test.beat' ORDER BY idempotency_key`
      const keys = rows.map((row) => row.key)
      const tickTimes = keys.map((key) => new Date(key.replace(/^schedule:beat:/, "")).getTime())
      expect(keys.every((key) => /^schedule:beat:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$/.test(key))).toBe(true)
      expect(tickTimes.length).toBeGreaterThanOrEqual(ticks)
      // Contiguous seconds: no gap and no duplicate between the first tick and the last.
      const expected = Array.from({ length: tickTimes.length }, (_, i) => tickTimes[0]! + i * 1000)
      expect(tickTimes).toEqual(expected)
      const [schedule] = yield* sql<{ skipped: string; last: Date }>`
        SELECT skipped_ticks AS skipped, last_tick_at AS last FROM runstream_schedules WHERE name = 'beat'`
      expect(Number(schedule!.skipped)).toBe(0)
      // A ticker stopped between a tick's start and its commit leaves the row one tick behind its
      // last run (the next claim would answer that run again, not start another).
      expect(schedule!.last.getTime()).toBeLessThanOrEqual(tickTimes.at(-1)!)
      expect(schedule!.last.getTime()).toBeGreaterThanOrEqual(tickTimes.at(-1)! - 5000)
      // How late each run was created after its tick (for the record: docs/decisions.md).
      const lags = rows.map((row, i) => row.created.getTime() - tickTimes[i]!).sort((a, b) => a - b)
      const at = (q: number) => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))]
      yield* Effect.logInfo(
        `schedules across processes: ${tickTimes.length} ticks, each once, from ${keys[0]} to ${keys.at(-1)}; ` +
          `run created after its tick: p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${lags.at(-1)} ms`
      )
    }).pipe(Effect.provide(watcher), Effect.provide(TestDatabase.layerUrl)), { timeout: (ticks * 3 + 240) * 1000 })
})
