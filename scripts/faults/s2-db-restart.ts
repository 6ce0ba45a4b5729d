/**
 * Scenario 2, database restart. One server and two workers (production entry
 * points) on the suite's own Postgres; runs of `demo.count` (20 ticks) are
 * started over HTTP (half before, half while Postgres goes away and comes
 * back, each POST retried with its idempotency key until accepted) and a
 * sample of them is followed over SSE by clients that resume with
 * `Last-Event-ID`, as a browser does: their connections are dropped around
 * each restart (half as Postgres goes, half as it is back; the server's own
 * streams would outlive it). Postgres is restarted (`fast`: a clean
 * shutdown; the full version also restarts it `immediate`ly, a crash with
 * recovery) when a third of the runs are done.
 *
 * Nothing is restarted but Postgres: every process must reconnect on its own.
 * Figures: runs lost, stream clients that missed or duplicated an event, and
 * how long after Postgres was back the processes were ready and runs finished.
 */
import { Effect, Fiber, Option } from "effect"
import {
  checkRuns,
  type EntryProcess,
  FaultError,
  freshDatabase,
  getStatus,
  query,
  requestJson,
  seconds,
  startEntry,
  waitAllFinished,
  waitFor
} from "./common.ts"
import { asFault, type Scenario } from "./harness.ts"
import { makeChecks } from "./report.ts"
import { follow, type FollowResult, judge } from "./sse.ts"

/** POSTs a run until it is accepted (retrying through the outage with the same idempotency key). */
const startUntilAccepted = (baseUrl: string, body: Record<string, unknown>, deadline: number, failures: { count: number }) =>
  Effect.gen(function*() {
    while (Date.now() < deadline) {
      const answer = yield* Effect.either(requestJson("POST", `${baseUrl}/v1/runs`, body, {}, 5000))
      if (answer._tag === "Right" && (answer.right.status === 201 || answer.right.status === 200)) return answer.right.body.run.id as string
      failures.count++
      yield* Effect.sleep("250 millis")
    }
    return yield* new FaultError({ message: `run ${String(body["idempotencyKey"])} was never accepted` })
  })

const finishedCount = (url: string) =>
  Effect.map(query<{ n: number }>(url, "SELECT count(*)::int AS n FROM runstream_runs WHERE status IN ('succeeded', 'failed')"), (rows) => rows[0]!.n)

export const scenario: Scenario = {
  id: 2,
  name: "Database restart",
  run: (ctx) =>
    Effect.gen(function*() {
      const began = Date.now()
      const postgres = ctx.postgres
      if (postgres === undefined) return yield* new FaultError({ message: "scenario 2 needs the suite's own Postgres" })
      const runCount = ctx.quick ? 200 : 1000
      const clientCount = ctx.quick ? 40 : 100
      const restarts: ReadonlyArray<"fast" | "immediate"> = ctx.quick ? ["fast"] : ["fast", "immediate"]
      /** Over how long the second half of the runs is started. */
      const spreadMs = ctx.quick ? 30_000 : 120_000
      const db = yield* freshDatabase(postgres.url)
      const workerEnv = { RUNSTREAM_LEASE: "5 seconds", RUNSTREAM_WORKER_CONCURRENCY: "10" }
      const processes: ReadonlyArray<EntryProcess> = yield* Effect.all([
        startEntry({ name: "s2-server", entry: "server", url: db.url, logDir: ctx.logDir }),
        startEntry({ name: "s2-worker-0", entry: "worker", url: db.url, logDir: ctx.logDir, env: workerEnv }),
        startEntry({ name: "s2-worker-1", entry: "worker", url: db.url, logDir: ctx.logDir, env: workerEnv })
      ], { concurrency: "unbounded" })
      const server = processes[0]!
      const deadline = Date.now() + (ctx.quick ? 150_000 : 600_000)
      const postFailures = { count: 0 }
      const body = (i: number) => ({ task: "demo.count", input: { to: 20, delayMs: 100 }, maxAttempts: 20, idempotencyKey: `s2-${i}` })

      // Every `step`-th run is followed by an SSE client from the moment it is
      // accepted, so that clients are live across each restart.
      const step = Math.max(1, Math.floor(runCount / clientCount))
      const clients: Array<{ readonly runId: string; readonly fiber: Fiber.RuntimeFiber<FollowResult> }> = []
      // A server's streams outlive a database restart, so the clients' own
      // connections are dropped around it (as a proxy or a network change
      // would): they resume with Last-Event-ID while Postgres is away or just back.
      const droppers: Array<() => boolean> = []
      const start = (i: number) =>
        Effect.gen(function*() {
          const runId = yield* startUntilAccepted(server.baseUrl, body(i), deadline, postFailures)
          if (i % step === 0) {
            const fiber = yield* Effect.forkScoped(Effect.promise(() => follow({ baseUrl: server.baseUrl, runId, deadline, onStart: (drop) => droppers.push(drop) })))
            clients.push({ runId, fiber })
          }
          return runId
        })
      const dropHalf = (parity: 0 | 1) => droppers.filter((drop, i) => i % 2 === parity && drop()).length

      // The first half at once, the second half spread out, across the restarts.
      const half = Math.floor(runCount / 2)
      const ids: Array<string> = yield* Effect.forEach(Array.from({ length: half }, (_, i) => i), start, { concurrency: 8 })
      const secondHalf = yield* Effect.forEach(
        Array.from({ length: runCount - half }, (_, i) => half + i),
        (i) => Effect.zipRight(Effect.sleep(Math.floor(((i - half) * spreadMs) / (runCount - half))), start(i)),
        { concurrency: "unbounded" }
      ).pipe(Effect.forkScoped)

      const outages: Array<{ mode: string; downMs: number; ready: ReadonlyArray<number>; firstFinish: number; dropped: number }> = []
      for (const [n, mode] of restarts.entries()) {
        const threshold = Math.floor((runCount * (n + 1)) / (restarts.length + 2))
        yield* waitFor(`${threshold} runs finished`, Effect.map(finishedCount(db.url), (done) => done >= threshold ? Option.some(done) : Option.none()), {
          timeout: "300 seconds"
        })
        yield* Effect.logInfo(`restarting Postgres (${mode})`)
        // Half the clients lose their connection as Postgres goes, the other half as it is back.
        const droppedBefore = dropHalf(0)
        const { downMs } = yield* postgres.restart(mode)
        const upAt = Date.now()
        const dropped = droppedBefore + dropHalf(1)
        // Each process reports ready again on its own; a run finishes after the restart.
        const ready = yield* Effect.forEach(processes, (p) =>
          waitFor(`${p.name} ready after the restart`, Effect.map(Effect.either(getStatus(`${p.baseUrl}/readyz`)), (s) => s._tag === "Right" && s.right === 200 ? Option.some(Date.now() - upAt) : Option.none()), {
            timeout: "60 seconds",
            interval: "100 millis"
          }), { concurrency: "unbounded" })
        const firstFinish = yield* waitFor("a run to finish after the restart", Effect.map(
          query<{ n: number }>(db.url, "SELECT count(*)::int AS n FROM runstream_runs WHERE finished_at > $1", [new Date(upAt)]),
          (rows) => rows[0]!.n > 0 ? Option.some(Date.now() - upAt) : Option.none()
        ), { timeout: "60 seconds", interval: "100 millis" })
        outages.push({ mode, downMs, ready, firstFinish, dropped })
      }

      ids.push(...(yield* Fiber.join(secondHalf)))
      yield* waitAllFinished(db.url, ctx.quick ? "150 seconds" : "600 seconds")
      const check = yield* checkRuns(db.url, ids)
      const lastSeqs = new Map((yield* query<{ id: string; last_seq: number }>(db.url, "SELECT id, last_seq FROM runstream_runs")).map((r) => [r.id, r.last_seq]))
      let clientsWrong = 0
      let duplicates = 0
      let missing = 0
      let resumed = 0
      let reconnects = 0
      const answers: Record<string, number> = {}
      for (const { fiber, runId } of clients) {
        const result = yield* Fiber.join(fiber)
        const verdict = judge(result.seqs, lastSeqs.get(runId) ?? 0)
        duplicates += verdict.duplicates
        missing += verdict.missing
        if (verdict.duplicates + verdict.missing + verdict.outOfOrder + verdict.extra > 0 || result.ended === "deadline") clientsWrong++
        if (result.reconnects > 0) resumed++
        reconnects += result.reconnects
        for (const [kind, n] of Object.entries(result.errors)) answers[kind] = (answers[kind] ?? 0) + n
      }
      const alive = processes.filter((p) => p.alive()).length
      const readyAtEnd = yield* Effect.forEach(processes, (p) => Effect.either(getStatus(`${p.baseUrl}/readyz`)))

      const { expect, failures } = makeChecks()
      expect(check.lost === 0, `no run lost (${check.lost}: ${check.examples.join(", ")})`)
      expect(check.gaps === 0 && check.badTerminal === 0 && check.statusMismatch === 0, `contiguous logs, one terminal event (${check.gaps} gaps, ${check.badTerminal} bad terminal)`)
      expect(clientsWrong === 0, `every stream client ends with the whole log, once, in order (${clientsWrong} did not: ${duplicates} duplicates, ${missing} missing)`)
      const droppedInAll = outages.reduce((n, o) => n + o.dropped, 0)
      expect(droppedInAll > 0 && resumed >= Math.min(...outages.map((o) => o.dropped)), `stream clients resumed across each restart (${droppedInAll} connections dropped, ${resumed} clients resumed)`)
      expect(alive === processes.length && readyAtEnd.every((r) => r._tag === "Right" && r.right === 200), "every process is up and ready at the end, with no restart of its own")

      const worstReady = Math.max(...outages.flatMap((o) => o.ready))
      return {
        id: 2,
        name: "Database restart",
        load: `${runCount} runs × 23 events, ${clientCount} SSE clients, 1 server, 2 workers`,
        faults: restarts.map((m) => `Postgres restart (${m})`).join(", ") + " mid-run",
        lost: String(check.lost),
        duplicated: `${duplicates} (SSE), ${check.gaps} gaps`,
        recovery: `${seconds(worstReady)} to ready after Postgres is back`,
        passed: failures.length === 0,
        durationMs: Date.now() - began,
        figures: [
          ["runs", `${ids.length} accepted: ${check.succeeded} succeeded, ${check.failed} failed, ${check.lost} lost; ${check.retried} needed more than one attempt; ${postFailures.count} POSTs refused or failed during the outage and retried`],
          ["logs", `${check.gaps} runs with a gap or duplicate seq, ${check.multiTerminal} with more than one terminal event`],
          ["stream clients", `${clients.length}: ${clientsWrong} missed, duplicated or did not finish (${duplicates} duplicates, ${missing} missing); ${resumed} resumed with Last-Event-ID, ${reconnects} reconnects in all; failed answers while resuming: ${Object.entries(answers).map(([k, n]) => `${n} × ${k}`).join(", ") || "none"}`],
          ...outages.map((o) => [
            `restart (${o.mode})`,
            `${o.dropped} live stream connections dropped (half as Postgres went, half as it came back); Postgres down ${seconds(o.downMs)}; ready again after: ${processes.map((p, i) => `${p.name} ${seconds(o.ready[i]!)}`).join(", ")}; first run finished ${seconds(o.firstFinish)} after`
          ]),
          ["processes at the end", `${alive}/${processes.length} alive, ${readyAtEnd.filter((r) => r._tag === "Right" && r.right === 200).length} ready`]
        ],
        failures
      }
    }).pipe(asFault)
}
