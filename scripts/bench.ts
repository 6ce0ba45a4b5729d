/**
 * Runstream's benchmark: `npm run bench [-- flags]`. See docs/benchmarks.md.
 *
 * Runs against `DATABASE_URL` (or an embedded Postgres started for the
 * occasion), each repetition on a fresh database created on that server and
 * dropped after. Prints a table (median and each repetition, target, pass or
 * fail) and, with `--json`, ends with one line of JSON.
 *
 * Phases (each repeated, 3 times by default, the median reported):
 * - throughput: N runs of a no-op task started in batches with `Runs.startMany`,
 *   then a worker process (concurrency 10) drains them; runs/s from the first
 *   claim to the last terminal event published by the relay. Also the worker
 *   process's peak RSS.
 * - latency: idle in-process workers, runs started one at a time; time from the
 *   `start` call to the task body beginning.
 * - delivery: one run emitting ticks on a schedule while M subscribers follow it
 *   with `Runs.events`; time from `emit` returning to each subscriber receiving
 *   the event. With the postgres bus the emitter is another process.
 * - backfill: a run of 100,000 events read from seq 0 with `Runs.events`.
 * - fanout: 1,000 SSE clients over HTTP on one server process, following 10
 *   runs that emit 10 events/s each (scripts/bench/fanout.ts).
 * - concurrency: the throughput phase's drain with a limit of 1 per key over 1,000 keys.
 * - sleepers: 10,000 runs put to sleep for an hour (`ctx.sleep`) by the worker
 *   process, the places and connections they hold counted, then the throughput
 *   phase's drain beside them (its ratio to the throughput phase's, whose
 *   repetitions it alternates with when both run).
 */
import { SqlClient } from "@effect/sql"
import { NodeRuntime } from "@effect/platform-node"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Cause, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Queue, Redacted, type Scope, Stream } from "effect"
import type { RunId } from "../src/domain/Ids.ts"
import * as Embedded from "../src/internal/embeddedPostgres.ts"
import * as Main from "../src/main/Main.ts"
import { Runs } from "../src/Runs.ts"
import {
  admin,
  type BenchBus,
  BenchError,
  Burst,
  calibrate,
  type Calibration,
  describeUrl,
  makeDatabase,
  makePaced,
  makeProbe,
  median,
  LimitedNoop,
  limitedKeys,
  Noop,
  nowMs,
  Sleeper,
  percentile,
  programLayer,
  quietLogs,
  sortNumbers,
  spawnChild,
  withDatabase
} from "./bench/common.ts"
import type { EmitterResult } from "./bench/delivery-emitter.ts"
import { type FanoutRep, fanoutRep } from "./bench/fanout.ts"
import { bundle, nodeFlags } from "./bundle.ts"
import { backlogStatements } from "./retention-backlog.ts"
import type { AsleepMessage, ThroughputResult } from "./bench/throughput-worker.ts"
import { comparisonReport, competitors, graphileLatencyRep, graphileRep, type GraphileRep } from "./bench/graphile.ts"
import type { GraphileLatency } from "./bench/graphile-worker.ts"

const here = dirname(fileURLToPath(import.meta.url))

// ---------------------------------------------------------------------------
// Flags

interface Flags {
  readonly json: boolean
  readonly reps: number
  readonly phases: ReadonlySet<string>
  readonly runs: number
  readonly batch: number
  readonly concurrency: number
  readonly latencyRuns: number
  readonly warmup: number
  readonly subscribers: number
  readonly events: number
  readonly intervalMs: number
  readonly deliveryWarmup: number
  readonly bus: "postgres" | "memory" | "nats" | "both"
  readonly backfill: number
  readonly fanoutClients: number
  readonly fanoutEvents: number
  readonly cpuProf: string | undefined
  readonly pgStats: boolean
  readonly bundleWorker: boolean
  /** Extra Node/V8 flags for the throughput worker, after the production ones (the last of a flag wins). */
  readonly workerFlags: ReadonlyArray<string>
  /** The sizes the targets are set for (issue 4's): other sizes get no pass or fail. */
  readonly targetSizes: boolean
  /** `--retention-backlog N`: the throughput phase with the retention deleting N old runs meanwhile. */
  readonly retentionBacklog: number
  /** `--sleepers N`: the sleepers phase's sleeping runs. */
  readonly sleepers: number
  /** `--compare graphile-worker`: the throughput phase interleaved with graphile-worker's (scripts/bench/graphile.ts). */
  readonly compare: (typeof competitors)[number] | undefined
}

const usage = `usage: npm run bench -- [flags]
  --json                 end with one line of JSON
  --quick                small sizes for a smoke run (2,000 runs, 100 starts, 20 subscribers, 10,000 events, 1,000 sleepers)
  --reps N               repetitions per phase (3)
  --phases a,b           throughput,latency,delivery,backfill,fanout,concurrency,sleepers (all)
  --runs N               throughput: runs to drain (20000)
  --batch N              throughput: runs per startMany (1000)
  --concurrency N        worker concurrency (10)
  --sleepers N           sleepers: runs put to sleep for an hour before the drain (10000)
  --latency-runs N       latency: runs started one at a time (500)
  --warmup N             latency: unmeasured starts first (20)
  --subscribers N        delivery: subscribers following the run (100)
  --events N             delivery: ticks emitted (200)
  --interval-ms N        delivery: ms between emits (20)
  --delivery-warmup N    delivery: events of an unmeasured first run in the same processes (100)
  --bus B                delivery: postgres (cross-process), memory, or both (both; the JSON reports postgres);
                         nats: cross-process on NATS (RUNSTREAM_NATS_URL) instead of postgres, and memory
  --backfill N           backfill: events in the run (100000)
  --fanout-clients N     fanout: SSE clients over the 10 runs (1000)
  --fanout-events N      fanout: ticks per run, 10/s (100)
  --cpu-prof DIR         write V8 CPU profiles of the child processes to DIR
  --pg-stats             print pg_stat_statements' top statements per phase (needs the extension preloaded)
  --worker-flags "F"     extra node flags for the throughput worker, after the production ones (to try
                         GC settings, say: "--max-semi-space-size=16")
  --compare graphile-worker
                         throughput: graphile-worker drains as many jobs in each repetition, interleaved, and
                         the ratio Runstream / graphile is printed (with all phases unless --phases says)
  --retention-backlog N  throughput: seed N old finished runs (scripts/retention-backlog.ts) before each drain, and
                         run the retention in the worker process, deleting them while it drains (0)
  --tsx-worker           run the throughput worker through the tsx loader instead of as a bundle on plain
                         node (the production form, \`npm run bundle\`); the loader adds about 90 MB`

const allPhases = ["throughput", "latency", "delivery", "backfill", "fanout", "concurrency", "sleepers"]

const parseFlags = (argv: ReadonlyArray<string>): Flags => {
  const values = new Map<string, string>()
  const switches = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith("--")) throw new Error(`unexpected argument '${arg}'\n${usage}`)
    // Split at the first "=" only: a value may hold more (--worker-flags=--max-semi-space-size=16).
    const eq = arg.indexOf("=")
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    const inline = eq === -1 ? undefined : arg.slice(eq + 1)
    if (["json", "quick", "pg-stats", "tsx-worker", "help"].includes(name)) switches.add(name)
    else if (inline !== undefined) values.set(name, inline)
    else if (i + 1 < argv.length) values.set(name, argv[++i]!)
    else throw new Error(`--${name} needs a value\n${usage}`)
  }
  if (switches.has("help")) {
    console.log(usage)
    process.exit(0)
  }
  const quick = switches.has("quick")
  const int = (name: string, fallback: number, quickFallback = fallback) => {
    const raw = values.get(name)
    values.delete(name)
    const n = raw === undefined ? (quick ? quickFallback : fallback) : Number(raw)
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number`)
    return n
  }
  // A size the targets are set for: any other value (or --quick) leaves the figures unjudged.
  let targetSizes = true
  const size = (name: string, fallback: number, quickFallback = fallback) => {
    const n = int(name, fallback, quickFallback)
    if (n !== fallback) targetSizes = false
    return n
  }
  const phases = values.get("phases") ?? allPhases.join(",")
  values.delete("phases")
  const bus = values.get("bus") ?? "both"
  values.delete("bus")
  if (bus !== "postgres" && bus !== "memory" && bus !== "nats" && bus !== "both") throw new Error("--bus is postgres, memory, nats or both")
  const cpuProf = values.get("cpu-prof")
  values.delete("cpu-prof")
  const workerFlags = (values.get("worker-flags") ?? "").split(" ").filter((flag) => flag !== "")
  values.delete("worker-flags")
  if (workerFlags.some((flag) => !flag.startsWith("--"))) throw new Error("--worker-flags takes node flags, each starting with --")
  const flags: Omit<Flags, "targetSizes" | "compare"> = {
    json: switches.has("json"),
    reps: int("reps", 3),
    phases: new Set(phases.split(",").map((p) => p.trim())),
    runs: size("runs", 20_000, 2_000),
    batch: size("batch", 1_000),
    concurrency: size("concurrency", 10),
    latencyRuns: size("latency-runs", 500, 100),
    warmup: int("warmup", 20, 10),
    subscribers: size("subscribers", 100, 20),
    events: size("events", 200, 50),
    intervalMs: size("interval-ms", 20),
    deliveryWarmup: int("delivery-warmup", 100, 20),
    bus,
    backfill: size("backfill", 100_000, 10_000),
    fanoutClients: size("fanout-clients", 1000, 200),
    fanoutEvents: size("fanout-events", 100, 30),
    cpuProf: cpuProf === undefined ? undefined : resolve(cpuProf),
    pgStats: switches.has("pg-stats"),
    bundleWorker: !switches.has("tsx-worker"),
    workerFlags,
    retentionBacklog: int("retention-backlog", 0),
    sleepers: size("sleepers", 10_000, 1_000)
  }
  const compare = values.get("compare")
  values.delete("compare")
  if (compare !== undefined && !competitors.includes(compare as never)) throw new Error(`--compare takes ${competitors.join(", ")}`)
  if (values.size > 0) throw new Error(`unknown flag(s): ${[...values.keys()].map((k) => `--${k}`).join(", ")}\n${usage}`)
  for (const phase of flags.phases) {
    if (!allPhases.includes(phase)) throw new Error(`unknown phase '${phase}'`)
  }
  return { ...flags, targetSizes, compare: compare as Flags["compare"] }
}

/** Fails with `message` when `self` takes longer than `duration`. */
const within = (duration: Duration.DurationInput, message: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(self, { duration, onTimeout: () => new BenchError({ message: `${message} within ${Duration.format(duration)}` }) })

const progress = (line: string) => Effect.sync(() => process.stderr.write(`${line}\n`))

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "-"

// ---------------------------------------------------------------------------
// The server

interface Server {
  readonly url: string
  readonly kind: "DATABASE_URL" | "embedded"
  readonly version: string
  readonly local: boolean
  /** The server's postmaster pid, when it runs on this machine (for its CPU time). */
  readonly postmaster: number | undefined
}

/** `DATABASE_URL`, or an embedded Postgres in a temporary directory for this bench alone. */
const acquireServer = (flags: Flags) => Effect.gen(function*() {
  const given = process.env["DATABASE_URL"]
  let url: string
  let kind: Server["kind"]
  if (given !== undefined && given !== "") {
    url = given
    kind = "DATABASE_URL"
  } else {
    const dir = mkdtempSync(join(tmpdir(), "runstream-bench-pg-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
    yield* progress(`starting an embedded Postgres in ${dir}`)
    const server = yield* Embedded.start({
      dataDir: dir,
      persistent: false,
      maxConnections: 200,
      // --pg-stats: the embedded server can preload the extension itself.
      settings: flags.pgStats ? { shared_preload_libraries: "pg_stat_statements" } : {}
    })
    url = Redacted.value(server.url)
    kind = "embedded"
  }
  const [row] = yield* admin(url, `SELECT current_setting('server_version') AS version,
    (SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer') AS pid`)
  const local = ["127.0.0.1", "localhost", "::1", ""].includes(new URL(url).hostname)
  // The checkpointer's parent is the postmaster: its process tree is the server's CPU.
  const ppid = local ? procStat(Number(row?.["pid"]))?.[1] : undefined
  return { url, kind, version: String(row?.["version"]), local, postmaster: ppid === undefined ? undefined : Number(ppid) } satisfies Server
})

/** The fields of /proc/<pid>/stat after the command name (Linux). */
const procStat = (pid: number | string): Array<string> | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  } catch {
    return undefined
  }
}

/**
 * CPU seconds used by one Postgres server (local, Linux): its postmaster, the
 * live children, and the children that exited (the postmaster's cutime and
 * cstime), so a backend ending between two readings is still counted.
 */
const postgresCpuSeconds = (postmaster: number | undefined): number | undefined => {
  if (postmaster === undefined) return undefined
  const main = procStat(postmaster)
  if (main === undefined) return undefined
  let ticks = Number(main[11]) + Number(main[12]) + Number(main[13]) + Number(main[14])
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue
    const fields = procStat(pid)
    if (fields !== undefined && fields[1] === String(postmaster)) ticks += Number(fields[11]) + Number(fields[12])
  }
  return ticks / 100
}

/** pg_stat_statements' heaviest statements of one database, for `--pg-stats`. */
const statementReport = (server: Server, database: string, title: string) =>
  admin(server.url, `
    SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms, rows,
      shared_blks_hit + shared_blks_read AS blocks, wal_bytes,
      left(regexp_replace(query, '\\s+', ' ', 'g'), 150) AS query
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)
    ORDER BY total_exec_time DESC LIMIT 10`, [database]).pipe(
    Effect.flatMap((rows) =>
      progress([
        `  pg_stat_statements, ${title} (${database}):`,
        "      calls   total ms    mean ms       rows     blocks    WAL bytes  query",
        ...rows.map((r) =>
          `  ${fmt(Number(r["calls"])).padStart(9)} ${String(r["total_ms"]).padStart(10)} ${String(r["mean_ms"]).padStart(10)} ${
            fmt(Number(r["rows"])).padStart(10)
          } ${fmt(Number(r["blocks"])).padStart(10)} ${fmt(Number(r["wal_bytes"])).padStart(12)}  ${r["query"]}`
        )
      ].join("\n"))
    ),
    Effect.catchAll((error) => progress(`  (pg_stat_statements unavailable: ${error.message.split("\n")[0]})`))
  )

/** Rows written per table (heap-only updates apart), for `--pg-stats`: the database's connections have closed. */
const tableReport = (server: Server, database: string) =>
  admin(withDatabase(server.url, database), `
    SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables
    WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname`).pipe(
    Effect.flatMap((rows) =>
      progress(`  rows written: ${rows.map((r) => `${r["relname"]} ins ${r["n_tup_ins"]} upd ${r["n_tup_upd"]} (hot ${r["n_tup_hot_upd"]}) del ${r["n_tup_del"]}`).join("; ")}`)
    ),
    Effect.catchAll(() => Effect.void)
  )

/**
 * With `--cpu-prof`, the window of a measurement on the monotonic clock, to cut
 * a profile of this process (run it as `node --cpu-prof --import tsx scripts/bench.ts`) to it.
 */
const profileWindow = (flags: Flags, start: number) =>
  flags.cpuProf === undefined ? Effect.void : progress(`  (bench profile window, monotonic ms: ${start.toFixed(1)} ${nowMs().toFixed(1)})`)

const childExecArgv = (flags: Flags, name: string): ReadonlyArray<string> =>
  flags.cpuProf === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${join(flags.cpuProf, name)}`]

/**
 * The throughput worker as one ES module bundle (as `npm run bundle` makes the
 * production entry points), in node_modules/.cache so that its external
 * packages resolve. Run on plain node, it is what a deployed worker costs.
 * One directory per bench process: worktrees share node_modules, and a bench
 * in another one must not replace this one's worker between its build and its start.
 */
const bundleWorker = Effect.tryPromise({
  try: async () => {
    const outfile = join(here, "..", "node_modules", ".cache", "runstream-bench", String(process.pid), "throughput-worker.mjs")
    await bundle(join(here, "bench", "throughput-worker.ts"), outfile)
    return outfile
  },
  catch: (cause) => new BenchError({ message: `could not bundle the throughput worker with esbuild: ${String(cause)}`, cause })
})

/** Waits until the outbox is empty: every event written so far was published. */
const waitOutbox = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    for (let i = 0; i < 3000; i++) {
      const [row] = yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_outbox`
      if (row!.n === 0) return
      yield* Effect.sleep(20)
    }
    return yield* new BenchError({ message: "the outbox did not drain within 60 s" })
  })

// ---------------------------------------------------------------------------
// Phases

interface ThroughputRep extends ThroughputResult {
  readonly insertRunsPerSec: number
  readonly workerCpuCores: number
  readonly postgresCpuCores: number | undefined
  readonly workerCpuMsPerRun: number
  /** Transactions committed in the bench database while the worker process ran, per 1,000 runs. */
  readonly commitsPer1000Runs: number
  readonly postgresCpuMsPerRun: number | undefined
  /** The sleepers phase's: what the sleeping runs cost before the drain. */
  readonly asleep?: Asleep | undefined
}

/** What `flags.sleepers` sleeping runs cost: how fast they went to sleep, then what they hold while they sleep. */
interface Asleep {
  readonly runsPerSec: number
  /** Jobs locked while they slept: the worker places held (a sleeping run should hold none). */
  readonly placesHeld: number
  /** Connections open to the bench database (all the worker process's: the bench's program had closed). */
  readonly connections: number
}

/**
 * The sleepers phase's first half: `flags.sleepers` runs of Sleeper started
 * (as the throughput phase starts its runs), then a worker process that puts
 * them to sleep and stops its pool once the places and connections they hold
 * are counted. The process is ready to drain the runs started next.
 */
const putToSleep = (server: Server, flags: Flags, db: { readonly name: string; readonly url: string }, spawnWorker: Effect.Effect<Worker, BenchError, Scope.Scope>) =>
  Effect.gen(function*() {
    yield* Effect.scoped(Effect.gen(function*() {
      const program = yield* Layer.build(programLayer({ url: db.url, tasks: [Sleeper], bus: "memory", workers: false }))
      const runs = Context.get(program, Runs)
      for (let done = 0; done < flags.sleepers; done += flags.batch) {
        const size = Math.min(flags.batch, flags.sleepers - done)
        yield* runs.startMany(Array.from({ length: size }, () => ({ task: Sleeper.name, input: {} })))
      }
      yield* waitOutbox(Context.get(program, SqlClient.SqlClient))
    }))
    const child = yield* spawnWorker
    const { seconds } = (yield* child.next("asleep")) as unknown as AsleepMessage
    // Connections first: the next query's own connection to the database would be counted.
    const [connections] = yield* admin(server.url, "SELECT count(*)::integer AS n FROM pg_stat_activity WHERE datname = $1", [db.name])
    const [jobs] = yield* admin(db.url, `SELECT count(*) FILTER (WHERE locked_until IS NOT NULL)::integer AS locked FROM runstream_jobs`)
    const asleep: Asleep = { runsPerSec: flags.sleepers / seconds, placesHeld: Number(jobs?.["locked"]), connections: Number(connections?.["n"]) }
    yield* child.send({ type: "measured" })
    yield* child.next("paused")
    yield* progress(
      `  (${fmt(flags.sleepers)} runs asleep in ${fmt(seconds, 1)} s, ${fmt(asleep.runsPerSec)} runs/s; while they sleep: ${
        fmt(asleep.placesHeld)
      } jobs locked, ${fmt(asleep.connections)} connections to the database)`
    )
    return { child, asleep }
  })

type Worker = Effect.Effect.Success<ReturnType<typeof spawnChild>>

/**
 * One drain of `flags.runs` runs by a worker process. `limited` (the
 * concurrency phase): runs of LimitedNoop (limit 1 per key), their keys
 * spread round-robin over `limitedKeys` keys. `sleepers` (the sleepers phase):
 * the same drain as the throughput phase's, by a worker process that has put
 * `flags.sleepers` runs to sleep first (`putToSleep`).
 */
const throughputRep = (server: Server, flags: Flags, rep: number, kind: "plain" | "limited" | "sleepers" = "plain") =>
  Effect.scoped(Effect.gen(function*() {
    const db = yield* makeDatabase(server.url)
    const limited = kind === "limited"
    const task = limited ? LimitedNoop : Noop
    const workerScript = flags.bundleWorker ? yield* bundleWorker : join(here, "bench", "throughput-worker.ts")
    const spawnWorker = spawnChild({
      script: workerScript,
      args: [String(flags.runs), String(flags.concurrency), ...(limited ? ["limited"] : [])],
      env: {
        BENCH_DATABASE_URL: db.url,
        RUNSTREAM_SUBSCRIBER_BUFFER: "1000000",
        ...(flags.retentionBacklog > 0 ? { BENCH_RETENTION: "1" } : {}),
        ...(kind === "sleepers" ? { BENCH_SLEEPERS: String(flags.sleepers) } : {})
      },
      // Bundled, it runs as the production worker does (`npm run start:worker`).
      execArgv: [...(flags.bundleWorker ? nodeFlags : []), ...flags.workerFlags, ...childExecArgv(flags, "throughput-worker")],
      plainNode: flags.bundleWorker
    })
    const sleeping = kind === "sleepers" ? yield* putToSleep(server, flags, db, spawnWorker) : undefined
    const insertMs = yield* Effect.scoped(Effect.gen(function*() {
      const program = yield* Layer.build(programLayer({ url: db.url, tasks: [task], bus: "memory", workers: false }))
      const runs = Context.get(program, Runs)
      const start = nowMs()
      for (let done = 0; done < flags.runs; done += flags.batch) {
        const size = Math.min(flags.batch, flags.runs - done)
        yield* runs.startMany(Array.from({ length: size }, (_, i) => ({
          task: task.name,
          input: {},
          options: limited ? { concurrencyKey: `key-${(done + i) % limitedKeys}` } : undefined
        })))
      }
      const elapsed = nowMs() - start
      // The starting program's relay publishes the run.queued events, as in production.
      yield* waitOutbox(Context.get(program, SqlClient.SqlClient))
      return elapsed
    }))
    if (flags.retentionBacklog > 0) {
      const seeding = nowMs()
      for (const statement of backlogStatements({ runs: flags.retentionBacklog })) yield* admin(db.url, statement)
      yield* admin(db.url, "VACUUM ANALYZE runstream_runs, runstream_events")
      yield* progress(`  (seeded ${fmt(flags.retentionBacklog)} old runs in ${fmt((nowMs() - seeding) / 1000, 1)} s)`)
    }
    const commits = admin(server.url, "SELECT xact_commit::float8 AS n FROM pg_stat_database WHERE datname = $1", [db.name]).pipe(
      Effect.map((rows) => Number(rows[0]?.["n"]))
    )
    const commitsBefore = yield* commits
    const child = sleeping?.child ?? (yield* spawnWorker)
    if (sleeping !== undefined) yield* child.send({ type: "drain" })
    yield* child.next("ready")
    const pgBefore = postgresCpuSeconds(server.postmaster)
    const readyAt = nowMs()
    const drained = yield* child.next("drained")
    const pgAfter = postgresCpuSeconds(server.postmaster)
    const wall = (nowMs() - readyAt) / 1000
    const result = (yield* child.next("result"))["result"] as ThroughputResult
    // Backends report their counters when they exit.
    yield* child.exited
    yield* Effect.sleep("200 millis")
    const commitsAfter = yield* commits
    if (flags.pgStats) yield* Effect.zipRight(statementReport(server, db.name, `throughput rep ${rep}`), tableReport(server, db.name))
    if (flags.cpuProf !== undefined) {
      yield* progress(`  (worker profile window, monotonic ms: ${result.drainFromMono.toFixed(1)} ${result.drainToMono.toFixed(1)})`)
    }
    const out: ThroughputRep = {
      ...result,
      insertRunsPerSec: flags.runs / (insertMs / 1000),
      workerCpuCores: Number(drained["cpuSeconds"]) / Number(drained["wallSeconds"]),
      postgresCpuCores: pgBefore === undefined || pgAfter === undefined ? undefined : (pgAfter - pgBefore) / wall,
      commitsPer1000Runs: (commitsAfter - commitsBefore) * 1000 / flags.runs,
      workerCpuMsPerRun: Number(drained["cpuSeconds"]) * 1000 / flags.runs,
      postgresCpuMsPerRun: pgBefore === undefined || pgAfter === undefined ? undefined : (pgAfter - pgBefore) * 1000 / flags.runs,
      asleep: sleeping?.asleep
    }
    yield* progress(
      `  ${limited ? "concurrency" : kind === "sleepers" ? `beside ${fmt(flags.sleepers)} sleepers` : "throughput"} ${rep}: ${fmt(out.runsPerSec)} runs/s (started at ${fmt(out.insertRunsPerSec)} runs/s), peak RSS ${
        fmt(out.peakRssMB, 1)
      } MB, CPU: worker ${fmt(out.workerCpuCores, 2)} cores, postgres ${
        out.postgresCpuCores === undefined ? "?" : fmt(out.postgresCpuCores, 2)
      } cores${out.backlogDeleted === undefined ? "" : `, retention deleted ${fmt(out.backlogDeleted)} old runs meanwhile`}, load ${
        loadavg().map((n) => n.toFixed(1)).join(" ")
      }`
    )
    return out
  }))

interface LatencyRep {
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
  readonly startCallP50: number
}

const latencyRep = (server: Server, flags: Flags, rep: number) =>
  Effect.scoped(Effect.gen(function*() {
    const db = yield* makeDatabase(server.url)
    const begun = new Map<number, Deferred.Deferred<number>>()
    const Probe = makeProbe((i, at) => {
      const deferred = begun.get(i)
      return deferred === undefined ? Effect.void : Effect.asVoid(Deferred.succeed(deferred, at))
    })
    const program = yield* Layer.build(programLayer({
      url: db.url,
      tasks: [Probe],
      bus: "memory",
      workers: { concurrency: flags.concurrency }
    }))
    const runs = Context.get(program, Runs)
    const phaseStart = nowMs()
    const toBody: Array<number> = []
    const startCall: Array<number> = []
    for (let i = -flags.warmup; i < flags.latencyRuns; i++) {
      const deferred = yield* Deferred.make<number>()
      begun.set(i, deferred)
      const start = nowMs()
      const run = yield* runs.start(Probe, { i })
      const returned = nowMs()
      const bodyAt = yield* Deferred.await(deferred).pipe(within("30 seconds", `run ${i} did not begin`))
      // The next start finds the workers idle again.
      yield* runs.awaitCompletion(run.id, { timeout: "30 seconds" })
      begun.delete(i)
      if (i >= 0) {
        toBody.push(bodyAt - start)
        startCall.push(returned - start)
      }
    }
    yield* profileWindow(flags, phaseStart)
    const sorted = sortNumbers(toBody)
    const out: LatencyRep = {
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      max: sorted[sorted.length - 1]!,
      startCallP50: median(startCall)
    }
    if (flags.pgStats) yield* statementReport(server, db.name, `latency rep ${rep}`)
    yield* progress(
      `  latency ${rep}: p50 ${fmt(out.p50, 2)} ms, p95 ${fmt(out.p95, 2)} ms, p99 ${fmt(out.p99, 2)} ms, max ${
        fmt(out.max, 2)
      } ms (start call p50 ${fmt(out.startCallP50, 2)} ms)`
    )
    return out
  }))

interface DeliveryRep {
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly samples: number
  readonly early: number
  /**
   * CPU time of the bench's process during the run, per delivery: the subscribers'
   * cost (with the memory bus, the emitting worker and the relay's too).
   */
  readonly cpuUsPerDelivery: number
  /** That CPU time over the run's wall time: near 1 core, the process cannot keep up and latency is a backlog. */
  readonly busy: number
}

/**
 * `n` subscribers following a run from seq 0, each recording when each event
 * reached it; `ready` once every one of them has seen `run.started` (so its
 * live subscription exists).
 */
const follow = (runs: Runs["Type"], runId: RunId, n: number) =>
  Effect.gen(function*() {
    const ready = yield* Deferred.make<void>()
    const received: Array<Map<number, number>> = []
    let live = 0
    const fibers = yield* Effect.forEach(Array.from({ length: n }), () => {
      const seen = new Map<number, number>()
      received.push(seen)
      let counted = false
      return runs.events(runId).pipe(
        Stream.runForEachChunk((chunk) =>
          Effect.sync(() => {
            const at = nowMs()
            for (const event of chunk) seen.set(event.seq, at)
            if (!counted && seen.has(2)) {
              counted = true
              if (++live === n) Deferred.unsafeDone(ready, Exit.void)
            }
          })
        ),
        Effect.fork
      )
    })
    return {
      ready: Deferred.await(ready).pipe(within("60 seconds", `only ${live} of ${n} subscribers caught up`)),
      done: Effect.as(Fiber.joinAll(fibers), received)
    }
  })

const deliveryStats = (
  emittedAt: Record<number, number>,
  received: ReadonlyArray<Map<number, number>>
): Omit<DeliveryRep, "cpuUsPerDelivery" | "busy"> => {
  const latencies: Array<number> = []
  let early = 0
  for (const [seqText, emitted] of Object.entries(emittedAt)) {
    const seq = Number(seqText)
    for (const seen of received) {
      const at = seen.get(seq)
      if (at === undefined) throw new Error(`a subscriber never received seq ${seq}`)
      // The relay can publish before the emitter's fiber resumes: that event was on time.
      if (at < emitted) early++
      latencies.push(Math.max(0, at - emitted))
    }
  }
  const sorted = sortNumbers(latencies)
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1]!, samples: sorted.length, early }
}

const deliveryRep = (server: Server, flags: Flags, bus: BenchBus, rep: number) =>
  Effect.scoped(Effect.gen(function*() {
    const db = yield* makeDatabase(server.url)
    let program: Context.Context<Runs>
    /** Lets the current run's body start emitting; then what it reports of its emits. */
    let go: Effect.Effect<void>
    let emitted: Effect.Effect<Record<number, number>, BenchError>
    if (bus === "memory") {
      // One process: the emitting worker, the relay and the subscribers.
      const gate = yield* Queue.unbounded<void>()
      const results = yield* Queue.unbounded<Record<number, number>>()
      let emittedAt: Record<number, number> = {}
      const Paced = makePaced({
        go: Queue.take(gate),
        emitted: (seq, at) => void (emittedAt[seq] = at),
        finished: Effect.suspend(() => {
          const done = emittedAt
          emittedAt = {}
          return Queue.offer(results, done)
        })
      })
      program = yield* Layer.build(programLayer({ url: db.url, tasks: [Paced], bus, workers: { concurrency: 1 } }))
      go = Queue.offer(gate, undefined)
      emitted = Queue.take(results)
    } else {
      // The emitting worker (and its relay, which NOTIFYs) in another process.
      const child = yield* spawnChild({
        script: join(here, "bench", "delivery-emitter.ts"),
        args: [],
        env: { BENCH_DATABASE_URL: db.url, BENCH_BUS: bus },
        execArgv: childExecArgv(flags, "delivery-emitter")
      })
      yield* child.next("ready")
      yield* Effect.addFinalizer(() => Effect.ignore(child.send({ type: "stop" })))
      const Paced = makePaced({ go: Effect.void, emitted: () => {}, finished: Effect.void })
      program = yield* Layer.build(programLayer({ url: db.url, tasks: [Paced], bus, workers: false }))
      go = child.send({ type: "go" })
      emitted = Effect.map(child.next("result"), (message) => (message["result"] as EmitterResult).emittedAt)
    }
    const runs = Context.get(program, Runs)
    const Paced = makePaced({ go: Effect.void, emitted: () => {}, finished: Effect.void })
    /** One run followed by all the subscribers: what each received, and when each emit returned. */
    const round = (events: number) =>
      Effect.gen(function*() {
        const deadline = Duration.sum(Duration.seconds(60), Duration.millis(events * flags.intervalMs))
        const run = yield* runs.start(Paced, { events, intervalMs: flags.intervalMs })
        const followers = yield* follow(runs, run.id, flags.subscribers)
        yield* followers.ready
        const goAt = nowMs()
        const cpuBefore = process.cpuUsage()
        yield* go
        const received = yield* followers.done.pipe(within(deadline, "the subscribers did not see the run end"))
        const cpu = process.cpuUsage(cpuBefore)
        const wallMs = nowMs() - goAt
        yield* profileWindow(flags, goAt)
        const stats = deliveryStats(yield* emitted, received)
        const busy = (cpu.user + cpu.system) / 1000 / wallMs
        return { ...stats, cpuUsPerDelivery: (cpu.user + cpu.system) / stats.samples, busy }
      })
    // A first run warms up the code paths of both processes (JIT), as in a long-lived program.
    if (flags.deliveryWarmup > 0) yield* round(flags.deliveryWarmup)
    const result = yield* round(flags.events)
    if (flags.pgStats) yield* statementReport(server, db.name, `delivery (${bus}) rep ${rep}`)
    yield* progress(
      `  delivery (${bus}) ${rep}: p50 ${fmt(result.p50, 2)} ms, p99 ${fmt(result.p99, 2)} ms, max ${fmt(result.max, 2)} ms (${
        fmt(result.samples)
      } deliveries, ${fmt(result.early)} before emit returned; ${fmt(result.cpuUsPerDelivery, 0)} µs CPU per delivery, ${
        fmt(result.busy, 2)
      } cores busy in this process)`
    )
    if (result.busy > 0.8) {
      yield* progress(`  warning: the subscribers' process was saturated (${fmt(result.busy, 2)} cores): these latencies are mostly a backlog`)
    }
    return result
  }))

interface BackfillRep {
  readonly eventsPerSec: number
  readonly events: number
  readonly ms: number
  /** CPU time of this process (the reader) per event: steadier than events/s on a shared machine. */
  readonly cpuUsPerEvent: number
}

/** One database for the phase: the run is written once (through a task's emits), then read `reps` times. */
const backfillPhase = (server: Server, flags: Flags) =>
  Effect.scoped(Effect.gen(function*() {
    const db = yield* makeDatabase(server.url)
    const program = yield* Layer.build(programLayer({ url: db.url, tasks: [Burst], bus: "memory", workers: { concurrency: 1 } }))
    const runs = Context.get(program, Runs)
    const sql = Context.get(program, SqlClient.SqlClient)
    const writeStart = nowMs()
    const run = yield* runs.start(Burst, { events: flags.backfill, concurrency: 2000 })
    yield* runs.awaitCompletion(run.id, { timeout: "10 minutes" })
    yield* waitOutbox(sql)
    const writeMs = nowMs() - writeStart
    yield* progress(`  backfill: wrote ${fmt(flags.backfill)} events through emit in ${fmt(writeMs / 1000, 1)} s (${fmt(flags.backfill / (writeMs / 1000))} events/s)`)
    yield* sql`VACUUM ANALYZE runstream_events`.pipe(Effect.catchAll(() => Effect.void))
    const out: Array<BackfillRep> = []
    for (let rep = 1; rep <= flags.reps; rep++) {
      const start = nowMs()
      const cpuBefore = process.cpuUsage()
      let events = 0
      let chunks = 0
      // A stream that stops making progress fails the phase instead of hanging the bench.
      const stalled = Effect.gen(function*() {
        let seen = -1
        while (events !== seen) {
          seen = events
          yield* Effect.sleep("10 seconds")
        }
        return yield* new BenchError({
          message: `Runs.events stalled: ${fmt(events)} of ${fmt(flags.backfill + 3)} events after ${fmt(chunks)} chunks, none for 10 s`
        })
      })
      yield* Effect.raceFirst(
        Stream.runForEachChunk(runs.events(run.id, { after: 0 }), (chunk) =>
          Effect.sync(() => {
            events += chunk.length
            chunks++
          })),
        stalled
      )
      const ms = nowMs() - start
      const cpu = process.cpuUsage(cpuBefore)
      yield* profileWindow(flags, start)
      const r = { eventsPerSec: events / (ms / 1000), events, ms, cpuUsPerEvent: (cpu.user + cpu.system) / events }
      out.push(r)
      yield* progress(
        `  backfill ${rep}: ${fmt(r.events)} events in ${fmt(ms, 0)} ms, ${fmt(r.eventsPerSec)} events/s, ${fmt(r.cpuUsPerEvent, 2)} µs CPU per event`
      )
    }
    if (flags.pgStats) yield* statementReport(server, db.name, "backfill")
    return out
  }))

/** One repetition of the fanout phase (scripts/bench/fanout.ts). */
const fanoutPhaseRep = (server: Server, flags: Flags, rep: number) =>
  Effect.tap(
    fanoutRep(server.url, {
      clients: flags.fanoutClients,
      runs: 10,
      events: flags.fanoutEvents,
      intervalMs: 100,
      warmupEvents: 20,
      execArgv: (name) => childExecArgv(flags, name)
    }),
    (f: FanoutRep) =>
      progress(`  fanout ${rep}: p50 ${fmt(f.p50, 1)} ms, p99 ${fmt(f.p99, 1)} ms, max ${fmt(f.max, 1)} ms over ${fmt(f.deliveries)} deliveries; server ${
        fmt(f.serverCpuUsPerDelivery, 1)
      } µs CPU per delivery (${fmt(f.serverSystemUsPerDelivery, 1)} in the kernel; ${fmt(f.serverBusy, 2)} cores), clients' process ${
        fmt(f.clientsBusy, 2)
      } cores; /healthz p99 ${fmt(f.healthzP99, 1)} ms`)
  )

/** A phase's repetitions, and why it stopped early if it did. */
interface Phase<A> {
  readonly name: string
  readonly reps: ReadonlyArray<A>
  readonly error?: string | undefined
}

const describeFailure = (cause: Cause.Cause<unknown>) => {
  const failure = Cause.failureOption(cause)
  const error = Option.isSome(failure) ? failure.value : Cause.squash(cause)
  const text = (e: unknown) => typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)
  // An SqlError says "Failed to execute statement"; the driver's error is its cause.
  const inner = typeof error === "object" && error !== null && "cause" in error ? error.cause : undefined
  const message = inner === undefined ? text(error) : `${text(error)}: ${text(inner)}`
  return message.split("\n").slice(0, 3).join(" ").slice(0, 400)
}

/** Runs a phase's repetitions; a failure ends the phase (and is reported), not the bench. */
const repeat = <A, E, R>(name: string, times: number, rep: (i: number) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    yield* progress(`${name}:`)
    const reps: Array<A> = []
    for (let i = 1; i <= times; i++) {
      const exit = yield* Effect.exit(rep(i))
      if (Exit.isFailure(exit)) {
        const error = describeFailure(exit.cause)
        yield* progress(`  ${name} ${i} failed: ${error}`)
        return { name, reps, error } satisfies Phase<A>
      }
      reps.push(exit.value)
    }
    return { name, reps } satisfies Phase<A>
  })

/** A phase that was not asked for. */
const skipped = <A>(name: string): Phase<A> => ({ name, reps: [] })

// ---------------------------------------------------------------------------
// Report

interface Row {
  readonly metric: string
  readonly values: ReadonlyArray<number>
  readonly digits: number
  readonly target?: { readonly op: ">=" | "<="; readonly value: number } | undefined
  /** Set when the phase behind the row failed. */
  readonly failed?: boolean | undefined
}

const table = (rows: ReadonlyArray<Row>, judged: boolean): string => {
  const cells = rows.map((row) => {
    const m = median(row.values)
    const met = row.target !== undefined && (row.target.op === ">=" ? m >= row.target.value : m <= row.target.value)
    return [
      row.metric,
      row.values.length === 0 ? "-" : fmt(m, row.digits),
      row.values.map((v) => fmt(v, row.digits)).join(" / ") + (row.failed === true ? " (phase failed)" : ""),
      row.target === undefined ? "" : `${row.target.op === ">=" ? "≥" : "≤"} ${fmt(row.target.value, Number.isInteger(row.target.value) ? 0 : 2)}`,
      row.target === undefined ? "" : !judged ? "n/a" : met && row.failed !== true ? "pass" : "FAIL"
    ]
  })
  const header = ["metric", "median", "repetitions", "target", "result"]
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) =>
    c.map((x, i) => i === 0 || i === 2 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!)).join("  ").trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)].join("\n")
}

const round = (n: number | undefined, digits: number) =>
  n === undefined || !Number.isFinite(n) ? null : Math.round(n * 10 ** digits) / 10 ** digits

/** The rows of a phase: one per metric, from each repetition. */
const rowsOf = <A>(
  phase: Phase<A>,
  metrics: ReadonlyArray<Omit<Row, "values" | "failed"> & { readonly value: (a: A) => number | undefined }>
): Array<Row> =>
  phase.reps.length === 0 && phase.error === undefined ? [] : metrics.flatMap(({ value, ...row }) => {
    const values = phase.reps.map(value)
    if (values.some((v) => v === undefined)) return []
    return [{ ...row, values: values as Array<number>, failed: phase.error !== undefined }]
  })

const loadAverage = () => loadavg().map((l) => l.toFixed(2)).join(" ")

const main = Effect.gen(function*() {
  const flags = yield* Effect.try({
    try: () => parseFlags(process.argv.slice(2)),
    catch: (e) => new BenchError({ message: String((e as Error).message) })
  })
  // The bundles of this process's children (see `bundleWorker`); kept with --cpu-prof, whose profiles map through them.
  if (flags.cpuProf === undefined) {
    const bundles = join(here, "..", "node_modules", ".cache", "runstream-bench", String(process.pid))
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(bundles, { recursive: true, force: true })))
  }
  const server = yield* acquireServer(flags)
  if (flags.pgStats) {
    yield* admin(server.url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements").pipe(
      Effect.catchAll((error) => progress(`--pg-stats: ${error.message.split("\n")[0]}`))
    )
  }
  const started = nowMs()
  const loadBefore = loadAverage()
  const where = server.kind === "embedded" ? "an embedded" : describeUrl(server.url)
  yield* progress(`Runstream bench on ${where} PostgreSQL ${server.version}, ${flags.reps} repetition(s); load average ${loadBefore}`)
  if (loadavg()[0]! > 0.5 * cpus().length) {
    yield* progress(`warning: the machine is busy (load ${loadBefore} on ${cpus().length} cores): figures will be low and noisy`)
  }
  const calibrationBefore = yield* calibrate(server.url)
  yield* progress(
    `server: SELECT 1 round trip ${fmt(calibrationBefore.roundTripMs, 3)} ms, one-row INSERT commit ${fmt(calibrationBefore.commitMs, 3)} ms (medians); ` +
      `node: Effect fork + join ${fmt(calibrationBefore.forkJoinUs, 1)} µs of CPU`
  )

  const run = <A>(name: string, wanted: boolean, phase: () => Effect.Effect<Phase<A>>) =>
    wanted ? phase() : Effect.succeed(skipped<A>(name))
  const graphile: Array<GraphileRep> = []
  const graphileDrain = (i: number) =>
    graphileRep({
      serverUrl: server.url,
      here,
      jobs: flags.runs,
      batch: flags.batch,
      concurrency: flags.concurrency,
      execArgv: childExecArgv(flags, "graphile-worker"),
      postgresCpuSeconds: () => postgresCpuSeconds(server.postmaster),
      afterDrain: (database) =>
        flags.pgStats ? Effect.zipRight(statementReport(server, database, `graphile-worker rep ${i}`), tableReport(server, database)) : Effect.void
    }).pipe(Effect.tap((g) => {
      graphile.push(g)
      return progress(`  graphile-worker ${i}: ${fmt(g.jobsPerSec)} jobs/s (added at ${fmt(g.addJobsPerSec)} jobs/s), peak RSS ${fmt(g.peakRssMB, 1)} MB`)
    }))
  /** With --compare, a repetition is Runstream's and graphile-worker's, in alternating order. */
  const withCompared = <A, E, R>(i: number, ours: Effect.Effect<A, E, R>, theirs: (i: number) => Effect.Effect<unknown, E, R>) =>
    flags.compare === undefined ? ours : i % 2 === 1 ? Effect.zipRight(theirs(i), ours) : Effect.zipLeft(ours, theirs(i))
  // The sleepers phase's repetitions. With the throughput phase, each of its repetitions is paired with
  // one of the throughput phase's, in alternating order (as --compare does): a ratio of two phases run
  // one after the other would measure the drift of a shared machine's load as much as the sleepers.
  const sleeperReps: Array<ThroughputRep> = []
  let sleepersError: string | undefined
  const sleepersRep = (i: number) =>
    sleepersError !== undefined ? Effect.void : Effect.exit(throughputRep(server, flags, i, "sleepers")).pipe(
      Effect.flatMap((exit) => {
        if (Exit.isSuccess(exit)) return Effect.sync(() => void sleeperReps.push(exit.value))
        sleepersError = describeFailure(exit.cause)
        return progress(`  sleepers ${i} failed: ${sleepersError}`)
      })
    )
  const paired = flags.phases.has("throughput") && flags.phases.has("sleepers")
  const withSleepers = <A, E, R>(i: number, ours: Effect.Effect<A, E, R>) =>
    !paired ? ours : i % 2 === 1 ? Effect.zipLeft(ours, sleepersRep(i)) : Effect.zipRight(sleepersRep(i), ours)
  const throughput = yield* run("throughput", flags.phases.has("throughput"), () =>
    repeat(paired ? "throughput, paired with the sleepers phase" : "throughput", flags.reps, (i) =>
      withSleepers(i, withCompared(i, throughputRep(server, flags, i), graphileDrain))))
  const graphileLatency: Array<GraphileLatency> = []
  const graphileStarts = (i: number) =>
    graphileLatencyRep({ serverUrl: server.url, here, starts: flags.latencyRuns, warmup: flags.warmup, concurrency: flags.concurrency }).pipe(
      Effect.tap((l) => {
        graphileLatency.push(l)
        return progress(`  graphile-worker latency ${i}: p50 ${fmt(l.p50, 2)} ms, p95 ${fmt(l.p95, 2)} ms, p99 ${fmt(l.p99, 2)} ms (addJob p50 ${fmt(l.addJobP50, 2)} ms)`)
      })
    )
  const latency = yield* run("latency", flags.phases.has("latency"), () =>
    repeat("latency", flags.reps, (i) => withCompared(i, latencyRep(server, flags, i), graphileStarts)))
  // The cross-process bus: postgres, or nats with `--bus nats`.
  const crossBus = flags.bus === "nats" ? "nats" : "postgres"
  const deliveryPg = yield* run(`delivery (${crossBus})`, flags.phases.has("delivery") && flags.bus !== "memory", () =>
    repeat(`delivery, ${crossBus} bus (emitter in another process)`, flags.reps, (i) => deliveryRep(server, flags, crossBus, i)))
  const deliveryMem = yield* run("delivery (memory)", flags.phases.has("delivery") && flags.bus !== "postgres", () =>
    repeat("delivery, memory bus (one process)", flags.reps, (i) => deliveryRep(server, flags, "memory", i)))
  const backfill = yield* run("backfill", flags.phases.has("backfill"), () =>
    Effect.zipRight(progress("backfill:"), Effect.exit(backfillPhase(server, flags))).pipe(
      Effect.flatMap((exit) =>
        Exit.isSuccess(exit)
          ? Effect.succeed<Phase<BackfillRep>>({ name: "backfill", reps: exit.value })
          : Effect.as(progress(`  backfill failed: ${describeFailure(exit.cause)}`), { name: "backfill", reps: [], error: describeFailure(exit.cause) })
      )
    ))
  const fanout = yield* run("fanout", flags.phases.has("fanout"), () =>
    repeat("fanout", flags.reps, (i) => fanoutPhaseRep(server, flags, i)))
  // The throughput phase's drain with a limit per key: 1,000 keys, limit 1 (its runs spread over them).
  const concurrency = yield* run("concurrency", flags.phases.has("concurrency"), () =>
    repeat("concurrency (1,000 keys × limit 1)", flags.reps, (i) => throughputRep(server, flags, i, "limited")))
  const sleepers: Phase<ThroughputRep> = paired
    ? { name: "sleepers", reps: sleeperReps, error: sleepersError }
    : yield* run("sleepers", flags.phases.has("sleepers"), () =>
      repeat(`sleepers (${fmt(flags.sleepers)} runs asleep for an hour, then the throughput drain)`, flags.reps, (i) =>
        throughputRep(server, flags, i, "sleepers")))
  const calibrationAfter = yield* calibrate(server.url)
  const elapsed = (nowMs() - started) / 1000

  const calibration = { name: "calibration", reps: [calibrationBefore, calibrationAfter] } satisfies Phase<Calibration>
  const rows: Array<Row> = [
    ...rowsOf(calibration, [
      { metric: "server: SELECT 1 round trip (ms, before / after)", value: (c) => c.roundTripMs, digits: 3 },
      { metric: "server: one-row INSERT commit (ms, before / after)", value: (c) => c.commitMs, digits: 3 },
      { metric: "node: Effect fork + join (µs of CPU, before / after)", value: (c) => c.forkJoinUs, digits: 1 }
    ]),
    ...rowsOf(throughput, [
      { metric: "throughput (runs/s, first claim → last terminal event)", value: (t) => t.runsPerSec, digits: 0, target: { op: ">=", value: 17_000 } },
      { metric: "  starting them (runs/s, startMany batches)", value: (t) => t.insertRunsPerSec, digits: 0 },
      { metric: "  worker process CPU while draining (cores)", value: (t) => t.workerCpuCores, digits: 2 },
      { metric: "  postgres CPU while draining (cores)", value: (t) => t.postgresCpuCores, digits: 2 },
      { metric: "  commits per 1,000 runs (worker process)", value: (t) => t.commitsPer1000Runs, digits: 0 },
      { metric: "  worker CPU per run (ms)", value: (t) => t.workerCpuMsPerRun, digits: 3 },
      { metric: "  postgres CPU per run (ms)", value: (t) => t.postgresCpuMsPerRun, digits: 3 },
      { metric: "worker peak RSS (MB)", value: (t) => t.peakRssMB, digits: 1, target: { op: "<=", value: 150 } },
      { metric: "  worker RSS before claiming (MB)", value: (t) => t.baselineRssMB, digits: 1 },
      { metric: "  worker V8 heap used, peak (MB)", value: (t) => t.peakHeapUsedMB, digits: 1 },
      { metric: "  worker V8 heap used before claiming (MB)", value: (t) => t.baselineHeapUsedMB, digits: 1 }
    ]),
    ...rowsOf(concurrency, [
      { metric: `concurrency-limited drain (runs/s, ${fmt(limitedKeys)} keys × limit 1)`, value: (t) => t.runsPerSec, digits: 0 },
      ...(throughput.reps.length === 0 ? [] : [{
        metric: "  its ratio to the unlimited drain (medians)",
        value: () => median(concurrency.reps.map((t) => t.runsPerSec)) / median(throughput.reps.map((t) => t.runsPerSec)),
        digits: 2,
        target: { op: ">=" as const, value: 0.5 }
      }]),
      { metric: "  commits per 1,000 runs (worker process)", value: (t) => t.commitsPer1000Runs, digits: 0 },
      { metric: "  postgres CPU per run (ms)", value: (t) => t.postgresCpuMsPerRun, digits: 3 }
    ]),
    ...rowsOf(sleepers, [
      { metric: `sleepers: runs put to sleep (runs/s, ${fmt(flags.sleepers)} runs of ctx.sleep("1 hour"))`, value: (t) => t.asleep?.runsPerSec, digits: 0 },
      { metric: "  worker places held while they sleep (jobs locked)", value: (t) => t.asleep?.placesHeld, digits: 0, target: { op: "<=", value: 0 } },
      { metric: "  connections to the database while they sleep", value: (t) => t.asleep?.connections, digits: 0 },
      { metric: `  drain beside them (runs/s, ${fmt(flags.runs)} no-op runs as in throughput)`, value: (t) => t.runsPerSec, digits: 0 },
      ...(throughput.reps.length === 0 ? [] : [{
        metric: "  its ratio to the throughput phase's drain (medians)",
        value: () => median(sleepers.reps.map((t) => t.runsPerSec)) / median(throughput.reps.map((t) => t.runsPerSec)),
        digits: 2,
        target: { op: ">=" as const, value: 0.8 }
      }]),
      { metric: "  worker CPU per run (ms)", value: (t) => t.workerCpuMsPerRun, digits: 3 },
      { metric: "  postgres CPU per run (ms)", value: (t) => t.postgresCpuMsPerRun, digits: 3 },
      { metric: "  worker peak RSS (MB, putting them to sleep included)", value: (t) => t.peakRssMB, digits: 1 }
    ]),
    ...rowsOf(latency, [
      { metric: "start latency p50 (ms, start call → body)", value: (l) => l.p50, digits: 2, target: { op: "<=", value: 2 } },
      { metric: "start latency p95 (ms)", value: (l) => l.p95, digits: 2 },
      { metric: "start latency p99 (ms)", value: (l) => l.p99, digits: 2, target: { op: "<=", value: 10 } },
      { metric: "  start call alone p50 (ms)", value: (l) => l.startCallP50, digits: 2 }
    ]),
    ...rowsOf(deliveryPg, [
      { metric: `delivery p50 (ms, ${crossBus} bus, 2 processes)`, value: (d) => d.p50, digits: 2, target: { op: "<=", value: 5 } },
      { metric: `delivery p99 (ms, ${crossBus} bus, 2 processes)`, value: (d) => d.p99, digits: 2, target: { op: "<=", value: 25 } },
      { metric: "  subscribers' process CPU per delivery (µs)", value: (d) => d.cpuUsPerDelivery, digits: 0 },
      { metric: "  subscribers' process busy (cores)", value: (d) => d.busy, digits: 2 }
    ]),
    ...rowsOf(deliveryMem, [
      { metric: "delivery p50 (ms, memory bus, 1 process)", value: (d) => d.p50, digits: 2, target: { op: "<=", value: 5 } },
      { metric: "delivery p99 (ms, memory bus, 1 process)", value: (d) => d.p99, digits: 2, target: { op: "<=", value: 25 } },
      { metric: "  process CPU per delivery (µs, all in one)", value: (d) => d.cpuUsPerDelivery, digits: 0 },
      { metric: "  process busy (cores)", value: (d) => d.busy, digits: 2 }
    ]),
    ...rowsOf(backfill, [
      { metric: "backfill (events/s, Runs.events from seq 0)", value: (b) => b.eventsPerSec, digits: 0, target: { op: ">=", value: 200_000 } },
      { metric: "  reader CPU per event (µs)", value: (b) => b.cpuUsPerEvent, digits: 2 }
    ]),
    ...rowsOf(fanout, [
      { metric: `fanout delivery p50 (ms, ${fmt(flags.fanoutClients)} SSE clients, 10 runs × 10/s)`, value: (f) => f.p50, digits: 1 },
      { metric: "fanout delivery p99 (ms)", value: (f) => f.p99, digits: 1 },
      { metric: "  server CPU per delivery (µs)", value: (f) => f.serverCpuUsPerDelivery, digits: 1, target: { op: "<=", value: 10 } },
      { metric: "    of which in the kernel (µs, socket writes)", value: (f) => f.serverSystemUsPerDelivery, digits: 1 },
      { metric: "  GET /healthz p99 during the round (ms)", value: (f) => f.healthzP99, digits: 1 },
      { metric: "  server busy (cores)", value: (f) => f.serverBusy, digits: 2 },
      { metric: "  clients' process busy (cores)", value: (f) => f.clientsBusy, digits: 2 }
    ])
  ]
  const failures = [throughput, latency, deliveryPg, deliveryMem, backfill, fanout, concurrency, sleepers].filter((p) => p.error !== undefined)

  console.log("")
  console.log(`Runstream bench — ${server.kind === "embedded" ? "embedded" : describeUrl(server.url)} (PostgreSQL ${server.version}), ${flags.reps} repetition(s), ${fmt(elapsed, 0)} s, load average ${loadBefore} → ${loadAverage()}`)
  console.log(
    `throughput: ${fmt(flags.runs)} runs in batches of ${fmt(flags.batch)}, concurrency ${flags.concurrency}; latency: ${fmt(flags.latencyRuns)} starts; ` +
      `delivery: ${flags.subscribers} subscribers, ${flags.events} events ${flags.intervalMs} ms apart; backfill: ${fmt(flags.backfill)} events; ` +
      `sleepers: ${fmt(flags.sleepers)}`
  )
  console.log("")
  console.log(table(rows, flags.targetSizes))
  if (!flags.targetSizes) {
    console.log("\nThe targets are set for the default sizes (20,000 runs, 500 starts, 100 subscribers of 200 events, 100,000 events):")
    console.log("with other sizes (--quick, or a size flag) the figures are not judged against them.")
  }
  const comparison = flags.compare === undefined ? undefined : comparisonReport(throughput.reps, graphile, { runstream: latency.reps, graphile: graphileLatency })
  if (comparison !== undefined) console.log(`\n${comparison.text}`)
  for (const phase of failures) console.log(`\n${phase.name} failed: ${phase.error}`)
  if (flags.json) {
    const delivery = deliveryPg.reps.length > 0 || deliveryPg.error !== undefined ? deliveryPg : deliveryMem
    const med = <A>(phase: Phase<A>, f: (a: A) => number) =>
      phase.reps.length === 0 || phase.error !== undefined ? undefined : median(phase.reps.map(f))
    console.log(JSON.stringify({
      throughput: { runsPerSec: round(med(throughput, (t) => t.runsPerSec), 0) },
      concurrency: { runsPerSec: round(med(concurrency, (t) => t.runsPerSec), 0) },
      sleepers: {
        asleepPerSec: round(med(sleepers, (t) => t.asleep?.runsPerSec ?? NaN), 0),
        placesHeld: round(med(sleepers, (t) => t.asleep?.placesHeld ?? NaN), 0),
        connections: round(med(sleepers, (t) => t.asleep?.connections ?? NaN), 0),
        runsPerSec: round(med(sleepers, (t) => t.runsPerSec), 0),
        ratio: round(med(sleepers, (t) => t.runsPerSec) === undefined || med(throughput, (t) => t.runsPerSec) === undefined
          ? undefined
          : med(sleepers, (t) => t.runsPerSec)! / med(throughput, (t) => t.runsPerSec)!, 2)
      },
      latency: {
        startP50Ms: round(med(latency, (l) => l.p50), 3),
        startP95Ms: round(med(latency, (l) => l.p95), 3),
        startP99Ms: round(med(latency, (l) => l.p99), 3)
      },
      delivery: { p50Ms: round(med(delivery, (d) => d.p50), 3), p99Ms: round(med(delivery, (d) => d.p99), 3) },
      backfill: { eventsPerSec: round(med(backfill, (b) => b.eventsPerSec), 0) },
      fanout: {
        p50Ms: round(med(fanout, (f) => f.p50), 1),
        p99Ms: round(med(fanout, (f) => f.p99), 1),
        serverCpuUsPerDelivery: round(med(fanout, (f) => f.serverCpuUsPerDelivery), 1)
      },
      peakRssMB: round(med(throughput, (t) => t.peakRssMB), 1),
      ...(comparison === undefined ? {} : {
        compare: { graphileJobsPerSec: round(comparison.graphileJobsPerSec, 0), ratio: round(comparison.ratio, 3) }
      })
    }))
  }
  if (failures.length > 0) process.exitCode = 1
})

NodeRuntime.runMain(Main.withScheduler(main.pipe(Effect.scoped)).pipe(Effect.provide(quietLogs)))
