/**
 * What the scenarios of the fault suite share: fresh databases, child
 * processes (killed in finalizers), waiting on conditions with a deadline,
 * the checks of the guarantees in SQL, and small statistics.
 */
import { fork } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, openSync, readFileSync } from "node:fs"
import { createServer } from "node:net"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Data, Duration, Effect, Option, Schedule } from "effect"
import pg from "pg"

export class FaultError extends Data.TaggedError("FaultError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export const here = dirname(fileURLToPath(import.meta.url))

// ---------------------------------------------------------------------------
// Databases

/** The URL of another database on the same server. */
export const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/** One query on its own short-lived connection. */
export const query = <Row = Record<string, any>>(url: string, text: string, values: Array<unknown> = []) =>
  Effect.tryPromise({
    try: async () => {
      const client = new pg.Client({ connectionString: url, application_name: "faults-check", connectionTimeoutMillis: 5000 })
      client.on("error", () => {})
      await client.connect()
      try {
        return (await client.query(text, values)).rows as Array<Row>
      } finally {
        await client.end().catch(() => undefined)
      }
    },
    catch: (cause) => new FaultError({ message: `${text.trim().slice(0, 200)}: ${String(cause)}`, cause })
  })

/**
 * A fresh database `runstream_faults_<random>` on the server, dropped (with its
 * connections) when the scope closes; the processes' layers migrate it.
 */
export const freshDatabase = (serverUrl: string) =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const name = `runstream_faults_${randomBytes(5).toString("hex")}`
      return Effect.as(query(serverUrl, `CREATE DATABASE ${name}`), { name, url: withDatabase(serverUrl, name) })
    }),
    ({ name }) =>
      query(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).pipe(
        Effect.retry(Schedule.spaced("500 millis").pipe(Schedule.upTo("10 seconds"))),
        Effect.catchAll((error) => Effect.logWarning(`could not drop ${name}`, error))
      )
  )

/**
 * Polls `check` (a query, say) until it returns `Some`, at most until
 * `timeout`. Errors of `check` count as "not yet" (the database may be away).
 */
export const waitFor = <A, E>(
  what: string,
  check: Effect.Effect<Option.Option<A>, E>,
  options: { readonly timeout: Duration.DurationInput; readonly interval?: Duration.DurationInput }
) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(options.timeout)
    let last: unknown = undefined
    while (Date.now() < deadline) {
      const result = yield* Effect.either(check)
      if (result._tag === "Right") {
        if (Option.isSome(result.right)) return result.right.value
      } else {
        last = result.left
      }
      yield* Effect.sleep(options.interval ?? "200 millis")
    }
    return yield* new FaultError({ message: `timed out after ${Duration.format(Duration.decode(options.timeout))} waiting for ${what}${last === undefined ? "" : ` (last error: ${String(last)})`}` })
  })

// ---------------------------------------------------------------------------
// The guarantees, checked in SQL

export interface RunCheck {
  /** Runs in the database. */
  readonly runs: number
  /** Accepted runs that are not succeeded or failed (or are missing from the database). */
  readonly lost: number
  readonly succeeded: number
  readonly failed: number
  /** Runs whose log is not 1..last_seq: a gap, a duplicate, or a last_seq that disagrees. */
  readonly gaps: number
  /** Runs with more or fewer than one terminal event, or one that is not the last. */
  readonly badTerminal: number
  /** Runs with more than one terminal event (counted in `badTerminal` too). */
  readonly multiTerminal: number
  /** Runs whose status disagrees with their terminal event or whose `run.succeeded` is not of the run's attempt. */
  readonly statusMismatch: number
  /** Runs that needed more than one attempt. */
  readonly retried: number
  /** A few offending run ids, for the report. */
  readonly examples: ReadonlyArray<string>
}

/**
 * Checks every run of the database: accepted runs (`accepted` ids, when
 * given, must all be present) are finished, each log is 1..n, one terminal
 * event, last, matching the status.
 */
export const checkRuns = (url: string, accepted?: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const rows = yield* query<{
      id: string
      status: string
      last_seq: number
      attempt: number
      n: number
      distinct_seqs: number
      min_seq: number | null
      max_seq: number | null
      terminals: number
      last_type: string | null
      succeeded_attempt: number | null
    }>(url, `
      SELECT r.id, r.status, r.last_seq, r.attempt,
        count(e.seq)::int AS n, count(DISTINCT e.seq)::int AS distinct_seqs,
        min(e.seq) AS min_seq, max(e.seq) AS max_seq,
        count(*) FILTER (WHERE e.type IN ('run.succeeded', 'run.failed', 'run.cancelled'))::int AS terminals,
        (SELECT type FROM runstream_events l WHERE l.run_id = r.id ORDER BY seq DESC LIMIT 1) AS last_type,
        max((e.data->>'attempt')::int) FILTER (WHERE e.type = 'run.succeeded') AS succeeded_attempt
      FROM runstream_runs r LEFT JOIN runstream_events e ON e.run_id = r.id
      GROUP BY r.id`)
    const examples = new Set<string>()
    const note = (id: string) => {
      if (examples.size < 5) examples.add(id)
    }
    const present = new Set(rows.map((row) => row.id))
    let lost = accepted === undefined ? 0 : accepted.filter((id) => !present.has(id)).length
    let gaps = 0
    let badTerminal = 0
    let multiTerminal = 0
    let statusMismatch = 0
    let retried = 0
    let succeeded = 0
    let failed = 0
    for (const row of rows) {
      if (row.status === "succeeded") succeeded++
      else if (row.status === "failed") failed++
      else {
        lost++
        note(row.id)
      }
      if (row.attempt > 1) retried++
      if (row.n !== row.distinct_seqs || row.min_seq !== 1 || row.max_seq !== row.n || row.last_seq !== row.n) {
        gaps++
        note(row.id)
      }
      if (row.terminals > 1) multiTerminal++
      if (row.terminals > 1 || (row.terminals === 1 && !["run.succeeded", "run.failed", "run.cancelled"].includes(row.last_type ?? ""))) {
        badTerminal++
        note(row.id)
      }
      const finished = row.status === "succeeded" || row.status === "failed" || row.status === "cancelled"
      if (
        (finished && row.last_type !== `run.${row.status}`) ||
        (row.status === "succeeded" && row.succeeded_attempt !== row.attempt)
      ) {
        statusMismatch++
        note(row.id)
      }
    }
    return { runs: rows.length, lost, succeeded, failed, gaps, badTerminal, multiTerminal, statusMismatch, retried, examples: [...examples] } satisfies RunCheck
  })

/** How many runs are not finished yet. */
export const unfinished = (url: string) =>
  Effect.map(
    query<{ n: number }>(url, "SELECT count(*)::int AS n FROM runstream_runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')"),
    (rows) => rows[0]!.n
  )

/** Waits until every run of the database is finished. */
export const waitAllFinished = (url: string, timeout: Duration.DurationInput) =>
  waitFor("every run to finish", Effect.map(unfinished(url), (n) => n === 0 ? Option.some(n) : Option.none()), {
    timeout,
    interval: "250 millis"
  })

// ---------------------------------------------------------------------------
// Child processes

export interface ChildMessage {
  readonly type: string
  readonly [key: string]: unknown
}

export interface Child {
  readonly name: string
  readonly pid: number
  /** The next message of `type` (the child's exit fails it). */
  readonly next: (type: string, timeout?: Duration.DurationInput) => Effect.Effect<ChildMessage, FaultError>
  readonly send: (message: ChildMessage) => Effect.Effect<void>
  /** Sends `signal` and waits for the exit. */
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  readonly alive: () => boolean
  /** Resident memory of the process now, from /proc (MB). */
  readonly rssMB: () => number
  /** CPU time the process has used so far, from /proc (seconds). */
  readonly cpuSeconds: () => number
  /** The last lines of its output. */
  readonly tail: (lines?: number) => string
}

export interface SpawnOptions {
  readonly name: string
  readonly script: string
  readonly env: Record<string, string>
  /** Where its stdout and stderr go. */
  readonly logFile: string
  /** Extra `node` flags (e.g. `--cpu-prof`), after this process's own (the TypeScript loader). */
  readonly execArgv?: ReadonlyArray<string> | undefined
}

/**
 * Forks a program of the suite (through the same TypeScript loader as this
 * process). It is stopped when the scope closes: SIGTERM, SIGKILL after 5 s.
 */
export const spawn = (options: SpawnOptions) =>
  Effect.acquireRelease(
    Effect.sync((): Child & { readonly process: ReturnType<typeof fork> } => {
      const fd = openSync(options.logFile, "a")
      const child = fork(options.script, [], {
        env: { ...process.env, ...options.env },
        execArgv: [...process.execArgv, ...(options.execArgv ?? [])],
        stdio: ["ignore", fd, fd, "ipc"]
      })
      closeSync(fd)
      const messages: Array<ChildMessage> = []
      const waiters = new Set<() => void>()
      let exited = false
      child.on("message", (message) => {
        messages.push(message as ChildMessage)
        for (const waiter of [...waiters]) waiter()
      })
      child.on("exit", () => {
        exited = true
        for (const waiter of [...waiters]) waiter()
      })
      child.on("error", () => {})
      const tail = (lines = 30) => {
        try {
          return readFileSync(options.logFile, "utf8").split("\n").slice(-lines).join("\n")
        } catch {
          return ""
        }
      }
      const next = (type: string, timeout: Duration.DurationInput = "60 seconds") =>
        Effect.async<ChildMessage, FaultError>((resume) => {
          const check = () => {
            const index = messages.findIndex((m) => m.type === type)
            if (index >= 0) {
              waiters.delete(check)
              resume(Effect.succeed(messages.splice(index, 1)[0]!))
            } else if (exited) {
              waiters.delete(check)
              resume(Effect.fail(new FaultError({ message: `${options.name} exited before '${type}':\n${tail()}` })))
            }
          }
          waiters.add(check)
          check()
          return Effect.sync(() => waiters.delete(check))
        }).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new FaultError({ message: `${options.name} sent no '${type}' in ${Duration.format(Duration.decode(timeout))}:\n${tail()}` })
          })
        )
      const kill = (signal: NodeJS.Signals) =>
        Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill(signal)
        })
      const rssMB = () => {
        try {
          const status = readFileSync(`/proc/${child.pid}/status`, "utf8")
          const match = /VmRSS:\s+(\d+) kB/.exec(status)
          return match === null ? 0 : Number(match[1]) / 1024
        } catch {
          return 0
        }
      }
      const cpuSeconds = () => {
        try {
          const fields = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1]!.split(" ")
          return (Number(fields[11]) + Number(fields[12])) / 100
        } catch {
          return 0
        }
      }
      return {
        name: options.name,
        pid: child.pid ?? -1,
        cpuSeconds,
        process: child,
        next,
        send: (message) => Effect.sync(() => void child.send(message as never)),
        kill,
        alive: () => child.exitCode === null && child.signalCode === null,
        rssMB,
        tail
      }
    }),
    // The SIGKILL timer lives in the callback: a finalizer is uninterruptible,
    // so an Effect timeout could not cut the wait short.
    ({ process: child }) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
        child.once("exit", () => {
          clearTimeout(timer)
          resume(Effect.void)
        })
        child.kill("SIGTERM")
      })
  )

/** The suite's process program (see node.ts). */
export const nodeScript = join(here, "node.ts")

/** A Runstream process of the suite on `url`, started and ready. */
export const startNode = (options: {
  readonly name: string
  readonly role: "worker" | "server" | "relay"
  readonly url: string
  readonly logDir: string
  readonly env?: Record<string, string>
  readonly readyTimeout?: Duration.DurationInput
}) =>
  Effect.gen(function*() {
    const child = yield* spawn({
      name: options.name,
      script: nodeScript,
      logFile: join(options.logDir, `${options.name}.log`),
      env: { DATABASE_URL: options.url, FAULTS_ROLE: options.role, ...options.env }
    })
    const ready = yield* child.next("ready", options.readyTimeout ?? "60 seconds")
    return {
      ...child,
      workerId: ready["workerId"] as string | undefined,
      url: ready["url"] as string | undefined
    }
  })

/** Counts the lines of a process's log that match each pattern. */
export const countLines = (path: string, patterns: Record<string, RegExp>): Record<string, number> => {
  let text = ""
  try {
    text = readFileSync(path, "utf8")
  } catch {
    // No log: zero of each.
  }
  const lines = text.split("\n")
  return Object.fromEntries(Object.entries(patterns).map(([name, re]) => [name, lines.filter((l) => re.test(l)).length]))
}

// ---------------------------------------------------------------------------
// Statistics and formatting

export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!
}

export const seconds = (ms: number) => Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : "n/a"

export const shuffle = <A>(items: ReadonlyArray<A>): Array<A> => {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

export const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))

// ---------------------------------------------------------------------------
// The real entry points (src/main/server.ts and src/main/worker.ts)

const mainDir = join(here, "..", "..", "src", "main")

/** A free loopback port. */
export const freePort = Effect.async<number, FaultError>((resume) => {
  const server = createServer()
  server.once("error", (cause) => resume(Effect.fail(new FaultError({ message: "no free port", cause }))))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A GET with a deadline; the status, or the error as a failure. */
export const getStatus = (url: string, timeoutMs = 2000) =>
  Effect.tryPromise({
    try: (signal) => fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) }).then(async (r) => {
      await r.arrayBuffer()
      return r.status
    }),
    catch: (cause) => new FaultError({ message: `GET ${url}: ${String(cause)}`, cause })
  })

export interface EntryProcess extends Child {
  /** The server's base URL, or the worker's health URL. */
  readonly baseUrl: string
  /** The worker's id (`locked_by` of its leases), from its "workers ready" log line. */
  readonly workerId: string | undefined
}

/**
 * `npm run server` / `npm run worker` as a child process on `url`: the
 * production entry point, untouched (demo tasks, config from the environment).
 * Ready when its `/readyz` answers 200 (a worker serves it on
 * `RUNSTREAM_HEALTH_PORT`); a worker's id is read from its log.
 */
export const startEntry = (options: {
  readonly name: string
  readonly entry: "server" | "worker"
  readonly url: string
  readonly logDir: string
  readonly env?: Record<string, string>
  readonly readyTimeout?: Duration.DurationInput
  readonly execArgv?: ReadonlyArray<string> | undefined
}) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const child = yield* spawn({
      name: options.name,
      script: join(mainDir, `${options.entry}.ts`),
      execArgv: options.execArgv,
      logFile: join(options.logDir, `${options.name}.log`),
      env: {
        DATABASE_URL: options.url,
        HOST: "127.0.0.1",
        ...(options.entry === "server" ? { PORT: String(port) } : { RUNSTREAM_HEALTH_PORT: String(port) }),
        ...options.env
      }
    })
    const baseUrl = `http://127.0.0.1:${port}`
    const timeout = options.readyTimeout ?? "120 seconds"
    yield* waitFor(
      `${options.name} to be ready`,
      Effect.suspend(() =>
        child.alive()
          ? Effect.map(getStatus(`${baseUrl}/readyz`), (status) => status === 200 ? Option.some(true) : Option.none())
          : Effect.fail(new FaultError({ message: `${options.name} exited:\n${child.tail()}` }))
      ).pipe(Effect.catchAll((error) => child.alive() ? Effect.succeed(Option.none()) : Effect.fail(error))),
      { timeout, interval: "100 millis" }
    )
    let workerId: string | undefined
    if (options.entry === "worker") {
      workerId = yield* waitFor(`${options.name}'s worker id`, Effect.sync(() => {
        const match = /workers ready: (\S+?),/.exec(child.tail(200))
        return match === null ? Option.none() : Option.some(match[1]!)
      }), { timeout: "10 seconds", interval: "100 millis" })
    }
    return { ...child, baseUrl, workerId } satisfies EntryProcess
  })

/** A JSON request; the status and the body parsed (or the text when it is not JSON). */
export const requestJson = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 10_000) =>
  Effect.tryPromise({
    try: async (signal) => {
      const init: RequestInit = {
        method,
        headers: { "content-type": "application/json", ...headers },
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
      }
      if (body !== undefined) init.body = JSON.stringify(body)
      const response = await fetch(url, init)
      const text = await response.text()
      let parsed: unknown = text
      try {
        parsed = text === "" ? null : JSON.parse(text)
      } catch {
        // Not JSON: left as text for the caller to judge.
      }
      return { status: response.status, body: parsed as any, contentType: response.headers.get("content-type") }
    },
    catch: (cause) => new FaultError({ message: `${method} ${url}: ${String(cause)}`, cause })
  })

/**
 * For each kill of a worker, how long after it the last of the attempts it
 * held ended by its lease's expiry (`LeaseExpired`); and the held attempts
 * never so ended.
 */
export const reclaimsAfterKills = (
  url: string,
  killed: ReadonlyArray<{ readonly at: number; readonly held: ReadonlyArray<{ readonly run_id: string; readonly attempt: number }> }>
) =>
  Effect.gen(function*() {
    const reclaims = new Map(
      (yield* query<{ run_id: string; attempt: number; at: Date }>(url, `
        SELECT run_id, (data->>'attempt')::int AS attempt, at FROM runstream_events
        WHERE type IN ('run.retrying', 'run.failed') AND data->'error'->>'tag' = 'LeaseExpired'`)).map((row) => [`${row.run_id}/${row.attempt}`, row.at.getTime()])
    )
    const perKill: Array<number> = []
    let heldTotal = 0
    let notReclaimed = 0
    for (const kill of killed) {
      heldTotal += kill.held.length
      let worst = -1
      for (const held of kill.held) {
        const at = reclaims.get(`${held.run_id}/${held.attempt}`)
        if (at === undefined) notReclaimed++
        else worst = Math.max(worst, at - kill.at)
      }
      if (worst >= 0) perKill.push(worst)
    }
    return { heldTotal, notReclaimed, perKill }
  })
