/**
 * The example app's compiled JavaScript on plain `node`, end to end: its
 * server and its worker as two processes on one database, then its
 * `checkout.js` (runstream/client only) starts an invoice over /rpc and follows
 * it to `run.succeeded`; last, SIGTERM stops both and each exits 0.
 *
 *   node example-e2e.mjs <example dir> [DATABASE_URL]
 *
 * Without a DATABASE_URL the server runs alone, with its workers inside, on
 * an embedded Postgres. Every wait is bounded; the script exits 1 on failure.
 */
import { spawn } from "node:child_process"
import { createServer } from "node:net"
import { join } from "node:path"

const [dir, databaseUrl] = process.argv.slice(2)
if (dir === undefined) throw new Error("usage: node example-e2e.mjs <example dir> [DATABASE_URL]")

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    }).on("error", reject)
  })

/** Starts `node <file>`, echoing its output with a prefix; `waitFor(text)` resolves when a line contains it. */
const start = (name, file, env, args = []) => {
  const child = spawn(process.execPath, [join(dir, file), ...args], { cwd: dir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
  let seen = ""
  const waiters = []
  const onData = (chunk) => {
    const text = chunk.toString()
    seen += text
    for (const line of text.split("\n")) if (line !== "") console.log(`[${name}] ${line}`)
    for (const waiter of waiters) if (seen.includes(waiter.text)) waiter.resolve()
  }
  child.stdout.on("data", onData)
  child.stderr.on("data", onData)
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })))
  const waitFor = (text, ms) =>
    new Promise((resolve, reject) => {
      if (seen.includes(text)) return resolve()
      const timer = setTimeout(() => reject(new Error(`${name}: no "${text}" within ${ms} ms`)), ms).unref()
      waiters.push({ text, resolve: () => (clearTimeout(timer), resolve()) })
      exited.then(({ code }) => reject(new Error(`${name} exited (${code}) before "${text}"`)))
    })
  return { child, exited, waitFor }
}

// Timers are unref'd: a bound that was not needed must not keep this script alive.
const within = (promise, ms, what) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref())])

const port = await freePort()
const common = { PORT: String(port), RUNSTREAM_LOG_LEVEL: "info" }
const processes = []
const started = Date.now()
try {
  const server = start("server", "dist/src/server.js", databaseUrl === undefined
    ? { ...common, RUNSTREAM_SERVER_WORKERS: "true", RUNSTREAM_DATA_DIR: join(dir, ".runstream") }
    : { ...common, DATABASE_URL: databaseUrl })
  processes.push(server)
  await server.waitFor(`listening on http://127.0.0.1:${port}`, 60_000)
  if (databaseUrl !== undefined) {
    const worker = start("worker", "dist/src/worker.js", { ...common, DATABASE_URL: databaseUrl })
    processes.push(worker)
    await worker.waitFor("workers ready", 30_000)
  }
  console.log(`ready after ${Date.now() - started} ms`)
  const checkout = start("checkout", "dist/src/checkout.js", {}, [`http://127.0.0.1:${port}/rpc`])
  await checkout.waitFor("run.succeeded", 30_000)
  const { code } = await within(checkout.exited, 30_000, "checkout's exit")
  if (code !== 0) throw new Error(`checkout exited ${code}`)
  console.log(`one invoice end to end in ${Date.now() - started} ms from the first start`)
  for (const { child } of processes) child.kill("SIGTERM")
  for (const [i, { exited }] of processes.entries()) {
    const { code: exit } = await within(exited, 30_000, `process ${i}'s shutdown`)
    if (exit !== 0) throw new Error(`process ${i} exited ${exit} after SIGTERM`)
  }
  console.log("example end to end: ok")
} catch (error) {
  console.error(`example end to end: FAILED: ${error.message}`)
  for (const { child } of processes) child.kill("SIGKILL")
  process.exit(1)
}
