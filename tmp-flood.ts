import { Effect, Option } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freshDatabase, startEntry, waitFor } from "./scripts/faults/common.ts"
import { endless, healthProbe } from "./scripts/faults/rpc-fuzz.ts"

const serverUrl = process.env.FAULTS_PG ?? "postgres://postgres@127.0.0.1:5432/postgres"
const logDir = mkdtempSync(join(tmpdir(), "flood-"))
const n = Number(process.env.FLOODS ?? 40)
const program = Effect.gen(function*() {
  const db = yield* freshDatabase(serverUrl)
  const server = yield* startEntry({ name: "s6-server", entry: "server", url: db.url, logDir, env: { RUNSTREAM_MAX_STREAMS: "300" }, execArgv: process.env.SERVER_ARGS?.split(" ").filter(Boolean) })
  const port = Number(new URL(server.baseUrl).port)
  const probe = healthProbe(`${server.baseUrl}/healthz`, 50)
  yield* Effect.sleep(1000)
  const t0 = Date.now()
  const out = yield* Effect.promise(() => {
    let id = 0
    const allEvents = () => `{"_tag":"Request","id":"${++id}","tag":"AllEvents","payload":{},"headers":[]}\n`
    return Promise.all(Array.from({ length: n }, () => endless(port, allEvents(), allEvents)))
  })
  const t1 = Date.now()
  yield* Effect.sleep(500)
  const { samples } = yield* Effect.promise(() => probe.stop())
  const during = samples.filter((s) => s.at >= t0 && s.at <= t1).map((s) => s.ms).sort((a, b) => a - b)
  const all = samples.map((s) => s.ms).sort((a, b) => a - b)
  const p = (xs: number[], q: number) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]?.toFixed(1)
  console.log(`floods ${n}: ${t1 - t0} ms; healthz during: n=${during.length} p50=${p(during, 0.5)} p99=${p(during, 0.99)} max=${during.at(-1)?.toFixed(1)}; all: n=${all.length} p99=${p(all, 0.99)} max=${all.at(-1)?.toFixed(1)}; outcomes ${[...new Set(out.map((o) => o.what))].join(",")}`)
  yield* server.kill("SIGTERM")
  yield* waitFor("server exit", Effect.sync(() => server.alive() ? Option.none() : Option.some(true)), { timeout: "30 seconds" })
  console.log("logs in", logDir)
})
Effect.runPromise(Effect.scoped(program)).then(() => process.exit(0), (e) => (console.error(e), process.exit(1)))
