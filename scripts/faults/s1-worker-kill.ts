/**
 * Scenario 1, worker killed. One server and two worker processes, the
 * production entry points (`src/main/server.ts`, `src/main/worker.ts`, lease
 * 3 s). Runs of `demo.count` (20 ticks) are started over HTTP; every 2 s a
 * random worker is killed with SIGKILL and started again (a kill waits until
 * both workers are up, so that one is there to reclaim).
 *
 * Figures: runs lost, runs with a gap or a duplicate seq, runs with more than
 * one terminal event, and the time from each kill to the reclaim of the runs
 * the dead worker held (the `run.retrying`/`run.failed` with `LeaseExpired`
 * written for each), which must stay within lease + 2 s.
 */
import { Effect, Fiber, Option } from "effect"
import {
  checkRuns,
  type EntryProcess,
  FaultError,
  freshDatabase,
  percentile,
  query,
  reclaimsAfterKills,
  requestJson,
  seconds,
  startEntry,
  unfinished,
  waitAllFinished,
  waitFor
} from "./common.ts"
import { asFault, type Scenario } from "./harness.ts"
import { makeChecks } from "./report.ts"

const leaseMs = 3000

/** Starts `count` runs over HTTP, `concurrency` requests at a time; returns the accepted ids. */
export const startRunsOverHttp = (baseUrl: string, count: number, body: (i: number) => Record<string, unknown>, concurrency = 8) =>
  Effect.forEach(
    Array.from({ length: count }, (_, i) => i),
    (i) =>
      requestJson("POST", `${baseUrl}/v1/runs`, body(i)).pipe(
        Effect.flatMap((answer) =>
          answer.status === 201 || answer.status === 200
            ? Effect.succeed(answer.body.run.id as string)
            : Effect.fail(new FaultError({ message: `POST /v1/runs answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 300)}` }))
        )
      ),
    { concurrency }
  )

export const scenario: Scenario = {
  id: 1,
  name: "Worker killed",
  run: (ctx) =>
    Effect.gen(function*() {
      const began = Date.now()
      const runCount = ctx.quick ? 200 : 1000
      const kills = ctx.quick ? 4 : 20
      const delayMs = ctx.quick ? 100 : 200
      const db = yield* freshDatabase(ctx.serverUrl)
      const workerEnv = { RUNSTREAM_LEASE: `${leaseMs} millis`, RUNSTREAM_WORKER_CONCURRENCY: "10" }
      let incarnation = 0
      const startWorker = () =>
        startEntry({ name: `s1-worker-${incarnation++}`, entry: "worker", url: db.url, logDir: ctx.logDir, env: workerEnv })
      const [server, first, second] = yield* Effect.all([
        startEntry({ name: "s1-server", entry: "server", url: db.url, logDir: ctx.logDir }),
        startWorker(),
        startWorker()
      ], { concurrency: "unbounded" })
      const workers: Array<EntryProcess | undefined> = [first, second]

      const body = (i: number) => ({ task: "demo.count", input: { to: 20, delayMs }, maxAttempts: 20, idempotencyKey: `s1-${i}` })
      const ids: Array<string> = yield* startRunsOverHttp(server.baseUrl, runCount, body)
      const maxRuns = runCount * 3

      const killed: Array<{ at: number; workerId: string; held: ReadonlyArray<{ run_id: string; attempt: number }> }> = []
      const restarts: Array<number> = []
      const restarting: Array<Fiber.RuntimeFiber<void, FaultError>> = []
      let started = ids.length
      while (killed.length < kills) {
        // Work for every kill: more runs when the queue runs low (bounded).
        if ((yield* unfinished(db.url)) < 40 && started < maxRuns) {
          ids.push(...(yield* startRunsOverHttp(server.baseUrl, 100, (i) => body(started + i))))
          started += 100
        }
        // Both up, so that the other one reclaims.
        yield* waitFor("both workers up", Effect.sync(() => workers.every((w) => w !== undefined) ? Option.some(true) : Option.none()), {
          timeout: "180 seconds",
          interval: "50 millis"
        })
        const index = Math.floor(Math.random() * 2)
        const victim = workers[index]!
        workers[index] = undefined
        yield* victim.kill("SIGKILL")
        const at = Date.now()
        const held = yield* query<{ run_id: string; attempt: number }>(db.url, "SELECT run_id, attempt FROM runstream_jobs WHERE locked_by = $1", [victim.workerId])
        killed.push({ at, workerId: victim.workerId!, held })
        restarting.push(yield* Effect.forkScoped(Effect.gen(function*() {
          const begun = Date.now()
          workers[index] = yield* startWorker()
          restarts.push(Date.now() - begun)
        })))
        yield* Effect.sleep("2 seconds")
      }

      yield* waitAllFinished(db.url, ctx.quick ? "180 seconds" : "600 seconds")
      const check = yield* checkRuns(db.url, ids)
      const { heldTotal, notReclaimed, perKill } = yield* reclaimsAfterKills(db.url, killed)
      const attempts = yield* query<{ max: number; avg: number; over3: number }>(db.url, "SELECT max(attempt) AS max, avg(attempt)::float AS avg, count(*) FILTER (WHERE attempt > 3)::int AS over3 FROM runstream_runs")

      const { expect, failures } = makeChecks()
      const bound = leaseMs + 2000
      expect(check.lost === 0, `no run lost (${check.lost}: ${check.examples.join(", ")})`)
      expect(check.gaps === 0, `no run with a gap or duplicate seq (${check.gaps})`)
      expect(check.badTerminal === 0 && check.statusMismatch === 0, `one terminal event per run, matching its status (${check.badTerminal}, ${check.statusMismatch})`)
      expect(notReclaimed === 0, `every run held by a killed worker is reclaimed (${notReclaimed} were not)`)
      expect(perKill.length > 0 && Math.max(...perKill) <= bound, `kill to reclaim within lease + 2 s = ${seconds(bound)} (max ${seconds(Math.max(...perKill))})`)
      yield* Effect.forEach(restarting, Fiber.await, { discard: true })

      return {
        id: 1,
        name: "Worker killed",
        load: `${ids.length} runs × 23 events (20 ticks, ${delayMs} ms apart), 1 server, 2 workers`,
        faults: `${killed.length} × kill -9 of a random worker, every ≥ 2 s, restarted`,
        lost: String(check.lost),
        duplicated: `${check.gaps} gaps/dup seqs, ${check.multiTerminal} multi-terminal`,
        recovery: perKill.length === 0 ? "n/a" : `max ${seconds(Math.max(...perKill))} kill→reclaim (lease 3 s)`,
        passed: failures.length === 0,
        durationMs: Date.now() - began,
        figures: [
          ["runs", `${ids.length} accepted: ${check.succeeded} succeeded, ${check.failed} failed, ${check.lost} lost; attempts per run: avg ${attempts[0]!.avg.toFixed(2)}, max ${attempts[0]!.max} (of 20); ${attempts[0]!.over3} runs used more than 3 (the default limit: they would have failed)`],
          ["logs", `${check.gaps} runs with a gap or duplicate seq, ${check.multiTerminal} with more than one terminal event, ${check.statusMismatch} whose status disagrees with it`],
          ["kills", `${killed.length}; runs held by the dead worker: ${heldTotal} in all (${killed.map((k) => k.held.length).join(", ")})`],
          ["kill → reclaim", perKill.length === 0 ? "n/a" : `p50 ${seconds(percentile(perKill, 50))}, max ${seconds(Math.max(...perKill))} (bound: lease + 2 s = ${seconds(bound)}); ${notReclaimed} held runs not reclaimed`],
          ["worker restart (spawn to /readyz)", restarts.length === 0 ? "n/a" : `p50 ${seconds(percentile(restarts, 50))}, max ${seconds(Math.max(...restarts))}`]
        ],
        failures
      }
    }).pipe(asFault)
}
