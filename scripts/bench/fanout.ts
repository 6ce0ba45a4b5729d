/**
 * The bench's `fanout` phase: many SSE clients over real HTTP on one server
 * process. Three child processes on a fresh database: the server (the HTTP
 * API, postgres bus, no workers), the emitter (workers running `runs` runs
 * that each emit a tick every `intervalMs`, and the relay that NOTIFYs), and
 * the clients (`clients` plain `node:http` SSE connections spread evenly over
 * the runs). Delivery is measured from the tick's stamp, taken just before its
 * `emit` (so it includes the emit's commit, the relay and the bus), to its
 * arrival at a client; the server's CPU time over the measured round, divided
 * by the ticks delivered, is its cost per delivery.
 */
import { join } from "node:path"
import { Duration, Effect } from "effect"
import { BenchError, makeDatabase, nowMs, percentile, sortNumbers, spawnChild } from "./common.ts"
import type { ClientsResult } from "./fanout-clients.ts"

export interface FanoutOptions {
  readonly clients: number
  readonly runs: number
  /** Ticks per run in the measured round. */
  readonly events: number
  readonly intervalMs: number
  /** Ticks per run of an unmeasured first round in the same server and emitter (JIT warm-up). */
  readonly warmupEvents: number
  /** Extra node flags for a child (`--cpu-prof`), by its name. */
  readonly execArgv: (name: string) => ReadonlyArray<string>
}

export interface FanoutRep {
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly deliveries: number
  /** Server CPU time (user + system) over the round per tick delivered. */
  readonly serverCpuUsPerDelivery: number
  /** The part of it in the kernel (socket writes, mostly). */
  readonly serverSystemUsPerDelivery: number
  /** `GET /healthz` every 100 ms during the round, from the clients' process: p99 of its answer time. */
  readonly healthzP99: number
  /** Server CPU time over the round's wall time. */
  readonly serverBusy: number
  /** The clients' process CPU time over the round's wall time: near 1, its own backlog is in the latencies. */
  readonly clientsBusy: number
}

const here = import.meta.dirname

const within = (duration: Duration.DurationInput, message: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(self, { duration, onTimeout: () => new BenchError({ message: `${message} within ${Duration.format(duration)}` }) })

/** Asks a child to stop and waits until it has (so that a `--cpu-prof` profile is written). */
const stop = (child: { readonly send: (message: unknown) => Effect.Effect<void>; readonly exited: Effect.Effect<void> }) =>
  Effect.ignore(child.send({ type: "stop" })).pipe(Effect.zipRight(Effect.timeout(child.exited, "10 seconds")), Effect.ignore)

export const fanoutRep = (serverUrl: string, options: FanoutOptions) =>
  Effect.scoped(Effect.gen(function*() {
    const db = yield* makeDatabase(serverUrl)
    const server = yield* spawnChild({
      script: join(here, "fanout-server.ts"),
      args: [],
      env: { BENCH_DATABASE_URL: db.url },
      execArgv: options.execArgv("fanout-server")
    })
    const port = Number((yield* server.next("ready"))["port"])
    yield* Effect.addFinalizer(() => stop(server))
    const emitter = yield* spawnChild({
      script: join(here, "fanout-emitter.ts"),
      args: [],
      env: { BENCH_DATABASE_URL: db.url, BENCH_RUNS: String(options.runs) },
      execArgv: options.execArgv("fanout-emitter")
    })
    yield* emitter.next("ready")
    yield* Effect.addFinalizer(() => stop(emitter))
    const serverCpuUs = Effect.zipRight(
      server.send({ type: "cpu" }),
      Effect.map(server.next("cpu"), (m) => ({ user: Number(m["user"]), system: Number(m["system"]) }))
    )

    const round = (events: number) =>
      Effect.scoped(Effect.gen(function*() {
        yield* emitter.send({ type: "start", events, intervalMs: options.intervalMs })
        const ids = (yield* emitter.next("started"))["ids"] as ReadonlyArray<string>
        const clients = yield* spawnChild({
          script: join(here, "fanout-clients.ts"),
          args: [],
          env: { BENCH_BASE_URL: `http://127.0.0.1:${port}`, BENCH_RUN_IDS: ids.join(","), BENCH_CLIENTS: String(options.clients) },
          execArgv: options.execArgv("fanout-clients")
        })
        yield* clients.next("connected").pipe(within("120 seconds", "the clients did not all connect"))
        const cpuBefore = yield* serverCpuUs
        const wallBefore = nowMs()
        yield* emitter.send({ type: "go" })
        const message = yield* clients.next("result").pipe(
          within(Duration.sum(Duration.seconds(60), Duration.millis(events * options.intervalMs)), "the clients did not all see their run end")
        )
        const cpuAfter = yield* serverCpuUs
        const userUs = cpuAfter.user - cpuBefore.user
        const systemUs = cpuAfter.system - cpuBefore.system
        const serverUs = userUs + systemUs
        const wallMs = nowMs() - wallBefore
        const result = message["result"] as ClientsResult
        if (result.wrong > 0) return yield* new BenchError({ message: `${result.wrong} events out of order or missing at the clients` })
        const expected = options.runs * events * Math.ceil(options.clients / options.runs)
        if (result.deliveries < expected - options.runs * events) {
          return yield* new BenchError({ message: `${result.deliveries} ticks delivered, expected about ${expected}` })
        }
        const sorted = sortNumbers(result.latencies)
        return {
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          max: sorted[sorted.length - 1]!,
          deliveries: result.deliveries,
          serverCpuUsPerDelivery: serverUs / result.deliveries,
          serverSystemUsPerDelivery: systemUs / result.deliveries,
          healthzP99: percentile(sortNumbers(result.healthz), 99),
          serverBusy: serverUs / 1000 / wallMs,
          clientsBusy: result.cpuUs / 1000 / result.wallMs
        } satisfies FanoutRep
      }))

    if (options.warmupEvents > 0) yield* round(options.warmupEvents)
    return yield* round(options.events)
  }))
