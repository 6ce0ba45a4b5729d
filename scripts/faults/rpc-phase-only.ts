/**
 * Scenario 6's hostile RPC phase alone (`npx tsx scripts/faults/rpc-phase-only.ts`),
 * against a server on a fresh database of `FAULTS_PG` (default the local
 * server at 127.0.0.1:5432), for profiling: node flags for the server come
 * from `SERVER_ARGS` (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`; the profile
 * is written when the server exits). `QUICK=1` for the quick version's sizes.
 */
import { Context, Effect, Layer, Option } from "effect"
import { spawn } from "node:child_process"
import { once } from "node:events"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Runs } from "../../src/Runs.ts"
import { freshDatabase, startEntry, startNode, waitFor } from "./common.ts"
import { driverProgram } from "./harness.ts"
import { healthProbe } from "./rpc-fuzz.ts"
import { rpcPhase } from "./s6-fuzz.ts"

const serverUrl = process.env.FAULTS_PG ?? "postgres://postgres@127.0.0.1:5432/postgres"
const logDir = mkdtempSync(join(tmpdir(), "rpc-phase-"))
const program = Effect.gen(function*() {
  const db = yield* freshDatabase(serverUrl)
  const [server] = yield* Effect.all([
    startEntry({ name: "s6-server", entry: "server", url: db.url, logDir, env: { RUNSTREAM_MAX_STREAMS: "300" }, execArgv: process.env.SERVER_ARGS?.split(" ").filter(Boolean) }),
    startNode({ name: "s6-worker", role: "worker", url: db.url, logDir, env: { RUNSTREAM_WORKER_QUEUES: "s6-large-log", RUNSTREAM_WORKER_CONCURRENCY: "1" } })
  ], { concurrency: "unbounded" })
  const port = Number(new URL(server.baseUrl).port)
  const built = yield* Layer.build(driverProgram(db.url, { maxConnections: 2 }))
  const runs = Context.get(built, Runs)
  const [large] = yield* runs.startMany([{ task: "faults.burst", input: { events: 50_000, concurrency: 200, bytes: 200 }, options: { queue: "s6-large-log" } }])
  yield* waitFor("the large run", Effect.map(runs.get(large!.run.id), (r) => r.status === "succeeded" ? Option.some(true) : Option.none()), { timeout: "120 seconds", interval: "200 millis" })
  // CONTROL=1: the same probe, meanwhile, on a bare node:http server in a process of its own (the probe's own floor on this machine).
  const control = process.env.CONTROL === "1" ? yield* Effect.promise(startControl) : undefined
  const result = yield* Effect.promise(() => rpcPhase(server, port, large!.run.id, process.env.QUICK === "1"))
  console.log(JSON.stringify(result, null, 1))
  if (control !== undefined) {
    const { failures, samples } = yield* Effect.promise(control.probe.stop)
    const ms = samples.map((sample) => sample.ms).sort((a, b) => a - b)
    console.log(`control: ${ms.length} answers, p50 ${ms[Math.floor(ms.length * 0.5)]!.toFixed(1)} ms, p99 ${ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.99))]!.toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms, ${failures} failed`)
    control.child.kill()
  }
  yield* server.kill("SIGTERM")
  yield* waitFor("server exit", Effect.sync(() => server.alive() ? Option.none() : Option.some(true)), { timeout: "30 seconds" })
  console.log("logs in", logDir)
})
async function startControl() {
  const child = spawn(process.execPath, ["-e", `require("node:http").createServer((q, r) => r.end('{"status":"ok"}')).listen(0, "127.0.0.1", function() { console.log(this.address().port) })`], { stdio: ["ignore", "pipe", "inherit"] })
  const [line] = (await once(child.stdout, "data")) as [Buffer]
  const probe = healthProbe(`http://127.0.0.1:${line.toString().trim()}/healthz`, 100)
  await probe.ready
  return { child, probe }
}

Effect.runPromise(Effect.scoped(program)).then(() => process.exit(0), (e) => (console.error(e), process.exit(1)))
