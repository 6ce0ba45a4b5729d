/**
 * Helpers shared by the queue and worker tests: short worker timings, programs
 * that share one database, and readers of a run's log and queue row.
 */
import { SqlClient } from "@effect/sql"
import { ConfigProvider, Context, Duration, Effect, Layer, Option, Stream } from "effect"
import * as EventBus from "../../src/bus/index.ts"
import * as Database from "../../src/Database.ts"
import type { RunId } from "../../src/domain/Ids.ts"
import type { RunEvent } from "../../src/domain/RunEvent.ts"
import { Runs } from "../../src/Runs.ts"
import * as Runstream from "../../src/Runstream.ts"
import * as Task from "../../src/Task.ts"
import { TestDatabase } from "../../src/testing/index.ts"
import * as Workers from "../../src/Workers.ts"

/**
 * Workers tuned for tests: a missed wake-up costs a fraction of a second,
 * while a live worker's lease survives a busy machine. (How soon an expired
 * lease is reclaimed is the program's: `reclaimInterval` of `RunstreamTest.layer`.)
 */
export const fastWorkers = {
  lease: "10 seconds",
  pollInterval: "200 millis",
  shutdownGrace: "500 millis"
} as const satisfies Workers.WorkersSettings

/**
 * A buffer that takes runs while the pool's runners are busy. The default one
 * adapts to how fast runs end, and stays empty while a test holds its only
 * runner: tests of buffered runs need this one.
 */
export const fixedBuffer = { prefetch: 10, prefetchWindow: Duration.infinity } as const satisfies Workers.WorkersSettings

/**
 * One program on the database named by the `DatabaseUrl` in context
 * (`TestDatabase.layerUrl`), so that several programs can share it. The bus is
 * `postgres`: whichever program's relay drains an event, every program sees it.
 */
export const programOn = <const Tasks extends ReadonlyArray<Task.Any>>(options: {
  readonly tasks: Tasks
  readonly workers: Workers.WorkersSettings | false
  readonly queues?: Runstream.RuntimeOptions["queues"]
}) => {
  // A lease set up to expire is reclaimed within a fraction of a second.
  const reclaimInterval = "200 millis"
  const queues = options.queues
  const runtime = options.workers === false
    ? Runstream.layerRuntime({ bus: EventBus.layerPostgres, reclaimInterval, queues })
    : Runstream.layerWithWorkers({ bus: EventBus.layerPostgres, reclaimInterval, queues, workers: options.workers })
  return runtime.pipe(
    Layer.provideMerge(Task.layerRegistry(...options.tasks)),
    Layer.provideMerge(Database.layerClient({ maxConnections: 4, connectTimeout: TestDatabase.connectTimeout }))
  )
}

/** Runs `self` with a pool of workers added to the current program, stopped when `self` ends. */
export const withWorkers = (options: Workers.WorkersSettings = fastWorkers) =>
<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.provide(self, Workers.layer({ ...fastWorkers, ...options }))

/** How long a test waits for a run or an event: far beyond need, under the test's own timeout. */
export const patience = "40 seconds"

/** The run's whole log as stored. */
export const logOf = (runId: RunId) =>
  Effect.flatMap(Runs, (runs) => runs.readEvents(runId, { after: 0 }))

export const typesOf = (events: ReadonlyArray<RunEvent>) => events.map((event) => event.type)

/** Waits, on the run's live stream, for its first event of `type` (fails the test if the run ends first). */
export const waitForEvent = (runId: RunId, type: string) =>
  Effect.flatMap(Runs, (runs) =>
    runs.events(runId).pipe(
      Stream.filter((event) => event.type === type),
      Stream.runHead,
      Effect.flatMap(Option.match({
        onNone: () => Effect.dieMessage(`run ${runId} ended without a ${type} event`),
        onSome: Effect.succeed
      })),
      Effect.timeoutFail({ duration: patience, onTimeout: () => new Error(`no ${type} event on ${runId} in time`) }),
      Effect.orDie
    ))

/** The run's row in the hot queue table, if it is still there. */
export const jobOf = (runId: RunId) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ attempt: number; locked_by: string | null; locked_until: Date | null; run_at: Date }>`
      SELECT attempt, locked_by, locked_until, run_at FROM runstream_jobs WHERE run_id = ${runId}`
    return Option.fromNullable(rows[0])
  })

/** How many rows each table holds: what a refused request must leave untouched. */
export const rowCounts = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ runs: number; events: number; jobs: number; outbox: number }>`
    SELECT (SELECT count(*)::integer FROM runstream_runs) AS runs,
      (SELECT count(*)::integer FROM runstream_events) AS events,
      (SELECT count(*)::integer FROM runstream_jobs) AS jobs,
      (SELECT count(*)::integer FROM runstream_outbox) AS outbox`
  return rows[0]!
})

/** The data of a system event (they are all objects). */
export const dataOf = (event: RunEvent) => event.data as Record<string, unknown>

/** How many times each step's effect ran, by `runId/step`: side effects counted outside the database. */
export class Effects extends Context.Tag("test/queue/Effects")<Effects, Map<string, number>>() {}

/** A step's side effect: counts one more run of `runId/step`, and returns the count. */
export const sideEffect = (runId: RunId, step: string) =>
  Effect.flatMap(Effects, (effects) =>
    Effect.sync(() => {
      const n = (effects.get(`${runId}/${step}`) ?? 0) + 1
      effects.set(`${runId}/${step}`, n)
      return n
    }))

/**
 * For tests under TestClock: the relay's poll and the streams' idle check
 * wait an hour, so that the program's fallback timers do not fire as the
 * test moves the clock (what they would find is found by notifications).
 */
export const slowTimers = Layer.setConfigProvider(
  ConfigProvider.orElse(
    ConfigProvider.fromMap(new Map([["RUNSTREAM_RELAY_POLL", "1 hours"], ["RUNSTREAM_STREAM_IDLE_CHECK", "1 hours"]])),
    () => ConfigProvider.fromEnv()
  )
)
