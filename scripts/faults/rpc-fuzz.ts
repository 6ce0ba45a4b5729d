/**
 * `POST /rpc` for scenario 6: fast-check bodies of NDJSON messages (valid
 * calls with hostile payloads, malformed frames, odd and huge request ids,
 * floods of calls, lines over the size limit), how an answer is judged, and
 * the hostile clients of the RPC phase (endless floods, stream hoarders,
 * huge ids, oversized starts, slow bodies, clients that never read).
 */
import * as fc from "fast-check"
import { spawn } from "node:child_process"
import { once } from "node:events"
import { request } from "node:http"
import { connect } from "node:net"
import { Worker } from "node:worker_threads"

/** One `POST /rpc` of the fuzzer. */
export interface RpcCase {
  readonly body: string | Uint8Array
}

export interface RpcAnswer {
  readonly status: number
  readonly ok: boolean
  readonly why: string
  /** Ids of runs a `Start` in the body created. */
  readonly runIds: ReadonlyArray<string>
  /** A call answered `Unavailable`: the RPC side's 503. */
  readonly unavailable: boolean
}

const tags = ["Start", "Get", "List", "Cancel", "ReadEvents", "Events", "AllEvents", "AwaitCompletion"] as const

/** Values a hostile client puts where a string or a number belongs. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("\u0000", "a\u0000b", "\ud800", "😀", "", " ", "x".repeat(10_000)),
  fc.constantFrom(9223372036854775808, -1, 1.5, 1e308, -0, 2 ** 53, 2 ** 31, 0),
  fc.constantFrom("0000-01-01T00:00:00Z", "-000001-01-01T00:00:00Z", "+010000-01-01T00:00:00Z", "+275760-09-13T00:00:00.000Z", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z")
)

const runIdOf = (known: ReadonlyArray<string>) => fc.oneof(fc.uuid(), fc.constantFrom(...known), oddValue)

const payloadOf = (tag: typeof tags[number], known: ReadonlyArray<string>): fc.Arbitrary<unknown> => {
  const maybe = <A>(a: fc.Arbitrary<A>) => fc.option(a, { nil: undefined })
  switch (tag) {
    case "Start":
      return fc.record({
        task: fc.oneof(fc.constantFrom("demo.echo", "demo.count", "demo.nope"), oddValue),
        input: oddValue,
        options: maybe(fc.record({ runAt: maybe(oddValue), priority: maybe(oddValue), idempotencyKey: maybe(oddValue), queue: maybe(oddValue) }, { requiredKeys: [] }))
      }, { requiredKeys: ["task"] })
    case "Get":
    case "Cancel":
      return fc.record({ runId: runIdOf(known) })
    case "List":
      return fc.record({ status: maybe(oddValue), task: maybe(oddValue), limit: maybe(oddValue), cursor: maybe(oddValue) }, { requiredKeys: [] })
    case "ReadEvents":
    case "Events":
      return fc.record({ runId: runIdOf(known), after: maybe(oddValue), limit: maybe(oddValue) }, { requiredKeys: ["runId"] })
    case "AllEvents":
      return fc.record({ task: maybe(oddValue), runId: maybe(runIdOf(known)) }, { requiredKeys: [] })
    case "AwaitCompletion":
      return fc.record({ runId: runIdOf(known), timeoutMs: maybe(fc.oneof(fc.integer({ min: 0, max: 300 }), oddValue)) }, { requiredKeys: ["runId"] })
  }
}

const idOf: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String) },
  { weight: 1, arbitrary: fc.integer({ min: 21, max: 2_000_000 }).map((n) => "9".repeat(n)) },
  { weight: 1, arbitrary: fc.constantFrom("abc", "-1", " 1", "0x10", "1e3", "", 7, null, {}, []) }
)

const headersOf: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.constant([]) },
  { weight: 1, arbitrary: fc.constantFrom(undefined, { a: "b" }, "x", [["a"]], [[1, 2]], Array.from({ length: 100 }, () => ["a", "b"])) }
)

const requestLine = (known: ReadonlyArray<string>) =>
  fc.constantFrom(...tags).chain((tag) =>
    fc.tuple(idOf, payloadOf(tag, known), headersOf).map(([id, payload, headers]) =>
      JSON.stringify({ _tag: "Request", id, tag, payload, ...(headers === undefined ? {} : { headers }) })
    )
  )

/** One line: mostly calls, then other messages and frames that are no message at all. */
const messageLine = (known: ReadonlyArray<string>): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 8, arbitrary: requestLine(known) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom("Interrupt", "Ack"), idOf).map(([tag, requestId]) => JSON.stringify({ _tag: tag, requestId })) },
    { weight: 1, arbitrary: fc.constantFrom("Ping", "Eof", "Pong", "Exit", "Hello", "").map((tag) => JSON.stringify({ _tag: tag })) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 80 }) },
    { weight: 1, arbitrary: fc.integer({ min: 100, max: 200_000 }).map((d) => `{"_tag":"Request","id":"1","tag":"Start","headers":[],"payload":${"[".repeat(d)}${"]".repeat(d)}}`) }
  )

/** Bodies of `POST /rpc`. */
export const rpcCases = (known: ReadonlyArray<string>): fc.Arbitrary<RpcCase> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.array(messageLine(known), { minLength: 1, maxLength: 5 }), fc.boolean()).map(([lines, newline]): RpcCase => ({ body: lines.join("\n") + (newline ? "\n" : "") })) },
    // A flood of calls in one body: streams and awaits that never end on their own.
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: 17, max: 50_000 }), fc.constantFrom("AllEvents", "Events", "AwaitCompletion"), fc.constantFrom(...known)).map(([n, tag, runId]): RpcCase => {
        const payload = JSON.stringify(tag === "AllEvents" ? {} : { runId })
        return { body: Array.from({ length: n }, (_, i) => `{"_tag":"Request","id":"${i}","tag":"${tag}","payload":${payload},"headers":[]}`).join("\n") + "\n" }
      })
    },
    // A line over the limit (1 MiB): a start with a large input, or junk without a newline.
    { weight: 1, arbitrary: fc.integer({ min: 1_100_000, max: 3_000_000 }).map((n): RpcCase => ({ body: `{"_tag":"Request","id":"1","tag":"Start","headers":[],"payload":{"task":"demo.echo","input":"${"x".repeat(n)}"}}\n` })) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 300 }).map((body): RpcCase => ({ body })) }
  )

/** A body, short, for the report. */
export const describeRpcBody = (body: RpcCase["body"]) => {
  const text = typeof body === "string" ? body : `<${body.length} bytes>`
  const lines = typeof body === "string" ? body.split("\n").length : 1
  return text.length > 100 ? `${JSON.stringify(text.slice(0, 80))}… (${text.length} chars, ${lines} lines)` : JSON.stringify(text)
}

const isErrorBody = (body: any) =>
  typeof body === "object" && body !== null && typeof body.error === "object" && body.error !== null &&
  typeof body.error.code === "string" && typeof body.error.message === "string"

const answerTags = new Set(["Exit", "Chunk", "Defect", "Pong"])

/** The ids of the well-formed `Start` requests of a body. */
const startIdsOf = (body: string | Uint8Array): ReadonlySet<string> => {
  const ids = new Set<string>()
  const text = typeof body === "string" ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8")
  for (const line of text.split("\n")) {
    try {
      const message = JSON.parse(line)
      if (message?._tag === "Request" && message.tag === "Start") ids.add(String(message.id))
    } catch {
      // not a message: no start
    }
  }
  return ids
}

/**
 * Sends a body on a connection of its own and judges the answer: a JSON error
 * (4xx/5xx), or NDJSON messages of the protocol. An answer still open after
 * `liveMs` is a live stream (an `AllEvents`, an await): judged on what came.
 */
export const sendRpc = (baseUrl: string, c: RpcCase, liveMs = 2000): Promise<RpcAnswer> =>
  new Promise((resolve) => {
    let settled = false
    const done = (answer: Omit<RpcAnswer, "runIds" | "unavailable"> & Partial<RpcAnswer>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      resolve({ runIds: [], unavailable: false, ...answer })
    }
    const timer = setTimeout(() => done({ status: 0, ok: false, why: "no answer within 60 s" }), 60_000)
    const starts = startIdsOf(c.body)
    const req = request(`${baseUrl}/rpc`, { method: "POST", headers: { "content-type": "application/ndjson", connection: "close" }, agent: false })
    let answered = false
    req.on("response", (res) => {
      answered = true
      const status = res.statusCode ?? 0
      const chunks: Array<Buffer> = []
      const judge = (ended: boolean) => {
        const text = Buffer.concat(chunks).toString("utf8")
        if (status !== 200) {
          try {
            const body = JSON.parse(text)
            return done(isErrorBody(body) ? { status, ok: true, why: body.error.code } : { status, ok: false, why: `error without the JSON error body: ${text.slice(0, 120)}` })
          } catch {
            return done({ status, ok: false, why: `not JSON: ${text.slice(0, 120)}` })
          }
        }
        const lines = text.split("\n")
        if (!ended) lines.pop() // a line cut by the end of the wait
        const runIds: Array<string> = []
        const exited = new Set<string>()
        let unavailable = false
        for (const line of lines) {
          if (line === "") continue
          let message: any
          try {
            message = JSON.parse(line)
          } catch {
            return done({ status, ok: false, why: `an answer line is not JSON: ${line.slice(0, 120)}` })
          }
          if (!answerTags.has(message?._tag)) return done({ status, ok: false, why: `an answer line is no protocol message: ${line.slice(0, 120)}` })
          const exit = message.exit
          if (message._tag === "Exit") exited.add(String(message.requestId))
          if (exit?._tag === "Success" && typeof exit.value?.run?.id === "string" && exit.value.created === true) runIds.push(exit.value.run.id)
          if (exit?._tag === "Failure" && JSON.stringify(exit.cause).includes("\"Unavailable\"")) unavailable = true
        }
        // A live answer is judged once every start it carries has its exit:
        // else a run created after the wait would look written by no request.
        if (!ended && [...starts].some((id) => !exited.has(id))) return void setTimeout(() => judge(false), liveMs)
        done({ status, ok: true, why: ended ? "answered" : "live stream", runIds, unavailable })
      }
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("error", () => done({ status, ok: false, why: "answer cut off" }))
      res.on("end", () => judge(true))
      if (status === 200) setTimeout(() => judge(false), liveMs)
    })
    // An error after the answer arrived (the server stopped reading a body it had refused) is no fault.
    req.on("error", (error) => {
      setTimeout(() => {
        if (!answered) done({ status: 0, ok: false, why: `no answer: ${String(error).slice(0, 120)}` })
      }, 500)
    })
    req.end(c.body)
  })

/** The result of one hostile RPC client. */
export interface Outcome {
  readonly status: number
  /** The code of a JSON error, the `_tag` of the last protocol message, or what went wrong. */
  readonly what: string
  readonly ms: number
}

/**
 * A body written for as long as the server reads it (`more` after `head`):
 * the answer must come, and end, anyway. Ended after `maxMs` otherwise.
 */
export const endless = (port: number, head: string, more: () => string, maxMs = 20_000): Promise<Outcome> =>
  new Promise((resolve) => {
    const began = Date.now()
    let open = true
    const req = request({ host: "127.0.0.1", port, path: "/rpc", method: "POST", headers: { "content-type": "application/ndjson" }, agent: false })
    const finish = (outcome: Omit<Outcome, "ms">) => {
      if (!open) return
      open = false
      clearTimeout(timer)
      req.destroy()
      resolve({ ...outcome, ms: Date.now() - began })
    }
    const timer = setTimeout(() => finish({ status: 0, what: `no end within ${maxMs} ms` }), maxMs)
    const chunks: Array<Buffer> = []
    let status: number | undefined
    const judge = () => {
      const text = Buffer.concat(chunks).toString()
      let what = text.slice(0, 60)
      try {
        if (status === 200) {
          const last = JSON.parse(text.trim().split("\n").at(-1)!)
          what = last._tag === "Defect" ? String(last.defect?.message ?? "Defect").split(":")[0]! : last._tag
        } else {
          what = JSON.parse(text).error.code
        }
      } catch {
        // left as the text
      }
      finish({ status: status ?? 0, what })
    }
    // The server may close the connection while this side still writes: what it answered first counts.
    req.on("error", (error: NodeJS.ErrnoException) => status === undefined ? finish({ status: 0, what: `connection error ${error.code ?? error.message}` }) : judge())
    req.on("response", (res) => {
      status = res.statusCode ?? 0
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      // Reset while this side still writes: the kernel may drop what was answered and not yet read.
      res.on("error", (error: NodeJS.ErrnoException) =>
        chunks.length === 0 ? finish({ status: 0, what: `connection error ${error.code ?? error.message} after the answer's head` }) : judge())
      res.on("end", () => chunks.length === 0 ? finish({ status: status ?? 0, what: "an answer without a message" }) : judge())
    })
    req.write(head)
    const pump = () => {
      while (open && req.write(more())) { /* until the socket's buffer is full */ }
      if (open) req.once("drain", pump)
    }
    pump()
  })

/** One call on a connection of its own, held open; resolves on its first answer bytes or its end. */
export const holdCall = (port: number, line: string) => {
  let close = () => {}
  const first = new Promise<{ status: number; text: string }>((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/rpc", method: "POST", headers: { "content-type": "application/ndjson" }, agent: false })
    close = () => req.destroy()
    req.on("error", () => resolve({ status: 0, text: "connection error" }))
    setTimeout(() => resolve({ status: 0, text: "no answer within 10 s" }), 10_000)
    req.on("response", (res) => {
      let text = ""
      res.on("data", (chunk: Buffer) => {
        text += chunk.toString()
      })
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }))
      // Streams with no event yet send nothing: the status is the answer so far.
      setTimeout(() => resolve({ status: res.statusCode ?? 0, text }), 1000)
    })
    req.end(line)
  })
  return { first, close: () => close() }
}

/** A `POST /rpc` whose body comes a byte a second and never ends. */
export const slowRpcBody = (port: number) => {
  const socket = connect(port, "127.0.0.1")
  socket.on("error", () => {})
  socket.write("POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write("1\r\n{\r\n")
  }, 1000)
  return { stop: () => (clearInterval(timer), socket.destroy()) }
}

/** An `Events` call on a run with a large log, whose answer is never read. */
export const neverReadsRpc = (port: number, runId: string) => {
  const line = `{"_tag":"Request","id":"1","tag":"Events","payload":{"runId":"${runId}"},"headers":[]}\n`
  const socket = connect(port, "127.0.0.1", () => {
    socket.write(`POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ndjson\r\nContent-Length: ${Buffer.byteLength(line)}\r\n\r\n${line}`)
    socket.pause()
  })
  socket.on("error", () => {})
  return socket
}

/**
 * The probe's own floor: a bare `node:http` server in a process of its own,
 * answering `{"status":"ok"}`, probed as the server is and at the same time.
 * On a 2-core machine the hostile clients, the server, its worker and
 * Postgres share the CPU with the probe's thread: what this one measures is
 * latency no server could do without here.
 */
export const controlProbe = async (everyMs: number) => {
  const child = spawn(process.execPath, ["-e", `require("node:http").createServer((q, r) => r.end('{"status":"ok"}')).listen(0, "127.0.0.1", function() { console.log(this.address().port) })`], { stdio: ["ignore", "pipe", "inherit"] })
  const [line] = (await once(child.stdout!, "data")) as [Buffer]
  const probe = healthProbe(`http://127.0.0.1:${line.toString().trim()}/healthz`, everyMs)
  await probe.ready
  return {
    stop: async () => {
      const result = await probe.stop()
      child.kill()
      return result
    }
  }
}

/**
 * Probes `url` every `everyMs` from a thread of its own, so that the load the
 * suite itself generates on its main thread does not count as the server's
 * latency. `ready` resolves after a first, uncounted request: the thread's
 * first `fetch` loads its HTTP client (100-250 ms on this machine, with the
 * server's loop idle), which is no latency of the server's. `stop` gives each
 * answer's time (epoch ms) and latency, and the failures.
 */
export const healthProbe = (url: string, everyMs: number) => {
  const worker = new Worker(
    `
    const { parentPort, workerData } = require("node:worker_threads")
    const samples = []
    let failures = 0
    let timer
    const begin = () => timer = setInterval(() => {
      const at = Date.now()
      const start = performance.now()
      fetch(workerData.url, { signal: AbortSignal.timeout(5000) }).then(
        (r) => r.arrayBuffer().then(() => r.ok ? samples.push({ at, ms: performance.now() - start }) : failures++),
        () => failures++
      )
    }, workerData.everyMs)
    fetch(workerData.url).then((r) => r.arrayBuffer(), () => {}).finally(() => {
      begin()
      parentPort.postMessage("ready")
    })
    parentPort.on("message", () => {
      clearInterval(timer)
      parentPort.postMessage({ samples, failures })
    })
    `,
    { eval: true, workerData: { url, everyMs } }
  )
  const ready = new Promise<void>((resolve) => worker.once("message", () => resolve()))
  return {
    ready,
    stop: () =>
      new Promise<{ readonly samples: ReadonlyArray<{ readonly at: number; readonly ms: number }>; readonly failures: number }>((resolve) => {
        worker.once("message", (result) => {
          void worker.terminate()
          resolve(result)
        })
        worker.postMessage("stop")
      })
  }
}
