/**
 * What the benchmark's processes share: fresh databases on the server, the
 * program layers (the production ones, with only the database chosen here),
 * the bench tasks, clocks, statistics and the child-process protocol.
 */
import { fork } from "node:child_process"
import { randomBytes } from "node:crypto"
import { Cause, Data, Effect, Fiber, Layer, LogLevel, Logger, Redacted, Schema } from "effect"
import pg from "pg"
import type { SqlClient, SqlError } from "@effect/sql"
import type { ConfigError } from "effect"
import * as EventBus from "../../src/bus/index.ts"
import * as NatsBus from "../../src/bus/NatsBus.ts"
import * as Database from "../../src/Database.ts"
import * as Main from "../../src/main/Main.ts"
import * as OtlpMetrics from "../../src/metrics/OtlpMetrics.ts"
import type { PgListener } from "../../src/PgListener.ts"
import * as Runstream from "../../src/Runstream.ts"
import * as Tracing from "../../src/tracing/Tracing.ts"
import * as Task from "../../src/Task.ts"

export class BenchError extends Data.TaggedError("BenchError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * Milliseconds on the system-wide monotonic clock (`CLOCK_MONOTONIC` on Linux):
 * comparable between processes of the same machine, unlike `performance.now()`.
 */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6

/** The URL of another database on the same server. */
export const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/** The URL with its password hidden, for the report. */
export const describeUrl = (url: string): string => {
  const parsed = new URL(url)
  if (parsed.password !== "") parsed.password = "***"
  return parsed.toString()
}

const adminQuery = (serverUrl: string, text: string, values: Array<unknown> = []) =>
  Effect.tryPromise({
    try: async () => {
      const client = new pg.Client({ connectionString: serverUrl, application_name: "runstream-bench-admin" })
      client.on("error", () => {})
      await client.connect()
      try {
        return await client.query(text, values)
      } finally {
        await client.end().catch(() => undefined)
      }
    },
    catch: (cause) => new BenchError({ message: `${text}: ${String(cause)}`, cause })
  })

/** Runs one query on the server's admin database. */
export const admin = (serverUrl: string, text: string, values: Array<unknown> = []) =>
  Effect.map(adminQuery(serverUrl, text, values), (result) => result.rows as Array<Record<string, unknown>>)

/**
 * A fresh, empty database `runstream_bench_<random>` on the server, dropped
 * (with its connections) when the scope closes; the program's layers migrate it.
 */
export const makeDatabase = (serverUrl: string) =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const name = `runstream_bench_${randomBytes(5).toString("hex")}`
      return Effect.as(admin(serverUrl, `CREATE DATABASE ${name}`), { name, url: withDatabase(serverUrl, name) })
    }),
    ({ name }) =>
      admin(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).pipe(
        Effect.catchAll((error) => Effect.logWarning(`could not drop ${name}`, error))
      )
  )

/** The program's database: a migrated pool on `url` (the production `Database.layerClient`). */
export const databaseLayer = (url: string) =>
  Database.layerClient().pipe(
    Layer.provideMerge(Layer.succeed(Database.DatabaseUrl, { url: Redacted.make(url), description: "bench database" }))
  )

/** Worker settings as `Runstream.layerWithWorkers` takes them. */
export type WorkersSettings = NonNullable<NonNullable<Parameters<typeof Runstream.layerWithWorkers>[0]>["workers"]>

/** The buses the bench runs on (NATS at `RUNSTREAM_NATS_URL`, default nats://127.0.0.1:4222). */
export type BenchBus = "memory" | "postgres" | "nats"
const busLayers: Record<
  BenchBus,
  Layer.Layer<EventBus.EventBus, EventBus.BusUnavailable | SqlError.SqlError | ConfigError.ConfigError, SqlClient.SqlClient | PgListener>
> = { memory: EventBus.layerMemory, postgres: EventBus.layerPostgres, nats: NatsBus.layer }

/** A Runstream program on `url`, with or without workers: the same layers as production. */
export const programLayer = <const Tasks extends ReadonlyArray<Task.Any>>(options: {
  readonly url: string
  readonly tasks: Tasks
  readonly bus: BenchBus
  readonly workers: WorkersSettings | false
}) => {
  const bus = busLayers[options.bus]
  const runtime = options.workers === false
    ? Runstream.layerRuntime({ bus })
    : Runstream.layerWithWorkers({ bus, workers: options.workers })
  return runtime.pipe(
    Layer.provideMerge(Task.layerRegistry(...options.tasks)),
    Layer.provideMerge(databaseLayer(options.url)),
    // As the programs have it: spans exported when OTEL_EXPORTER_OTLP_ENDPOINT is set (the cost of tracing),
    // metrics pushed when it or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is (the cost of their export).
    (program) => Layer.provideMerge(OtlpMetrics.layerFromEnv("runstream-bench"), program),
    Layer.provide(Tracing.layerFromEnv("runstream-bench"))
  )
}

/** Runstream's own logs above `Warning` only: the report is the output. */
export const quietLogs = Logger.minimumLogLevel(LogLevel.Warning)

/**
 * What the server gives one connection: a round trip, and a commit of a one-row
 * insert (its WAL flush); and what this machine gives the Effect runtime: the
 * CPU time of a fork and join of an empty fiber.
 */
export interface Calibration {
  readonly roundTripMs: number
  readonly commitMs: number
  readonly forkJoinUs: number
}

/**
 * CPU microseconds per fork and join of an empty fiber (the median of 5 rounds
 * of 2,000, after a warm-up): a yardstick of the machine's speed for
 * Runstream's per-run work, which is mostly the Effect runtime. It moves with
 * the machine (the same code measured 2-3x apart on two days), CPU per run
 * moves with it.
 */
const forkJoinCpuUs = Effect.gen(function*() {
  const rounds: Array<number> = []
  for (let round = 0; round < 6; round++) {
    const before = process.cpuUsage()
    for (let i = 0; i < 2000; i++) yield* Fiber.join(yield* Effect.fork(Effect.void))
    const used = process.cpuUsage(before)
    if (round > 0) rounds.push((used.user + used.system) / 2000)
  }
  return median(rounds)
})

/**
 * Measures the server's floor on a fresh database: the median of 200
 * `SELECT 1` and of 200 autocommitted one-row inserts. Every run costs a few
 * commits on the way from start to body, so this bounds what latency can be.
 */
export const calibrate = (serverUrl: string) =>
  Effect.scoped(Effect.gen(function*() {
    const db = yield* makeDatabase(serverUrl)
    return yield* Effect.tryPromise({
      try: async () => {
        const client = new pg.Client({ connectionString: db.url, application_name: "runstream-bench-calibration" })
        client.on("error", () => {})
        await client.connect()
        try {
          await client.query("CREATE TABLE calibration (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")
          const time = async (text: string) => {
            const samples: Array<number> = []
            for (let i = 0; i < 220; i++) {
              const start = nowMs()
              await client.query(text)
              if (i >= 20) samples.push(nowMs() - start)
            }
            return median(samples)
          }
          return { roundTripMs: await time("SELECT 1"), commitMs: await time("INSERT INTO calibration DEFAULT VALUES") }
        } finally {
          await client.end().catch(() => undefined)
        }
      },
      catch: (cause) => new BenchError({ message: `calibration: ${String(cause)}`, cause })
    }).pipe(Effect.bindTo("server"), Effect.bind("forkJoinUs", () => forkJoinCpuUs))
  })).pipe(Effect.map(({ forkJoinUs, server }): Calibration => ({ ...server, forkJoinUs })))

// ---------------------------------------------------------------------------
// Tasks

/** The throughput phase's task: does nothing, returns null. */
export const Noop = Task.make("bench.noop", {
  input: Schema.Unknown,
  output: Schema.Null,
  run: () => Effect.succeed(null)
})

/** The concurrency phase's task: Noop with at most one run per `concurrencyKey` at once. */
export const LimitedNoop = Task.make("bench.limited-noop", {
  input: Schema.Unknown,
  output: Schema.Null,
  concurrency: { limit: 1 },
  run: () => Effect.succeed(null)
})

/** The keys of the concurrency phase's runs. */
export const limitedKeys = 1_000

/**
 * The sleepers phase's task: a durable sleep of an hour (`ctx.sleep`), so that
 * its runs wait for the whole phase; it gives its worker back when it suspends.
 */
export const Sleeper = Task.make("bench.sleeper", {
  input: Schema.Unknown,
  output: Schema.Null,
  run: (_, ctx) => Effect.as(ctx.sleep("nap", "1 hour"), null)
})

/** Emits `events` task events as fast as the log takes them, `concurrency` at a time (backfill setup). */
export const Burst = Task.make("bench.burst", {
  input: Schema.Struct({ events: Schema.Int, concurrency: Schema.Int }),
  output: Schema.Struct({ events: Schema.Int }),
  run: ({ concurrency, events }, ctx) =>
    Effect.as(
      Effect.forEach(
        Array.from({ length: events }, (_, i) => i + 1),
        (n) => ctx.emit("tick", { n }),
        { concurrency, discard: true }
      ),
      { events }
    )
})

/** The latency phase's task: tells the bench the moment its body begins. */
export const makeProbe = (onBegin: (i: number, at: number) => Effect.Effect<void>) =>
  Task.make("bench.probe", {
    input: Schema.Struct({ i: Schema.Int }),
    output: Schema.Null,
    run: ({ i }) => Effect.as(Effect.suspend(() => onBegin(i, nowMs())), null)
  })

export const PacedInput = Schema.Struct({ events: Schema.Int, intervalMs: Schema.Number })

/**
 * The delivery phase's task: waits for `go`, then emits `events` ticks, one
 * every `intervalMs` (on a fixed schedule, not after each other), and reports
 * when each `emit` returned.
 */
export const makePaced = (options: {
  readonly go: Effect.Effect<void>
  readonly emitted: (seq: number, at: number) => void
  readonly finished: Effect.Effect<void>
}) =>
  Task.make("bench.paced", {
    input: PacedInput,
    output: Schema.Struct({ events: Schema.Int }),
    run: ({ events, intervalMs }, ctx) =>
      Effect.gen(function*() {
        yield* options.go
        const start = nowMs()
        for (let n = 1; n <= events; n++) {
          const wait = start + (n - 1) * intervalMs - nowMs()
          if (wait > 0) yield* Effect.sleep(wait)
          const seq = yield* ctx.emit("tick", { n })
          options.emitted(seq, nowMs())
        }
        yield* options.finished
        return { events }
      })
  })

// ---------------------------------------------------------------------------
// Statistics

/** The `p`-th percentile (0-100) by nearest rank. */
export const percentile = (sorted: ReadonlyArray<number>, p: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!
}

export const sortNumbers = (values: ReadonlyArray<number>): Array<number> => [...values].sort((a, b) => a - b)

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = sortNumbers(values)
  if (sorted.length === 0) return Number.NaN
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

// ---------------------------------------------------------------------------
// Child processes

/** Between the bench and its children: `ready`, `result`, `error` (with `message`), and phase-specific ones. */
export interface ChildMessage {
  readonly type: string
  readonly [key: string]: unknown
}

/** Extra `node` flags for the children (e.g. `--cpu-prof`), set by the bench's `--cpu-prof` flag. */
export interface ChildOptions {
  readonly script: string
  readonly args: ReadonlyArray<string>
  readonly env: Record<string, string>
  readonly execArgv: ReadonlyArray<string>
  /** Run on plain node (a bundled script) rather than through this process's loader. */
  readonly plainNode?: boolean | undefined
}

/**
 * A child process running a bench script (through the same TypeScript loader
 * as this process), killed if still alive when the scope closes.
 */
export const spawnChild = (options: ChildOptions) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = fork(options.script, [...options.args], {
        env: { ...process.env, ...options.env },
        execArgv: [...(options.plainNode === true ? [] : process.execArgv), ...options.execArgv],
        stdio: ["ignore", "inherit", "inherit", "ipc"]
      })
      const messages: Array<ChildMessage> = []
      const waiters: Array<() => void> = []
      let exitCode: number | null | undefined
      child.on("message", (message) => {
        messages.push(message as ChildMessage)
        for (const waiter of waiters.splice(0)) waiter()
      })
      child.on("exit", (code) => {
        exitCode = code
        for (const waiter of waiters.splice(0)) waiter()
      })
      /** The next message of `type` (an `error` message or an exit fails). */
      const next = (type: string) =>
        Effect.async<ChildMessage, BenchError>((resume) => {
          const check = () => {
            const index = messages.findIndex((m) => m.type === type || m.type === "error")
            if (index >= 0) {
              const [message] = messages.splice(index, 1)
              if (message!.type === "error") {
                resume(Effect.fail(new BenchError({ message: `${options.script}: ${String(message!["message"])}` })))
              } else {
                resume(Effect.succeed(message!))
              }
              return
            }
            if (exitCode !== undefined) {
              resume(Effect.fail(new BenchError({ message: `${options.script} exited (code ${exitCode}) before sending '${type}'` })))
              return
            }
            waiters.push(check)
          }
          check()
        })
      const send = (message: unknown) => Effect.sync(() => child.send(message as never))
      /** Waits until the child has exited (its connections closed). */
      const exited = Effect.async<void>((resume) => {
        const check = () => {
          if (exitCode !== undefined) resume(Effect.void)
          else waiters.push(check)
        }
        check()
      })
      return { child, next, send, exited }
    }),
    ({ child }) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
        child.once("exit", () => {
          clearTimeout(timer)
          resume(Effect.void)
        })
        child.kill("SIGTERM")
      })
  )

/** In a child: send a message to the bench. */
export const toParent = (message: ChildMessage) =>
  Effect.async<void>((resume) => {
    process.send!(message, undefined, undefined, () => resume(Effect.void))
  })

/** In a child: the next message of `type` from the bench. */
export const fromParent = (type: string) =>
  Effect.async<Record<string, unknown>>((resume) => {
    const handler = (message: unknown) => {
      const m = message as { type?: unknown }
      if (m.type === type) {
        process.off("message", handler)
        resume(Effect.succeed(m as Record<string, unknown>))
      }
    }
    process.on("message", handler)
    return Effect.sync(() => process.off("message", handler))
  })

/** In a child: run `program`, report its failure to the bench, and exit. */
export const runChild = <A, E>(program: Effect.Effect<A, E>) => {
  // On the production processes' scheduler (src/main/Main.ts), so that its cost is measured too.
  Effect.runPromiseExit(Main.withScheduler(program).pipe(
    Effect.tapErrorCause((cause) => toParent({ type: "error", message: Cause.pretty(cause).slice(0, 4000) })),
    Effect.provide(quietLogs)
  )).then((exit) => process.exit(exit._tag === "Success" ? 0 : 1))
}
