/**
 * What one held RPC stream costs the server (issue 16): `node --expose-gc
 * --import tsx scripts/bench/rpc-streams.ts [count]` builds the production
 * server (postgres bus, no workers) in this process on a fresh database of
 * `BENCH_DATABASE_URL` (default the local server), opens `count` (default
 * 1,000) connections each holding one `AllEvents` call, and prints the live
 * heap per held stream (after a full GC), and the CPU per stream to open them
 * all at once and to close them. The clients are raw sockets (one write, a
 * read), so nearly all of the CPU is the server's. A second argument `sse`
 * holds `GET /v1/events` streams instead, for comparison.
 */
import { HttpServer } from "@effect/platform"
import { Effect, Layer, Schedule } from "effect"
import { connect, type Socket } from "node:net"
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { writeHeapSnapshot } from "node:v8"
import * as Server from "../../src/http/Server.ts"
import { withScheduler } from "../../src/main/Main.ts"
import { makeDatabase, Noop, programLayer, quietLogs } from "./common.ts"

const serverUrl = process.env["BENCH_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
const count = Number(process.argv[2] ?? 1000)
/** `sse`: the same with `GET /v1/events` (SSE), for comparison. */
const mode = process.argv[3] ?? "rpc"
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error("run with node --expose-gc")

const heapMB = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed / 1e6
}
const cpuMs = () => {
  const used = process.cpuUsage()
  return (used.user + used.system) / 1000
}

const call = `{"_tag":"Request","id":"1","tag":"AllEvents","payload":{},"headers":[]}\n`

/** Opens a connection holding one AllEvents call; resolves once the answer's status line has arrived. */
const answeredAfter: Array<number> = []
const hold = (port: number, from = performance.now()) =>
  new Promise<Socket>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      if (mode === "healthz") {
        socket.write(`GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`)
      } else if (mode === "sse") {
        socket.write(`GET /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n`)
      } else {
        socket.write(`POST /rpc HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/ndjson\r\ntransfer-encoding: chunked\r\n\r\n`)
        socket.write(`${call.length.toString(16)}\r\n${call}\r\n0\r\n\r\n`)
      }
    })
    socket.once("data", (data) => {
      if (!data.toString().startsWith("HTTP/1.1 200")) reject(new Error(data.toString().slice(0, 200)))
      else {
        answeredAfter.push(performance.now() - from)
        resolve(socket)
      }
    })
    socket.once("error", reject)
  })

const program = Effect.gen(function*() {
  const database = yield* makeDatabase(serverUrl)
  const context = yield* Layer.build(
    Server.layer({
      port: 0,
      host: "127.0.0.1",
      maxStreams: Number(process.env["MAX_STREAMS"] ?? 100_000),
      ...(process.env["STREAM_SETUPS"] ? { streamSetups: Number(process.env["STREAM_SETUPS"]) } : {})
    }).pipe(
      Layer.provideMerge(programLayer({ url: database.url, tasks: [Noop], bus: "postgres", workers: false }))
    )
  )
  const address = yield* HttpServer.addressWith((address) => Effect.succeed(address)).pipe(Effect.provide(context))
  const port = address._tag === "TcpAddress" ? address.port : 0
  const baseline = openSockets()
  // Warm-up: the first connections compile what the rest run.
  for (const socket of yield* Effect.promise(() => Promise.all(Array.from({ length: 50 }, () => hold(port))))) socket.destroy()
  yield* settled(baseline)

  const heapBefore = heapMB()
  if (process.env["HEAP_SNAPSHOT"]) writeHeapSnapshot(`${process.env["HEAP_SNAPSHOT"]}.before`)
  // CPU_PROFILE=<path>: a CPU profile of the opening alone.
  const profiler = process.env["CPU_PROFILE"] ? new Session() : undefined
  if (profiler) {
    profiler.connect()
    yield* Effect.promise(() => new Promise((resolve) => profiler.post("Profiler.enable", () => profiler.post("Profiler.start", resolve))))
  }
  const cpuBefore = cpuMs()
  const openedAt = performance.now()
  // /healthz every 20 ms meanwhile, on a connection of its own.
  const probes: Array<number> = []
  let probing = true
  void (async () => {
    while (probing) {
      const at = performance.now()
      await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.text())
      probes.push(performance.now() - at)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()
  const sockets = yield* Effect.promise(() => Promise.all(Array.from({ length: count }, () => hold(port))))
  probing = false
  if (profiler) {
    yield* Effect.promise(() =>
      new Promise((resolve) =>
        profiler.post("Profiler.stop", (_error, { profile }) => resolve(writeFileSync(process.env["CPU_PROFILE"]!, JSON.stringify(profile))))
      )
    )
  }
  const openMs = performance.now() - openedAt
  const answered = answeredAfter.slice(-count).sort((a, b) => a - b)
  const cpuOpen = cpuMs() - cpuBefore
  const active = sockets.length
  const heapHeld = heapMB()
  // HEAP_SNAPSHOT=<path>: what the held streams keep alive.
  if (process.env["HEAP_SNAPSHOT"]) writeHeapSnapshot(process.env["HEAP_SNAPSHOT"])
  const cpuBeforeClose = cpuMs()
  for (const socket of sockets) socket.destroy()
  yield* settled(baseline)
  const cpuClose = cpuMs() - cpuBeforeClose
  const heapAfter = heapMB()
  console.log(JSON.stringify({
    streams: count,
    active,
    openWallMs: Math.round(openMs),
    answeredMs: { p50: Math.round(answered[Math.floor(count / 2)]!), p90: Math.round(answered[Math.floor(count * 0.9)]!), max: Math.round(answered.at(-1)!) },
    healthzMs: (() => {
      const sorted = probes.sort((a, b) => a - b)
      return { n: sorted.length, p50: Math.round(sorted[Math.floor(sorted.length / 2)]!), p99: Math.round(sorted[Math.floor(sorted.length * 0.99)]!), max: Math.round(sorted.at(-1)!) }
    })(),
    heapPerStreamKB: Math.round((heapHeld - heapBefore) * 1000 / count),
    heapLeftAfterCloseMB: Number((heapAfter - heapBefore).toFixed(1)),
    cpuOpenPerStreamMs: Number((cpuOpen / count).toFixed(2)),
    cpuClosePerStreamMs: Number((cpuClose / count).toFixed(2))
  }))
})

const openSockets = () => process.getActiveResourcesInfo().filter((kind) => kind === "TCPSocketWrap").length

/** Until the connections closed (server side too) and the server's CPU is quiet for 100 ms. */
const settled = (baseline: number) => Effect.gen(function*() {
  yield* Effect.repeat(Effect.sync(openSockets), { until: (n) => n <= baseline, schedule: Schedule.spaced("10 millis") })
  let last = cpuMs()
  while (true) {
    yield* Effect.sleep("100 millis")
    const now = cpuMs()
    if (now - last < 5) return
    last = now
  }
})

Effect.runPromise(withScheduler(Effect.scoped(program)).pipe(Effect.provide(quietLogs))).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
