/**
 * `npm run bench -- --compare graphile-worker`: graphile-worker 0.17 (a dev
 * dependency) drains the same number of no-op jobs as the throughput phase, on
 * the same server (a fresh database each), with the same concurrency, in its
 * own process (`graphile-worker.ts`, bundled and on plain node as Runstream's
 * worker is), each repetition interleaved with Runstream's, so that both see
 * the same machine. Prints jobs/s of each and the ratio Runstream / graphile.
 *
 * graphile-worker is set up for throughput as its documentation says
 * (https://worker.graphile.org/docs/performance#batching): a local queue of
 * 500 jobs locked at once, completions and failures batched, prepared
 * statements. It writes one row per job, deletes it when done, and logs nothing;
 * Runstream writes the run, its event log and the outbox, and publishes every event.
 */
import { join } from "node:path"
import { Effect } from "effect"
import { bundle } from "../bundle.ts"
import { BenchError, makeDatabase, median, spawnChild } from "./common.ts"
import type { GraphileLatency, GraphileResult } from "./graphile-worker.ts"

export const competitors = ["graphile-worker"] as const

/** graphile-worker's throughput settings (see the module's comment). */
export const graphileSettings = {
  localQueueSize: 500,
  /** `completeJobBatchDelay` and `failJobBatchDelay`: 0 batches the calls of one tick of the event loop. */
  batchDelayMs: 0
} as const

export interface GraphileRep extends GraphileResult {
  readonly workerCpuMsPerJob: number
  readonly postgresCpuMsPerJob: number | undefined
}

const bundleGraphileWorker = (here: string) =>
  Effect.tryPromise({
    try: async () => {
      const outfile = join(here, "..", "node_modules", ".cache", "runstream-bench", String(process.pid), "graphile-worker.mjs")
      await bundle(join(here, "bench", "graphile-worker.ts"), outfile)
      return outfile
    },
    catch: (cause) => new BenchError({ message: `could not bundle the graphile-worker process: ${String(cause)}`, cause })
  })

/** One drain of `jobs` no-op jobs by graphile-worker on a fresh database. */
export const graphileRep = (options: {
  readonly serverUrl: string
  /** The scripts/ directory. */
  readonly here: string
  readonly jobs: number
  readonly batch: number
  readonly concurrency: number
  readonly execArgv: ReadonlyArray<string>
  /** The server's CPU seconds so far (local servers), to charge Postgres's share. */
  readonly postgresCpuSeconds: () => number | undefined
  readonly afterDrain: (database: string) => Effect.Effect<void>
}) =>
  Effect.scoped(Effect.gen(function*() {
    const db = yield* makeDatabase(options.serverUrl)
    const child = yield* spawnChild({
      script: yield* bundleGraphileWorker(options.here),
      args: [options.jobs, options.concurrency, graphileSettings.localQueueSize, graphileSettings.batchDelayMs, options.batch].map(String),
      env: { BENCH_DATABASE_URL: db.url },
      execArgv: options.execArgv,
      plainNode: true
    })
    yield* child.next("ready")
    const pgBefore = options.postgresCpuSeconds()
    const drained = yield* child.next("drained")
    const pgAfter = options.postgresCpuSeconds()
    const result = (yield* child.next("result"))["result"] as GraphileResult
    yield* child.exited
    yield* options.afterDrain(db.name)
    return {
      ...result,
      workerCpuMsPerJob: Number(drained["cpuSeconds"]) * 1000 / options.jobs,
      postgresCpuMsPerJob: pgBefore === undefined || pgAfter === undefined ? undefined : (pgAfter - pgBefore) * 1000 / options.jobs
    } satisfies GraphileRep
  }))

/** graphile-worker's start latency on a fresh database: `starts` jobs added one at a time to idle workers. */
export const graphileLatencyRep = (options: {
  readonly serverUrl: string
  readonly here: string
  readonly starts: number
  readonly warmup: number
  readonly concurrency: number
}) =>
  Effect.scoped(Effect.gen(function*() {
    const db = yield* makeDatabase(options.serverUrl)
    const child = yield* spawnChild({
      script: yield* bundleGraphileWorker(options.here),
      args: [options.starts, options.concurrency, graphileSettings.localQueueSize, graphileSettings.batchDelayMs, options.warmup, "latency"]
        .map(String),
      env: { BENCH_DATABASE_URL: db.url },
      execArgv: [],
      plainNode: true
    })
    const result = (yield* child.next("result"))["result"] as GraphileLatency
    yield* child.exited
    return result
  }))

const fmt = (n: number | undefined, digits = 0) =>
  n === undefined || !Number.isFinite(n)
    ? "-"
    : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

/** Runstream's throughput repetitions beside graphile-worker's, and the ratio of each. */
export const comparisonReport = (
  runstream: ReadonlyArray<{ readonly runsPerSec: number; readonly workerCpuMsPerRun: number; readonly postgresCpuMsPerRun: number | undefined }>,
  graphile: ReadonlyArray<GraphileRep>,
  latency: {
    readonly runstream: ReadonlyArray<{ readonly p50: number; readonly p99: number }>
    readonly graphile: ReadonlyArray<GraphileLatency>
  }
) => {
  const n = Math.min(runstream.length, graphile.length)
  const ratios = Array.from({ length: n }, (_, i) => runstream[i]!.runsPerSec / graphile[i]!.jobsPerSec)
  runstream = runstream.slice(0, n)
  graphile = graphile.slice(0, n)
  const each = <A>(xs: ReadonlyArray<A>, f: (a: A) => number | undefined, digits: number) =>
    `${fmt(median(xs.map((x) => f(x) ?? Number.NaN)), digits)}  (${xs.map((x) => fmt(f(x), digits)).join(" / ")})`
  const lines = [
    `Compared with graphile-worker (local queue ${graphileSettings.localQueueSize}, batched completions, concurrency as above), interleaved, median (each repetition):`,
    `  Runstream runs/s             ${each(runstream, (r) => r.runsPerSec, 0)}`,
    `  graphile-worker jobs/s       ${each(graphile, (g) => g.jobsPerSec, 0)}`,
    `  ratio Runstream / graphile   ${each(ratios, (r) => r, 2)}`,
    `  worker CPU per run / job (ms)    Runstream ${each(runstream, (r) => r.workerCpuMsPerRun, 3)}, graphile ${each(graphile, (g) => g.workerCpuMsPerJob, 3)}`,
    `  postgres CPU per run / job (ms)  Runstream ${each(runstream, (r) => r.postgresCpuMsPerRun, 3)}, graphile ${each(graphile, (g) => g.postgresCpuMsPerJob, 3)}`,
    `  graphile-worker peak RSS (MB) ${each(graphile, (g) => g.peakRssMB, 1)}`,
    ...(latency.graphile.length === 0 ? [] : [
      `  start latency p50 (ms)       Runstream ${each(latency.runstream, (l) => l.p50, 2)}, graphile ${each(latency.graphile, (l) => l.p50, 2)}`,
      `  start latency p99 (ms)       Runstream ${each(latency.runstream, (l) => l.p99, 2)}, graphile ${each(latency.graphile, (l) => l.p99, 2)}`
    ])
  ]
  return { text: lines.join("\n"), ratio: n === 0 ? undefined : median(ratios), graphileJobsPerSec: n === 0 ? undefined : median(graphile.slice(0, n).map((g) => g.jobsPerSec)) }
}
