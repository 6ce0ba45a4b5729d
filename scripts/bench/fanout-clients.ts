/**
 * The fanout phase's SSE clients: `BENCH_CLIENTS` plain `node:http`
 * connections to `/v1/runs/:id/events` (spread evenly over the runs), each
 * parsing the event stream as a browser would. Sends `connected` once every
 * client has the run's `run.started` (seq 2: its live feed is open), then
 * `result` when every client has the terminal event: the latency of each tick
 * (arrival minus the `t` its emitter stamped, shared monotonic clock), the
 * deliveries, and this process's CPU time.
 *
 * env: BENCH_BASE_URL, BENCH_RUN_IDS (comma-separated), BENCH_CLIENTS.
 */
import { request } from "node:http"
import { nowMs } from "./common.ts"

export interface ClientsResult {
  readonly latencies: ReadonlyArray<number>
  /** Answer times of `GET /healthz`, asked every 100 ms during the round. */
  readonly healthz: ReadonlyArray<number>
  readonly deliveries: number
  readonly wrong: number
  readonly cpuUs: number
  readonly wallMs: number
}

const baseUrl = process.env["BENCH_BASE_URL"]!
const ids = process.env["BENCH_RUN_IDS"]!.split(",")
const clientCount = Number(process.env["BENCH_CLIENTS"])
const terminal = new Set(["run.succeeded", "run.failed", "run.cancelled"])

const latencies: Array<number> = []
const healthz: Array<number> = []
let probing: ReturnType<typeof setInterval> | undefined

/** The health check's answer time while the clients are served (issue 17: no worse than before). */
const probeHealth = () => {
  const start = nowMs()
  const req = request(`${baseUrl}/healthz`, { agent: false }, (res) => {
    res.resume()
    res.on("end", () => healthz.push(nowMs() - start))
  })
  req.on("error", () => {})
  req.end()
}
let deliveries = 0
let connected = 0
let finished = 0
let wrong = 0
let cpuBefore: NodeJS.CpuUsage | undefined
let wallBefore = 0

const send = (message: unknown) => process.send!(message)

const follow = (runId: string) => {
  let buffer = ""
  let data: string | undefined
  let expected = 1
  let live = false
  const req = request(`${baseUrl}/v1/runs/${runId}/events`, { headers: { accept: "text/event-stream" }, agent: false })
  req.on("response", (res) => {
    if (res.statusCode !== 200) {
      send({ type: "error", message: `HTTP ${res.statusCode} for ${runId}` })
      return
    }
    res.setEncoding("utf8")
    res.on("data", (chunk: string) => {
      const at = nowMs()
      buffer += chunk
      let end: number
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end)
        buffer = buffer.slice(end + 1)
        if (line.startsWith("data: ")) {
          data = line.slice(6)
        } else if (line === "" && data !== undefined) {
          const event = JSON.parse(data) as { seq: number; type: string; data: { t?: number } }
          data = undefined
          if (event.seq !== expected) wrong++
          expected = event.seq + 1
          if (event.type === "tick" && event.data.t !== undefined) {
            latencies.push(at - event.data.t)
            deliveries++
          }
          if (!live && event.seq >= 2) {
            live = true
            if (++connected === clientCount) {
              cpuBefore = process.cpuUsage()
              wallBefore = nowMs()
              probing = setInterval(probeHealth, 100)
              send({ type: "connected" })
            }
          }
          if (terminal.has(event.type)) {
            req.destroy()
            if (++finished === clientCount) {
              const cpu = process.cpuUsage(cpuBefore)
              clearInterval(probing)
              const result: ClientsResult = { latencies, healthz, deliveries, wrong, cpuUs: cpu.user + cpu.system, wallMs: nowMs() - wallBefore }
              send({ type: "result", result })
            }
          }
        }
      }
    })
  })
  req.on("error", (error) => {
    if (!/aborted|socket hang up/.test(error.message)) send({ type: "error", message: `${runId}: ${error.message}` })
  })
  req.end()
}

for (let i = 0; i < clientCount; i++) follow(ids[i % ids.length]!)
process.on("message", (message) => {
  if ((message as { type?: unknown }).type === "stop") process.exit(0)
})
