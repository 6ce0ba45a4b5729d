/**
 * The comparison's worker process (`npm run bench -- --compare graphile-worker`):
 * graphile-worker (a dev dependency) draining no-op jobs on its own database,
 * set up for throughput as its documentation says (a local queue that locks
 * jobs in batches, batched completions and failures, prepared statements), in
 * its own process like Runstream's throughput worker. Plain async code, no
 * Effect: what a graphile-worker user would write.
 *
 * Before `ready` it installs graphile-worker's schema and adds the jobs in
 * batches (as the bench starts Runstream's runs with `startMany`); then it runs
 * the worker and measures from the first job's start to the moment the jobs
 * table is empty (the last batched completion committed), and checks that every
 * job ran once and none failed.
 *
 * With `latency` as its sixth argument it measures start latency instead, as
 * the bench's latency phase does for Runstream: idle workers, `<jobs>` jobs
 * added one after the other with `addJob` (after `<addBatch>` unmeasured ones),
 * each from the call to the first line of its task, the next added once the
 * previous one completed.
 *
 * argv: <jobs> <concurrency> <localQueueSize> <batchDelayMs> <addBatch> [latency]; env: BENCH_DATABASE_URL.
 */
import { makeWorkerUtils, run, Logger } from "graphile-worker"
import pg from "pg"

export interface GraphileResult {
  readonly jobs: number
  readonly jobsPerSec: number
  /** Jobs added per second (`addJobs` batches), before the worker ran. */
  readonly addJobsPerSec: number
  /** From the first `job:start` to the jobs table found empty (ms). */
  readonly drainMs: number
  readonly peakRssMB: number
  /** The drain's window on the monotonic clock (ms), to cut a `--cpu-prof` profile to it. */
  readonly drainFromMono: number
  readonly drainToMono: number
}

export interface GraphileLatency {
  readonly p50: number
  readonly p95: number
  readonly p99: number
  /** `addJob` alone, p50 (ms). */
  readonly addJobP50: number
}

const [jobs, concurrency, localQueueSize, batchDelay, addBatch] = process.argv.slice(2, 7).map(Number) as [
  number,
  number,
  number,
  number,
  number
]
const mode = process.argv[7] === "latency" ? "latency" : "throughput"
const connectionString = process.env["BENCH_DATABASE_URL"]!
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6
const toParent = (message: Record<string, unknown>) =>
  new Promise<void>((resolve) => process.send!(message, undefined, undefined, () => resolve()))
// Errors only, to stderr: the bench's output stays a table.
const quiet = new Logger(() => (level, message) => {
  if (level === "error") process.stderr.write(`graphile-worker: ${message}\n`)
})

const preset = {
  worker: {
    concurrentJobs: concurrency,
    maxPoolSize: concurrency + 2,
    preparedStatements: true,
    localQueue: { size: localQueueSize },
    completeJobBatchDelay: batchDelay,
    failJobBatchDelay: batchDelay
  }
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

const latency = async () => {
  const utils = await makeWorkerUtils({ connectionString, logger: quiet })
  await utils.migrate()
  await utils.release()
  let onBody: (at: number) => void = () => {}
  let onComplete: () => void = () => {}
  const runner = await run({
    connectionString,
    logger: quiet,
    noHandleSignals: true,
    taskList: { probe: async () => onBody(nowMs()) },
    preset
  })
  runner.events.on("job:complete", () => onComplete())
  const toBody: Array<number> = []
  const addCall: Array<number> = []
  for (let i = -addBatch; i < jobs; i++) {
    const began = new Promise<number>((resolve) => {
      onBody = resolve
    })
    const completed = new Promise<void>((resolve) => {
      onComplete = resolve
    })
    const start = nowMs()
    await runner.addJob("probe", { i })
    const returned = nowMs()
    const bodyAt = await began
    // The next job finds the workers idle again.
    await completed
    if (i >= 0) {
      toBody.push(bodyAt - start)
      addCall.push(returned - start)
    }
  }
  await runner.stop()
  const sorted = [...toBody].sort((a, b) => a - b)
  const result: GraphileLatency = {
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    addJobP50: percentile([...addCall].sort((a, b) => a - b), 50)
  }
  await toParent({ type: "result", result })
}

const main = async () => {
  const utils = await makeWorkerUtils({ connectionString, logger: quiet })
  let addMs: number
  try {
    await utils.migrate()
    const start = nowMs()
    for (let done = 0; done < jobs; done += addBatch) {
      const size = Math.min(addBatch, jobs - done)
      await utils.addJobs(Array.from({ length: size }, () => ({ identifier: "noop", payload: {} })))
    }
    addMs = nowMs() - start
  } finally {
    await utils.release()
  }

  let started = 0
  let completed = 0
  let errors = 0
  let firstStart: number | undefined
  let peakRss = process.memoryUsage.rss()
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss())
  }, 25)
  let allComplete!: () => void
  const completedAll = new Promise<void>((resolve) => {
    allComplete = resolve
  })

  await toParent({ type: "ready" })
  const cpuBefore = process.cpuUsage()
  const wallBefore = nowMs()
  const runner = await run({
    connectionString,
    logger: quiet,
    noHandleSignals: true,
    taskList: { noop: async () => {} },
    preset
  })
  runner.events.on("job:start", () => {
    if (started++ === 0) firstStart = nowMs()
  })
  runner.events.on("job:error", () => {
    errors++
  })
  // Emitted when the worker is done with a job; the batched DELETE that
  // completes it in the database may still be pending.
  runner.events.on("job:complete", () => {
    if (++completed === jobs) allComplete()
  })
  const timeout = setTimeout(() => {
    void toParent({ type: "error", message: `only ${completed} of ${jobs} jobs completed within 180 s` }).then(() => process.exit(1))
  }, 180_000)
  await completedAll
  // The end: the last batched completion committed (the jobs table is empty).
  const probe = new pg.Client({ connectionString })
  await probe.connect()
  let left = -1
  while (left !== 0) {
    const result = await probe.query<{ n: number }>("SELECT count(*)::integer AS n FROM graphile_worker._private_jobs")
    left = result.rows[0]!.n
  }
  const end = nowMs()
  clearTimeout(timeout)
  const cpu = process.cpuUsage(cpuBefore)
  await toParent({ type: "drained", cpuSeconds: (cpu.user + cpu.system) / 1e6, wallSeconds: (end - wallBefore) / 1000 })
  clearInterval(sampler)
  await probe.end()
  await runner.stop()
  if (errors > 0 || started !== jobs) {
    await toParent({ type: "error", message: `${started} jobs started for ${jobs}, ${errors} failed` })
    process.exit(1)
  }
  const drainMs = end - firstStart!
  const result: GraphileResult = {
    jobs,
    jobsPerSec: jobs / (drainMs / 1000),
    addJobsPerSec: jobs / (addMs / 1000),
    drainMs,
    peakRssMB: Math.max(peakRss, process.resourceUsage().maxRSS * 1024) / 1024 / 1024,
    drainFromMono: wallBefore,
    drainToMono: end
  }
  await toParent({ type: "result", result })
}

;(mode === "latency" ? latency() : main()).then(
  () => process.exit(0),
  (error: unknown) => toParent({ type: "error", message: String(error) }).then(() => process.exit(1))
)
