/**
 * Scenario 4, network faults to the database. One server and two workers
 * (production entry points, lease 3 s, prefetch 10, runs kept waiting for
 * them throughout); worker A reaches Postgres through a
 * TCP proxy in the suite, worker B and the server directly. While runs flow,
 * the proxy stalls A's link (shorter than the lease, or longer: A's leases
 * expire and B reclaims its runs while A still runs them), cuts every
 * connection, or cuts and holds new connections for 2 s.
 *
 * Claims, heartbeats and completions of A fail and recover on their own; no
 * run is completed twice (a late completion of a reclaimed attempt is
 * refused), none is lost, every log stays 1..n.
 */
import { join } from "node:path"
import { Effect, Option } from "effect"
import { checkRuns, countLines, freshDatabase, percentile, query, randomInt, seconds, shuffle, startEntry, waitAllFinished, waitFor } from "./common.ts"
import { asFault, type Scenario } from "./harness.ts"
import * as Proxy from "./proxy.ts"
import { makeChecks } from "./report.ts"
import { startRunsOverHttp } from "./s1-worker-kill.ts"

const leaseMs = 3000

type Fault = "stall < lease" | "stall > lease" | "cut" | "cut, then stall new connections"
const faultKinds: ReadonlyArray<Fault> = ["stall < lease", "stall > lease", "cut", "cut, then stall new connections"]

export const scenario: Scenario = {
  id: 4,
  name: "Network faults to the database",
  run: (ctx) =>
    Effect.gen(function*() {
      const began = Date.now()
      // The quick version starts fewer up front: more come while the faults last.
      const runCount = ctx.quick ? 150 : 1000
      const faults = ctx.quick ? 8 : 30
      const maxRuns = ctx.quick ? 1500 : 6000
      const db = yield* freshDatabase(ctx.serverUrl)
      const target = new URL(db.url)
      const proxy = yield* Proxy.make({ host: target.hostname, port: Number(target.port || 5432) })
      const viaProxy = new URL(db.url)
      viaProxy.port = String(proxy.port)
      // A small prefetch: with the default (up to 500) one worker can hold every
      // waiting run, and A would find nothing to claim after a fault.
      const workerEnv = { RUNSTREAM_LEASE: `${leaseMs} millis`, RUNSTREAM_WORKER_CONCURRENCY: "10", RUNSTREAM_WORKER_PREFETCH: "10" }
      const [server, a] = yield* Effect.all([
        startEntry({ name: "s4-server", entry: "server", url: db.url, logDir: ctx.logDir }),
        startEntry({ name: "s4-worker-a-proxied", entry: "worker", url: viaProxy.toString(), logDir: ctx.logDir, env: workerEnv }),
        startEntry({ name: "s4-worker-b", entry: "worker", url: db.url, logDir: ctx.logDir, env: workerEnv })
      ], { concurrency: "unbounded" })

      const ids: Array<string> = yield* startRunsOverHttp(server.baseUrl, runCount, (i) => ({
        task: "demo.count",
        input: { to: 20, delayMs: 50 },
        maxAttempts: 20,
        idempotencyKey: `s4-${i}`
      }))

      let started = ids.length
      /** More runs when few are waiting to be claimed (bounded): there is always work for A to take. */
      const keepWork = Effect.gen(function*() {
        const [{ waiting }] = yield* query<{ waiting: number }>(db.url, "SELECT count(*)::int AS waiting FROM runstream_jobs WHERE locked_by IS NULL")
        if (waiting >= 40 || started >= maxRuns) return
        const from = started
        started += 100
        ids.push(...(yield* startRunsOverHttp(server.baseUrl, 100, (i) => ({ task: "demo.count", input: { to: 20, delayMs: 50 }, maxAttempts: 20, idempotencyKey: `s4-${from + i}` }))))
      })

      /** Until A holds a lease taken or renewed after `healedAt` (it claims or heartbeats again). */
      const recovery = (healedAt: number) =>
        waitFor("worker A to renew or claim a lease", Effect.map(
          query<{ renewed: boolean }>(db.url, "SELECT coalesce(max(locked_until) > $2, false) AS renewed FROM runstream_jobs WHERE locked_by = $1", [a.workerId, new Date(healedAt + leaseMs)]),
          (rows) => rows[0]!.renewed ? Option.some(Date.now() - healedAt) : Option.none()
        ), { timeout: "30 seconds", interval: "100 millis" })

      const injected: Array<Fault> = []
      let round: Array<Fault> = []
      const recoveries: Array<number> = []
      let unmeasured = 0
      while (injected.length < faults) {
        // Work for every fault: more runs when the queue runs low (bounded).
        yield* keepWork
        // Shuffled rounds of every kind: each kind comes up as often as the others.
        const fault = injected.length % faultKinds.length === 0 ? (round = shuffle(faultKinds))[0]! : round[injected.length % faultKinds.length]!
        injected.push(fault)
        yield* Effect.logInfo(`fault ${injected.length}: ${fault}`)
        if (fault === "stall < lease") {
          proxy.stall()
          yield* Effect.sleep(randomInt(500, 1500))
        } else if (fault === "stall > lease") {
          proxy.stall()
          yield* Effect.sleep(leaseMs + randomInt(1000, 2000))
        } else if (fault === "cut") {
          proxy.cut()
        } else {
          proxy.stall()
          proxy.cut()
          yield* Effect.sleep("2 seconds")
        }
        // Runs waiting for A when the link heals (the server is not behind the proxy).
        yield* keepWork
        proxy.resume()
        const healedAt = Date.now()
        yield* Effect.logInfo("healed")
        const took = yield* Effect.either(recovery(healedAt))
        if (took._tag === "Right") recoveries.push(took.right)
        else unmeasured++
        yield* Effect.sleep(randomInt(1000, 2000))
      }

      yield* waitAllFinished(db.url, ctx.quick ? "180 seconds" : "600 seconds")
      const check = yield* checkRuns(db.url, ids)
      const refusedEnds = yield* query<{ n: number }>(db.url, "SELECT count(*)::int AS n FROM runstream_events WHERE type = 'run.retrying' AND data->'error'->>'tag' = 'LeaseExpired'")
      const log = countLines(join(ctx.logDir, "s4-worker-a-proxied.log"), {
        claims: /claim failed/,
        heartbeats: /heartbeat failed/,
        refused: /lost its lease; its \w+ was refused/,
        unrecorded: /could not record the end/,
        relay: /outbox relay failed/,
        listen: /LISTEN connection lost/
      })
      const alive = a.alive()

      const { expect, failures } = makeChecks()
      expect(check.lost === 0, `no run lost (${check.lost}: ${check.examples.join(", ")})`)
      expect(check.multiTerminal === 0 && check.badTerminal === 0 && check.statusMismatch === 0, `no run completed twice (${check.multiTerminal} with several terminal events, ${check.statusMismatch} status mismatches)`)
      expect(check.gaps === 0, `no gap or duplicate seq (${check.gaps})`)
      expect(alive, "worker A is alive")
      expect(unmeasured === 0, `worker A claims or renews again after every fault (${unmeasured} times it did not within 30 s)`)
      const counts = injected.reduce((m, f) => m.set(f, (m.get(f) ?? 0) + 1), new Map<Fault, number>())

      return {
        id: 4,
        name: "Network faults to the database",
        load: `${ids.length} runs × 23 events, 1 server, 2 workers (one behind the proxy)`,
        faults: `${injected.length}: ${[...counts].map(([f, n]) => `${n} × ${f}`).join(", ")}`,
        lost: String(check.lost),
        duplicated: `${check.multiTerminal} completed twice`,
        recovery: recoveries.length === 0 ? "n/a" : `max ${seconds(Math.max(...recoveries))} (A claims/renews again)`,
        passed: failures.length === 0,
        durationMs: Date.now() - began,
        figures: [
          ["runs", `${ids.length} accepted: ${check.succeeded} succeeded, ${check.failed} failed, ${check.lost} lost; ${check.retried} needed more than one attempt`],
          ["logs", `${check.gaps} runs with a gap or duplicate seq, ${check.multiTerminal} with more than one terminal event, ${check.statusMismatch} whose status disagrees with it`],
          ["faults", `${injected.join(", ")}; proxy: ${proxy.stats().connections} connections in all, ${proxy.stats().cuts} cuts`],
          ["worker A saw", `${log["claims"]} failed claims, ${log["heartbeats"]} failed heartbeats, ${log["unrecorded"]} ends not recorded (left to the lease), ${log["refused"]} late ends refused (fencing), ${log["relay"]} relay failures, ${log["listen"]} LISTEN reconnects`],
          ["leases reclaimed (LeaseExpired)", String(refusedEnds[0]!.n)],
          ["heal → A claims or renews again", recoveries.length === 0 ? "n/a" : `p50 ${seconds(percentile(recoveries, 50))}, max ${seconds(Math.max(...recoveries))}`]
        ],
        failures
      }
    }).pipe(asFault)
}
