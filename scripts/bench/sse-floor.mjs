/**
 * The floor under the fanout phase's CPU per delivery: a bare `node:http`
 * server (no Runstream) writing a 200-byte SSE frame to N open event streams,
 * its clients in a child process, and the server's CPU per write by how it writes:
 *   res     `res.write(frame)` (the platform's chunked encoding: cork, tick, four-part writev)
 *   pipe    a `Readable` per client piped into `res`, `push(frame)` (the SSE body of a followed run)
 *   socket  `res.socket.write(chunk)` of the frame framed once as an HTTP/1.1 chunk (tried, not kept: docs/decisions.md)
 * Every 10 ms it writes to G of the N clients (G=100: the fanout phase's 10,000 writes/s),
 * ROUNDS times. Usage: N=1000 G=100 ROUNDS=1000 node scripts/bench/sse-floor.mjs socket
 */
import { createServer, request } from "node:http"
import { fork } from "node:child_process"
import { Readable } from "node:stream"
const N = Number(process.env.N ?? 1000)
const mode = process.argv[2]
if (mode === "client") {
  const port = Number(process.argv[3]); let got = 0, open = 0
  for (let i = 0; i < N; i++) {
    const req = request({ port, host: "127.0.0.1", path: "/", agent: false }, (res) => { res.on("data", (c) => { got += c.length }); if (++open === N) process.send("open") })
    req.end()
  }
  process.on("message", (m) => { if (m === "stop") { process.send({ got }); process.exit(0) } })
} else {
  const frame = Buffer.from(`id: 123\nevent: tick\ndata: ${JSON.stringify({ runId: "0192f0e0-0000-7000-8000-000000000000", seq: 123, type: "tick", data: { n: 12, t: 1234567.891 }, at: new Date().toISOString() })}\n\n`.padEnd(200, " "))
  const framed = Buffer.concat([Buffer.from(frame.length.toString(16) + "\r\n"), frame, Buffer.from("\r\n")])
  const ress = []; const readables = []
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" })
    if (mode === "pipe") { const r = new Readable({ read() {} }); r.pipe(res); readables.push(r); r.push(Buffer.from("retry: 1000\n\n")) }
    else res.write("retry: 1000\n\n")
    ress.push(res)
  })
  server.listen(0, "127.0.0.1", () => {
    const child = fork(new URL(import.meta.url).pathname, ["client", String(server.address().port)])
    child.on("message", async (m) => {
      if (m !== "open") { console.log(JSON.stringify(m)); server.close(); process.exit(0) }
      await new Promise((r) => setTimeout(r, 500))
      const rounds = Number(process.env.ROUNDS ?? 300)
      const before = process.cpuUsage(); const t0 = performance.now()
      for (let k = 0; k < rounds; k++) {
        const G = Number(process.env.G ?? N), g0 = (k * G) % N
        for (let i = g0; i < g0 + G; i++) {
          if (mode === "res") ress[i].write(frame)
          else if (mode === "pipe") readables[i].push(frame)
          else if (mode === "socket") ress[i].socket.write(framed)
        }
        await new Promise((r) => setTimeout(r, 10))
      }
      await new Promise((r) => setTimeout(r, 200))
      const used = process.cpuUsage(before)
      const writes = rounds * Number(process.env.G ?? N)
      console.log(`${mode}: ${((used.user + used.system) / writes).toFixed(2)} µs/write (user ${(used.user / writes).toFixed(2)}, sys ${(used.system / writes).toFixed(2)}) over ${writes} writes, ${(performance.now() - t0).toFixed(0)} ms`)
      child.send("stop")
    })
  })
}
