/**
 * Scenario 6's hostile RPC phase alone (`npx tsx scripts/faults/rpc-phase-only.ts`),
 * against a server on a fresh database of `FAULTS_PG` (default the local
 * server at 127.0.0.1:5432), for profiling: node flags for the server come
 * from `SERVER_ARGS` (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`; the profile
 * is written when the server exits). `QUICK=1` for the quick version's sizes.
 */
import { Context, Effect, Layer, Option } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Runs } from "../../src/Runs.ts"
import { freshDatabase, startEntry, startNode, waitFor } from "./common.ts"
import { driverProgram } from "./harness.ts"
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
  const result = yield* Effect.promise(() => rpcPhase(server, port, large!.run.id, process.env.QUICK === "1"))
  console.log(JSON.stringify(result, null, 1))
  yield* server.kill("SIGTERM")
  yield* waitFor("server exit", Effect.sync(() => server.alive() ? Option.none() : Option.some(true)), { timeout: "30 seconds" })
  console.log("logs in", logDir)
})
Effect.runPromise(Effect.scoped(program)).then(() => process.exit(0), (e) => (console.error(e), process.exit(1)))
