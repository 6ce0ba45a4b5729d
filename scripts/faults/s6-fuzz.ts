/**
 * Scenario 6, bad and hostile input. A fast-check property over the HTTP API
 * of the production server (`src/main/server.ts`): random requests to every
 * route — JSON bodies with random, wrong-typed, huge (up to 1.5 MB), deep (up
 * to 200,000 levels) and unicode values (lone surrogates, NUL, bidi
 * controls), bodies that are not JSON or not declared as JSON, random ids,
 * cursors, `after`s and `Last-Event-ID`s, random methods and paths.
 *
 * Then again (a tenth as many cases) with hostile clients: slowloris connections that send their headers
 * a line every 2 s and never finish, bodies sent a byte a second, and SSE
 * clients that never read while a run writes a large log (they stop reading
 * on a stream of several megabytes).
 *
 * `POST /rpc` is fuzzed beside the REST routes (see rpc-fuzz.ts): bodies of
 * NDJSON messages with hostile payloads, malformed frames, odd and huge ids,
 * floods of calls and lines over the limit. Then a third phase of hostile RPC
 * clients alone: endless floods of calls, more stream holders than the
 * server's stream budget, ids of a million and sixteen million digits, 16
 * concurrent 15 MB starts, bodies a byte a second, clients that never read;
 * there `/healthz` must answer with a p99 under 50 ms and the server's memory
 * stay under `rpcPeakBoundMB`.
 *
 * Every answer must be a success or a 4xx/5xx with the JSON error body (or,
 * on /rpc, protocol messages); the server stays up and answers `/healthz`
 * quickly throughout; the database holds no run, event, job or outbox row
 * that an accepted request did not write. 5xx answers (and RPC `Unavailable`)
 * are counted apart: to bad input they are a fault.
 */
import * as fc from "fast-check"
import { type ClientRequest, request } from "node:http"
import { connect, type Socket } from "node:net"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { Context, Effect, Layer } from "effect"
import { Runs } from "../../src/Runs.ts"
import { checkRuns, freshDatabase, getStatus, percentile, query, seconds, startEntry, startNode } from "./common.ts"
import { asFault, driverProgram, type Scenario } from "./harness.ts"
import { makeChecks } from "./report.ts"
import { controlProbe, describeRpcBody, endless, healthProbe, holdCall, neverReadsRpc, rpcCases, type RpcCase, sendRpc, slowRpcBody } from "./rpc-fuzz.ts"

/** The server's stream budget in this scenario (RUNSTREAM_MAX_STREAMS), which the RPC phase overruns. */
const maxStreams = 300

/** The RSS the server must stay under through the RPC phase (MB): the bound docs/reliability.md states. */
const rpcPeakBoundMB = 600

/**
 * /healthz during the RPC phase: every probe answered, p99 under 50 ms (issue
 * 16). Reported beside the same probe of a bare `node:http` server meanwhile
 * (`controlProbe`, the probe's floor on this machine: p99 5-10 ms idle). Before
 * the bounded protocol /healthz went silent for 23 s and the server died;
 * until 8 December the huge-ids step's drop of one-byte chunks stalled it
 * 140-320 ms in most runs (docs/reliability.md).
 */
const healthP99BoundMs = 50

/** One request of the fuzzer. */
interface Case {
  readonly method: string
  readonly path: string
  readonly headers: Record<string, string>
  readonly body?: string | Uint8Array | undefined
}

const tasks = ["demo.echo", "demo.count", "demo.sleep", "demo.flaky"]

/** JSON texts, some of them hostile. */
const jsonText = (known: ReadonlyArray<string>): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) },
    { weight: 3, arbitrary: fc.string({ unit: "binary", maxLength: 40 }).map((s) => JSON.stringify(s)) },
    { weight: 2, arbitrary: fc.constantFrom("\u0000", "\ud800", "x\udfffy", "\u202e\u2066", "😀", "'; DROP TABLE runstream_runs; --", "%00", "../../etc/passwd").map((s) => JSON.stringify(s)) },
    { weight: 2, arbitrary: fc.constantFrom("1e309", "-1e309", "-0", "9007199254740993", "1.5", "-1", "0", "2147483648", "true", "null", "[]", "{}") },
    { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 200_000 }).map((d) => `${"[".repeat(d)}${"]".repeat(d)}`) },
    { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 1_500_000 }).map((n) => JSON.stringify("x".repeat(n))) },
    { weight: 1, arbitrary: fc.constantFrom(...known).map((s) => JSON.stringify(s)) }
  )

const field = (name: string, value: fc.Arbitrary<string>) => fc.option(value.map((v) => `${JSON.stringify(name)}:${v}`), { nil: undefined })

/** A start body: the documented fields with random (often wrong) values, sometimes an unknown field. */
const startBody = (known: ReadonlyArray<string>) => {
  const any = jsonText(known)
  return fc.tuple(
    field("task", fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...tasks).map((t) => JSON.stringify(t)) }, { weight: 1, arbitrary: any })),
    field("input", fc.oneof(
      any,
      fc.record({ to: fc.integer({ min: -5, max: 30 }), delayMs: fc.integer({ min: 0, max: 10 }) }, { requiredKeys: ["to"] }).map((v) => JSON.stringify(v)),
      fc.record({ ms: fc.integer({ min: -5, max: 10_000 }) }).map((v) => JSON.stringify(v))
    )),
    field("idempotencyKey", any),
    field("queue", fc.oneof(any, fc.constantFrom("default", "other").map((q) => JSON.stringify(q)))),
    field("priority", any),
    field("runAt", fc.oneof(any, fc.date({ noInvalidDate: true }).map((d) => JSON.stringify(d.toISOString())))),
    field("maxAttempts", any),
    field("timeoutMs", any),
    field("surprise", any)
  ).map((fields) => `{${fields.filter((f) => f !== undefined).join(",")}}`)
}

const idText = (known: ReadonlyArray<string>) =>
  fc.oneof(
    fc.uuid(),
    fc.constantFrom(...known),
    fc.string({ unit: "binary", minLength: 1, maxLength: 60 }),
    fc.constantFrom("..", "%2e%2e", "%00", "00000000-0000-0000-0000-000000000000", "x".repeat(5000), "🙃")
  ).map((id) => encodeURIComponent(id))

const numberText = fc.oneof(fc.integer().map(String), fc.double().map(String), fc.string({ maxLength: 20 }), fc.constantFrom("-1", "1e309", "99999999999999999999", "0x10", "", " 1", "NaN"))

const cases = (known: ReadonlyArray<string>): fc.Arbitrary<Case> => {
  const json = { "content-type": "application/json" }
  const id = idText(known)
  const query = (pairs: ReadonlyArray<readonly [string, string | undefined]>) =>
    pairs.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${encodeURIComponent(v!)}`).join("&")
  return fc.oneof(
    { weight: 8, arbitrary: startBody(known).map((body): Case => ({ method: "POST", path: "/v1/runs", headers: json, body })) },
    // Well-formed starts of the task that takes any input: the hostile values reach the database.
    {
      weight: 4,
      arbitrary: fc.tuple(jsonText(known), fc.option(fc.string({ unit: "binary", maxLength: 30 }), { nil: undefined })).map(([input, key]): Case => ({
        method: "POST",
        path: "/v1/runs",
        headers: json,
        body: `{"task":"demo.echo","input":${input}${key === undefined ? "" : `,"idempotencyKey":${JSON.stringify(key)}`}}`
      }))
    },
    {
      weight: 2,
      arbitrary: fc.tuple(
        fc.oneof(fc.string({ unit: "binary", maxLength: 200 }), fc.uint8Array({ maxLength: 200 }), startBody(known)),
        fc.constantFrom("application/json", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "application/vnd.api+json", "")
      ).map(([body, type]): Case => ({ method: "POST", path: "/v1/runs", headers: type === "" ? {} : { "content-type": type }, body }))
    },
    { weight: 2, arbitrary: id.map((i): Case => ({ method: "GET", path: `/v1/runs/${i}`, headers: {} })) },
    { weight: 2, arbitrary: id.map((i): Case => ({ method: "POST", path: `/v1/runs/${i}/cancel`, headers: {} })) },
    {
      weight: 2,
      arbitrary: fc.tuple(
        fc.option(fc.oneof(fc.constantFrom("queued", "running", "succeeded", "failed", "cancelled"), fc.string()), { nil: undefined }),
        fc.option(fc.oneof(fc.constantFrom(...tasks), fc.string()), { nil: undefined }),
        fc.option(numberText, { nil: undefined }),
        fc.option(fc.oneof(fc.string(), fc.base64String(), fc.uuid().map((u) => Buffer.from(u).toString("base64url"))), { nil: undefined })
      ).map(([status, task, limit, cursor]): Case => ({
        method: "GET",
        path: `/v1/runs?${query([["status", status], ["task", task], ["limit", limit], ["cursor", cursor]])}`,
        headers: {}
      }))
    },
    {
      weight: 3,
      arbitrary: fc.tuple(id, fc.option(numberText, { nil: undefined }), fc.option(numberText, { nil: undefined }), fc.option(numberText, { nil: undefined }), fc.boolean()).map(
        ([i, after, limit, lastEventId, wantsJson]): Case => ({
          method: "GET",
          path: `/v1/runs/${i}/events?${query([["after", after], ["limit", limit]])}`,
          headers: {
            accept: wantsJson ? "application/json" : "text/event-stream",
            ...(lastEventId === undefined || !/^[\x20-\x7e]*$/.test(lastEventId) ? {} : { "last-event-id": lastEventId })
          }
        })
      )
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.option(fc.string(), { nil: undefined }), fc.option(id, { nil: undefined })).map(([task, run]): Case => ({
        method: "GET",
        path: `/v1/events?${query([["task", task], ["run", run === undefined ? undefined : decodeURIComponent(run)]])}`,
        headers: {}
      }))
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"), fc.webPath()).map(([method, path]): Case => ({
        method,
        path: path.startsWith("/") ? path : `/${path}`,
        headers: {}
      }))
    }
  )
}

/** Where the server answers with the dashboard's files rather than JSON (see src/http/Dashboard.ts). */
const isDashboardPath = (path: string) => {
  const bare = path.split("?")[0]!
  return bare === "/" || bare === "/index.html" || bare.startsWith("/assets/")
}

/** A body, short, for the report. */
const describeBody = (body: Case["body"]) => {
  if (body === undefined) return "none"
  const text = typeof body === "string" ? body : `<${body.length} bytes>`
  const depth = /^(\{"[^"]*":)?\[{50,}/.test(text) ? ` (JSON nested ${text.length / 2 | 0} deep)` : ""
  return text.length > 100 ? `${JSON.stringify(text.slice(0, 80))}… (${text.length} chars)${depth}` : JSON.stringify(text)
}

interface Answer {
  readonly status: number
  readonly ok: boolean
  readonly why: string
  readonly runId?: string | undefined
}

const isErrorBody = (body: any) =>
  typeof body === "object" && body !== null && typeof body.error === "object" && body.error !== null &&
  typeof body.error.code === "string" && typeof body.error.message === "string"

/**
 * Sends a case on a connection of its own (`node:http`, no keep-alive: a
 * pooled connection closed by the server's idle timeout just as a request
 * goes out would look like the server hanging up on it) and judges the answer.
 */
const send = (baseUrl: string, c: Case): Promise<Answer> =>
  new Promise((resolve) => {
    let settled = false
    const done = (answer: Answer) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(answer)
    }
    const timer = setTimeout(() => {
      done({ status: 0, ok: false, why: "no answer within 60 s" })
      req?.destroy()
    }, 60_000)
    let req: ClientRequest | undefined
    try {
      req = request(`${baseUrl}${c.path}`, { method: c.method, headers: { ...c.headers, connection: "close" }, agent: false })
    } catch (error) {
      // Requests the client itself refuses to build (bad characters in the path or a header) are not the server's answers.
      return done({ status: 0, ok: true, why: `not sent: ${String(error).slice(0, 60)}` })
    }
    req.on("response", (res) => {
      const type = String(res.headers["content-type"] ?? "")
      const status = res.statusCode ?? 0
      if (status === 200 && type.startsWith("text/event-stream")) {
        // A stream: its first bytes are enough.
        res.once("data", () => {
          done({ status, ok: true, why: "event stream" })
          req!.destroy()
        })
        return
      }
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("error", () => done({ status, ok: false, why: "answer cut off" }))
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8")
        if (status === 204 || (c.method === "HEAD" && text === "")) return done({ status, ok: true, why: "empty" })
        // The dashboard's page and files are served at /, /index.html and /assets/* (when it was built, as in CI).
        if (status === 200 && (c.method === "GET" || c.method === "HEAD") && isDashboardPath(c.path)) {
          return done({ status, ok: true, why: "dashboard file" })
        }
        let body: any
        try {
          body = JSON.parse(text)
        } catch {
          return done({ status, ok: false, why: `not JSON (${type}): ${text.slice(0, 120)}` })
        }
        if (status >= 200 && status < 300) {
          const runId = c.method === "POST" && c.path === "/v1/runs" ? body?.run?.id : undefined
          return done({ status, ok: true, why: "success", runId })
        }
        if (status >= 400 && status < 600) {
          return done(isErrorBody(body) ? { status, ok: true, why: `${body.error.code}` } : { status, ok: false, why: `error without the JSON error body: ${text.slice(0, 120)}` })
        }
        done({ status, ok: false, why: `unexpected status ${status}` })
      })
    })
    // An error after the answer arrived (the server stopped reading a body it had refused) is no fault.
    let answered = false
    req.on("response", () => {
      answered = true
    })
    req.on("error", (error) => {
      setTimeout(() => {
        if (!answered) done({ status: 0, ok: false, why: `no answer: ${String(error).slice(0, 120)}` })
      }, 500)
    })
    try {
      if (c.body !== undefined && c.method !== "GET" && c.method !== "HEAD") req.write(c.body)
      req.end()
    } catch (error) {
      done({ status: 0, ok: true, why: `not sent: ${String(error).slice(0, 60)}` })
      req.destroy()
    }
  })

/** A connection that sends a request's headers a line every 2 s, forever; or its body a byte a second. */
const slowClient = (port: number, kind: "headers" | "body") => {
  const socket = connect(port, "127.0.0.1")
  socket.on("error", () => {})
  let closedAt: number | undefined
  socket.on("close", () => {
    closedAt = Date.now()
  })
  socket.write(
    kind === "headers"
      ? "POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      : "POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
  )
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write(kind === "headers" ? `X-Slow-${Math.floor(Math.random() * 1e9)}: 1\r\n` : " ")
  }, kind === "headers" ? 2000 : 1000)
  return { socket, stop: () => (clearInterval(timer), socket.destroy()), closedAt: () => closedAt }
}

/** An SSE connection on a run that never reads what it is sent. */
const neverReads = (port: number, runId: string): Socket => {
  const socket = connect(port, "127.0.0.1", () => {
    socket.write(`GET /v1/runs/${runId}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
    socket.pause()
  })
  socket.on("error", () => {})
  return socket
}

export const scenario: Scenario = {
  id: 6,
  name: "Bad and hostile input",
  run: (ctx) =>
    Effect.gen(function*() {
      const began = Date.now()
      const numRuns = ctx.quick ? 400 : 3000
      const slowCount = ctx.quick ? 100 : 300
      const neverReadCount = ctx.quick ? 10 : 50
      const burstEvents = ctx.quick ? 10_000 : 50_000
      const db = yield* freshDatabase(ctx.serverUrl)
      const [server] = yield* Effect.all([
        startEntry({ name: "s6-server", entry: "server", url: db.url, logDir: ctx.logDir, env: { RUNSTREAM_MAX_STREAMS: String(maxStreams) } }),
        // Only for the large log of the never-reading clients: the fuzzer's runs stay queued.
        startNode({ name: "s6-worker", role: "worker", url: db.url, logDir: ctx.logDir, env: { RUNSTREAM_WORKER_QUEUES: "s6-large-log", RUNSTREAM_WORKER_CONCURRENCY: "1" } })
      ], { concurrency: "unbounded" })
      const port = Number(new URL(server.baseUrl).port)
      const program = yield* Layer.build(driverProgram(db.url, { maxConnections: 2 }))
      const runs = Context.get(program, Runs)
      const [large] = yield* runs.startMany([{ task: "faults.burst", input: { events: burstEvents, concurrency: 200, bytes: 200 }, options: { queue: "s6-large-log" } }])
      const known = [large!.run.id]
      const baselineMB = server.rssMB()

      const accepted = new Set<string>(known)
      const byStatus = new Map<number, number>()
      const serverErrors = new Map<string, { n: number; example: string }>()
      const violations: Array<string> = []
      let tried = 0
      const anyCase = fc.oneof(
        { weight: 10, arbitrary: cases(known).map((c) => ({ rest: c })) },
        { weight: 3, arbitrary: rpcCases(known).map((rpc) => ({ rpc })) }
      )
      const property = fc.asyncProperty(anyCase, async (k: { readonly rest: Case } | { readonly rpc: RpcCase }) => {
        tried++
        if ("rpc" in k) return judgeRpc(k.rpc, await sendRpc(server.baseUrl, k.rpc, 500))
        const c = k.rest
        const answer = await send(server.baseUrl, c)
        byStatus.set(answer.status, (byStatus.get(answer.status) ?? 0) + 1)
        if (answer.runId !== undefined) accepted.add(answer.runId)
        if (answer.status >= 500) {
          const key = `${c.method} ${c.path.split("?")[0]!.replace(/\/v1\/runs\/[^/]+/, "/v1/runs/:id")} → ${answer.status} ${answer.why}`
          const seen = serverErrors.get(key)
          serverErrors.set(key, { n: (seen?.n ?? 0) + 1, example: seen?.example ?? describeBody(c.body) })
        }
        if (!answer.ok) {
          if (violations.length < 5) violations.push(`${c.method} ${c.path.slice(0, 100)} (body ${describeBody(c.body)}): ${answer.why}`)
          return false
        }
        return true
      })

      let rpcTried = 0
      const judgeRpc = (c: RpcCase, answer: Awaited<ReturnType<typeof sendRpc>>) => {
        rpcTried++
        const status = answer.status === 200 ? 200 : answer.status
        byStatus.set(status, (byStatus.get(status) ?? 0) + 1)
        for (const id of answer.runIds) accepted.add(id)
        if (answer.status >= 500 || answer.unavailable) {
          const key = `POST /rpc → ${answer.unavailable ? "Unavailable" : `${answer.status} ${answer.why}`}`
          const seen = serverErrors.get(key)
          serverErrors.set(key, { n: (seen?.n ?? 0) + 1, example: seen?.example ?? describeRpcBody(c.body) })
        }
        if (!answer.ok && violations.length < 5) violations.push(`POST /rpc (body ${describeRpcBody(c.body)}): ${answer.why}`)
        return answer.ok
      }

      // Phase 1: the property alone.
      const seed = Date.now() % 2_147_483_647
      const outcome = yield* Effect.promise(() => fc.check(property, { numRuns, seed, endOnFailure: true }))
      const phase1 = tried

      // Phase 2: hostile clients, while a tenth as many cases run again and /healthz is probed.
      const hostileStart = Date.now()
      const slow = Array.from({ length: slowCount }, (_, i) => slowClient(port, i % 2 === 0 ? "headers" : "body"))
      const silent = Array.from({ length: neverReadCount }, () => neverReads(port, large!.run.id))
      yield* Effect.addFinalizer(() => Effect.sync(() => {
        for (const s of slow) s.stop()
        for (const s of silent) s.destroy()
      }))
      // The suite's own event loop, so that a slow /healthz is not blamed on the server wrongly.
      const lag = monitorEventLoopDelay({ resolution: 20 })
      lag.enable()
      const rss: Array<number> = []
      const health: Array<number> = []
      let healthFailures = 0
      let lastHealthy = Date.now()
      let longestSilence = 0
      const probe = setInterval(() => {
        rss.push(server.rssMB())
        const at = Date.now()
        fetch(`${server.baseUrl}/healthz`, { signal: AbortSignal.timeout(10_000) }).then(
          (r) => {
            if (!r.ok) return healthFailures++
            health.push(Date.now() - at)
            longestSilence = Math.max(longestSilence, Date.now() - lastHealthy)
            lastHealthy = Date.now()
          },
          () => healthFailures++
        )
      }, 500)
      yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(probe)))
      const hostileSeed = seed + 1
      const hostile = yield* Effect.promise(() => fc.check(property, { numRuns: Math.ceil(numRuns / 10), seed: hostileSeed, endOnFailure: true }))
      // The slow clients get at least this long.
      const hostileFor = ctx.quick ? 20_000 : 70_000
      yield* Effect.sleep(Math.max(0, hostileFor - (Date.now() - hostileStart)))
      clearInterval(probe)
      lag.disable()
      longestSilence = Math.max(longestSilence, Date.now() - lastHealthy)
      const slowOpen = slow.filter((s) => s.closedAt() === undefined).length
      const peakMB = Math.max(baselineMB, ...rss)
      for (const s of slow) s.stop()
      for (const s of silent) s.destroy()
      const healthAfter = yield* Effect.either(getStatus(`${server.baseUrl}/healthz`, 5000))
      const readyAfter = yield* Effect.either(getStatus(`${server.baseUrl}/readyz`, 5000))

      // Phase 3: hostile RPC clients alone, /healthz probed every 100 ms.
      const rpc = yield* Effect.promise(() => rpcPhase(server, port, large!.run.id, ctx.quick))

      // Nothing written but by the accepted requests.
      const strays = yield* query<{ what: string; n: number }>(db.url, `
        SELECT 'runs' AS what, count(*)::int AS n FROM runstream_runs WHERE NOT (id = ANY($1::uuid[]))
        UNION ALL SELECT 'events', count(*)::int FROM runstream_events e WHERE NOT EXISTS (SELECT 1 FROM runstream_runs r WHERE r.id = e.run_id) OR NOT (e.run_id = ANY($1::uuid[]))
        UNION ALL SELECT 'jobs', count(*)::int FROM runstream_jobs j WHERE NOT (j.run_id = ANY($1::uuid[]))
        UNION ALL SELECT 'outbox', count(*)::int FROM runstream_outbox o WHERE NOT (o.run_ids <@ $1::uuid[])`, [[...accepted]])
      const strayCount = strays.reduce((n, s) => n + s.n, 0)
      // Which runs, so that a failure says what wrote them.
      const strayRuns = strayCount === 0 ? [] : yield* query<{ id: string; task: string; queue: string; status: string; created_at: Date; input: string }>(db.url, `
        SELECT id, task, queue, status, created_at, left(input::text, 120) AS input FROM runstream_runs
        WHERE NOT (id = ANY($1::uuid[])) ORDER BY created_at LIMIT 5`, [[...accepted]])
      const check = yield* checkRuns(db.url)

      const { expect, failures } = makeChecks()
      const shrunk = (o: typeof outcome) => o.counterexample === null ? "" : `; shrunk: ${JSON.stringify(o.counterexample).slice(0, 300)}`
      expect(!outcome.failed, `every answer is a success or a JSON error (failed after ${outcome.numRuns} cases, seed ${seed}: ${violations.join(" | ")}${shrunk(outcome)})`)
      expect(!hostile.failed, `with hostile clients too (failed after ${hostile.numRuns} cases, seed ${hostileSeed}: ${violations.join(" | ")}${shrunk(hostile)})`)
      expect(server.alive() && healthAfter._tag === "Right" && healthAfter.right === 200 && readyAfter._tag === "Right" && readyAfter.right === 200, "the server is up and ready at the end")
      expect(longestSilence <= 30_000, `/healthz answers at least every 30 s under hostile clients (longest silence ${seconds(longestSilence)})`)
      expect(strayCount === 0, `no row written by a refused request (${strays.map((s) => `${s.n} ${s.what}`).join(", ")}; runs: ${
        strayRuns.map((r) => `${r.id} ${r.task} on ${r.queue}, ${r.status}, created ${r.created_at.toISOString()} (the scenario began ${new Date(hostileStart).toISOString()} with its hostile clients), input ${r.input}`).join(" | ")
      })`)
      // What the server logged for them (a database error's SQLSTATE says which).
      const serverLogged = serverErrors.size === 0 ? [] : server.tail(100_000).split("\n")
        .filter((line) => line.includes("level=ERROR")).slice(0, 3).map((line) => line.slice(0, 400))
      expect(serverErrors.size === 0, `bad input is refused with a 4xx, not a 5xx (${[...serverErrors].map(([k, e]) => `${e.n} × ${k}, e.g. ${e.example}`).join("; ")}; the server logged: ${serverLogged.join(" | ") || "no error"})`)
      expect(check.gaps === 0, `logs stay contiguous (${check.gaps})`)
      expect(rpc.alive, "the server survives the hostile RPC clients")
      expect(rpc.healthFailures === 0 && rpc.healthP99 < healthP99BoundMs, `/healthz answers every probe with a p99 under ${healthP99BoundMs} ms under hostile RPC clients (${rpc.healthP99.toFixed(0)} ms, worst by step: ${rpc.worstByStep}; the bare server's p99 ${rpc.controlP99.toFixed(0)} ms; ${rpc.healthFailures} failed)`)
      expect(rpc.peakMB < rpcPeakBoundMB, `server RSS under ${rpcPeakBoundMB} MB under hostile RPC clients (peak ${rpc.peakMB.toFixed(0)} MB)`)
      // A flood past the stream budget ends with too_many_streams (its calls are refused one by one, never 16 in flight).
      expect(rpc.floods.every((o) => o.what === "too_many_calls" || o.what === "too_many_streams" || closed(o)), `every flood of calls is ended: too_many_calls or too_many_streams, or the connection closed (${summarize(rpc.floods)})`)
      expect(rpc.held <= maxStreams && rpc.refusedStreams >= rpc.hoarders - maxStreams, `RPC streams stay within the stream budget of ${maxStreams} (${rpc.held} held, ${rpc.refusedStreams} refused with TooManyStreams of ${rpc.hoarders})`)
      expect(rpc.sseWhileFull === 503, `SSE is refused (503) while RPC streams hold the budget (${rpc.sseWhileFull})`)
      expect(rpc.hugeIds.every((o) => o.status === 400 || o.status === 413 || closed(o)), `huge request ids are refused (${summarize(rpc.hugeIds)})`)
      expect(rpc.bigStarts.every((o) => o.status === 413 || closed(o)), `15 MB starts are refused with 413 (${summarize(rpc.bigStarts)})`)
      expect(rpc.unknownKeys.every((o) => o.status === 400), `REST bodies of unknown keys are refused with 400 (${summarize(rpc.unknownKeys)})`)

      const statuses = [...byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${s === 0 ? "not sent" : s}: ${n}`).join(", ")
      return {
        id: 6,
        name: "Bad and hostile input",
        load: `${tried} fuzz cases (fast-check), ${slowCount} slowloris, ${neverReadCount} never-reading SSE clients`,
        faults: "random/huge/deep/unicode bodies, wrong types, invalid ids/cursors, slow and silent clients",
        lost: `${strayCount} stray rows`,
        duplicated: "n/a",
        recovery: `p99 /healthz ${seconds(percentile(health, 99))} under attack`,
        passed: failures.length === 0,
        durationMs: Date.now() - began,
        figures: [
          ["cases tried", `${tried}: ${phase1} alone (seed ${seed}), ${tried - phase1} with the hostile clients (seed ${hostileSeed}); answers by status: ${statuses}`],
          ["runs accepted", `${accepted.size - known.length}; rows not written by an accepted request: ${strays.map((s) => `${s.n} ${s.what}`).join(", ")}`],
          ["5xx answers", serverErrors.size === 0 ? "none" : [...serverErrors].map(([k, e]) => `${e.n} × ${k}, e.g. body ${e.example}`).join("; ")],
          ["slow clients", `${slowCount} slowloris (headers a line every 2 s, or a body a byte a second): ${slowOpen} still open after ${seconds(Date.now() - hostileStart)}; ${neverReadCount} SSE clients that never read a ${burstEvents.toLocaleString("en")}-event log`],
          ["/rpc", `${rpcTried} of the fuzz cases; then alone for ${seconds(rpc.durationMs)}: ${rpc.floods.length} endless floods of AllEvents calls (${summarize(rpc.floods)}), ${rpc.hoarders} stream holders on a budget of ${maxStreams} (${rpc.held} held, ${rpc.refusedStreams} refused with TooManyStreams, other answers: ${rpc.otherHolds}; SSE meanwhile ${rpc.sseWhileFull}), ids of 10^6 and 1.6·10^7 digits (${summarize(rpc.hugeIds)}), 16 concurrent starts of 15 MB and more (${summarize(rpc.bigStarts)}), ${rpc.slowBodies} bodies a byte a second, ${rpc.neverRead} never-reading Events callers; and 4 REST starts at once of ${(rpc.unknownKeysBytes / 1e6).toFixed(1)} MB of unknown keys (${summarize(rpc.unknownKeys)})`],
          ["server under the hostile RPC clients", `${rpc.alive ? "alive" : "DEAD"}; /healthz every 0.1 s (from a thread of its own, ${rpc.healthSamples} answers): p50 ${rpc.healthP50.toFixed(0)} ms, p99 ${rpc.healthP99.toFixed(0)} ms (bound ${healthP99BoundMs} ms), max ${rpc.healthMax.toFixed(0)} ms (worst by step: ${rpc.worstByStep}), ${rpc.healthFailures} failed; a bare node:http server in a process of its own, probed the same way meanwhile (the probe's floor on this machine): p50 ${rpc.controlP50.toFixed(0)} ms, p99 ${rpc.controlP99.toFixed(0)} ms (worst by step: ${rpc.controlWorstByStep}); RSS ${rpc.beforeMB.toFixed(0)} MB before, peak ${rpc.peakMB.toFixed(0)} MB (bound ${rpcPeakBoundMB} MB; by step: ${rpc.peakByStep}); server CPU ${rpc.cpuSeconds.toFixed(1)} s`],
          ["server under the hostile clients", `${server.alive() ? "alive" : "DEAD"}; /healthz every 0.5 s: p50 ${percentile(health, 50).toFixed(0)} ms, p99 ${percentile(health, 99).toFixed(0)} ms, ${healthFailures} failed or over 10 s, longest silence ${seconds(longestSilence)}; RSS ${baselineMB.toFixed(0)} MB before, peak ${peakMB.toFixed(0)} MB; the suite's own event-loop delay p99 ${(lag.percentile(99) / 1e6).toFixed(0)} ms, max ${(lag.max / 1e6).toFixed(0)} ms`]
        ],
        failures
      }
    }).pipe(asFault)
}

/**
 * The server closed the connection while the client was still writing, before
 * the client had read the answer (Node's client then reports the write's error
 * only): a refusal too, as the issue allows ("or the connection is closed").
 */
const closed = (outcome: { readonly status: number; readonly what: string }) =>
  outcome.status === 0 && /EPIPE|ECONNRESET/.test(outcome.what)

/** "413 payload_too_large × 16, 40-90 ms" for a list of outcomes. */
const summarize = (outcomes: ReadonlyArray<{ readonly status: number; readonly what: string; readonly ms: number }>) => {
  const groups = new Map<string, number>()
  for (const o of outcomes) groups.set(`${o.status} ${o.what}`, (groups.get(`${o.status} ${o.what}`) ?? 0) + 1)
  const ms = outcomes.map((o) => o.ms)
  return `${[...groups].map(([k, n]) => `${k} × ${n}`).join(", ")}; ${Math.min(...ms)}-${Math.max(...ms)} ms`
}

/** The slowest probe answered within each step's window, step by step. */
const worstOf = (
  windows: ReadonlyArray<{ readonly step: string; readonly from: number; readonly to: number }>,
  samples: ReadonlyArray<{ readonly at: number; readonly ms: number }>
) =>
  windows.map(({ from, step, to }) => {
    const inside = samples.filter((sample) => sample.at >= from && sample.at <= to).map((sample) => sample.ms)
    return `${step} ${inside.length === 0 ? "-" : Math.max(...inside).toFixed(0)} ms`
  }).join(", ")

/**
 * The hostile RPC clients, one kind after the other (so that a slow /healthz
 * names its cause), while /healthz is probed every 100 ms from a thread of
 * its own and the server's memory is sampled. Slow bodies and never-reading
 * callers stay connected throughout.
 */
export const rpcPhase = async (server: { readonly baseUrl: string; readonly rssMB: () => number; readonly cpuSeconds: () => number; readonly alive: () => boolean }, port: number, largeRunId: string, quick: boolean) => {
  const began = Date.now()
  const beforeMB = server.rssMB()
  const cpuBefore = server.cpuSeconds()
  let peakMB = beforeMB
  const rssSamples: Array<{ readonly at: number; readonly mb: number }> = []
  const memory = setInterval(() => {
    const mb = server.rssMB()
    peakMB = Math.max(peakMB, mb)
    rssSamples.push({ at: Date.now(), mb })
  }, 100)
  const probe = healthProbe(`${server.baseUrl}/healthz`, 100)
  const control = await controlProbe(100)
  await probe.ready
  const windows: Array<{ readonly step: string; readonly from: number; readonly to: number }> = []
  const step = async <A>(name: string, run: () => Promise<A>) => {
    const from = Date.now()
    const result = await run()
    windows.push({ step: name, from, to: Date.now() })
    return result
  }

  const slow = await step("slow bodies", async () => Array.from({ length: quick ? 20 : 100 }, () => slowRpcBody(port)))

  const floods = await step("floods", () => {
    let id = 0
    const allEvents = () => `{"_tag":"Request","id":"${++id}","tag":"AllEvents","payload":{},"headers":[]}\n`
    return Promise.all(Array.from({ length: quick ? 10 : 40 }, () => endless(port, allEvents(), allEvents)))
  })

  const silent = await step("never-reading callers", async () => {
    const sockets = Array.from({ length: quick ? 10 : 50 }, () => neverReadsRpc(port, largeRunId))
    // They are sent what fits in the server's answer buffer and the socket's, then nothing more.
    await new Promise((resolve) => setTimeout(resolve, 2000))
    return sockets
  })

  const hoarders = quick ? maxStreams + 100 : maxStreams + 700
  const hold = await step("stream holders", async () => {
    const holds = Array.from({ length: hoarders }, (_, i) => holdCall(port, `{"_tag":"Request","id":"${i}","tag":"AllEvents","payload":{},"headers":[]}\n`))
    const firsts = await Promise.all(holds.map((h) => h.first))
    const sse = await fetch(`${server.baseUrl}/v1/events`, { headers: { accept: "text/event-stream" }, signal: AbortSignal.timeout(5_000) }).then(
      async (r) => {
        await r.body?.cancel()
        return r.status
      },
      () => 0
    )
    for (const h of holds) h.close()
    const others = new Map<string, number>()
    for (const f of firsts) {
      if (f.status === 200) continue
      others.set(`${f.status} ${f.text.slice(0, 40)}`, (others.get(`${f.status} ${f.text.slice(0, 40)}`) ?? 0) + 1)
    }
    return {
      held: firsts.filter((f) => f.status === 200 && !f.text.includes("TooManyStreams")).length,
      refused: firsts.filter((f) => f.text.includes("TooManyStreams")).length,
      others: [...others].map(([k, n]) => `${n} × ${k}`).join(", ") || "none",
      sse
    }
  })

  const hugeIds = await step("huge ids", async () => {
    const outcomes = []
    for (const digits of [1_000_000, 16_000_000]) {
      outcomes.push(await endless(port, `{"_tag":"Request","id":"${"7".repeat(digits)}","tag":"List","payload":{},"headers":[]}\n`, () => "\n"))
    }
    return outcomes
  })

  const bigStarts = await step("16 large starts", () => {
    const start = `{"_tag":"Request","id":"1","tag":"Start","headers":[],"payload":{"task":"demo.echo","input":"`
    const chunk = "x".repeat(64 * 1024)
    // The input goes on past 15 MB: the server must answer by the first MiB.
    return Promise.all(Array.from({ length: 16 }, () => endless(port, start, () => chunk)))
  })

  // A REST body of 95,000 unknown keys (1 MB), four at once: refused at the first key.
  const unknownKeysBody = `{"task":"demo.echo",${Array.from({ length: 95_000 }, (_, i) => `"k${i}":1`).join(",")}}`
  const unknownKeys = await step("REST unknown keys", () =>
    Promise.all(Array.from({ length: 4 }, async () => {
      const at = Date.now()
      // A connection reset is an outcome to report (the check wants 400s), not a crash of the suite.
      const r = await fetch(`${server.baseUrl}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: unknownKeysBody }).catch((error: Error) => error)
      if (r instanceof Error) return { status: 0, what: `connection error ${String((r.cause as Error | undefined)?.message ?? r.message)}`, ms: Date.now() - at }
      const body = await r.json().catch(() => null) as any
      return { status: r.status, what: String(body?.error?.code), ms: Date.now() - at }
    }))
  )

  const { failures: healthFailures, samples } = await probe.stop()
  const controlSamples = (await control.stop()).samples
  const floor = controlSamples.map((sample) => sample.ms)
  clearInterval(memory)
  for (const s of slow) s.stop()
  for (const s of silent) s.destroy()
  const latencies = samples.map((sample) => sample.ms)
  const worstByStep = worstOf(windows, samples)
  const controlWorstByStep = worstOf(windows, controlSamples)
  const peakByStep = windows.map(({ from, step, to }) => {
    const inside = rssSamples.filter((sample) => sample.at >= from && sample.at <= to).map((sample) => sample.mb)
    return `${step} ${inside.length === 0 ? "-" : Math.max(...inside).toFixed(0)} MB`
  }).join(", ")
  return {
    durationMs: Date.now() - began,
    windows: windows.map((w) => `${w.step} ${((w.from - began) / 1000).toFixed(1)}-${((w.to - began) / 1000).toFixed(1)} s`),
    alive: server.alive(),
    beforeMB,
    peakMB,
    cpuSeconds: server.cpuSeconds() - cpuBefore,
    healthP50: percentile(latencies, 50),
    healthP99: percentile(latencies, 99),
    healthMax: latencies.length === 0 ? Infinity : Math.max(...latencies),
    healthSamples: latencies.length,
    // The probes over 25 ms, with their times (epoch ms), to set beside a trace of the server.
    slowProbes: samples.filter((sample) => sample.ms > 25).map((sample) => ({ at: sample.at, ms: Math.round(sample.ms) })),
    healthFailures,
    controlP50: percentile(floor, 50),
    controlP99: percentile(floor, 99),
    controlWorstByStep,
    worstByStep,
    peakByStep,
    floods,
    hoarders,
    held: hold.held,
    refusedStreams: hold.refused,
    otherHolds: hold.others,
    sseWhileFull: hold.sse,
    hugeIds,
    bigStarts,
    unknownKeys,
    unknownKeysBytes: unknownKeysBody.length,
    slowBodies: slow.length,
    neverRead: silent.length
  }
}
