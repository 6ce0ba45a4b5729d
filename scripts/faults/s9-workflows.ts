/**
 * Scenario 9, workflows under faults. One server and two worker processes of
 * the suite (`node.ts`, lease 3 s) on the suite's own Postgres; runs of
 * `faults.workflow` (5 journaled steps, a durable sleep after the second),
 * and of `faults.parent` (three such workflows as child runs, awaited with
 * one wait), are started over HTTP in waves whenever fewer than a wave are
 * unfinished. A random worker is killed with SIGKILL once it holds attempts
 * (and started again), and half-way through the kills Postgres is restarted
 * (`fast`) while runs sleep, run steps and wait for their children.
 *
 * Each step's effect writes a line with a nonce outside the database (see
 * `Workflow` in tasks.ts), and the step's journal entry records the nonce.
 * Checks: no run lost, logs contiguous with one terminal event, every run
 * succeeded with the right total, exactly one `step.completed` per step and
 * one `sleep.started`, each parent with its three children started and
 * awaited once; and no step's effect ran again after its entry was
 * recorded (a line of the step after the recorded one). An effect that ran
 * and whose attempt died before its entry committed runs again: that is the
 * documented at-least-once of a step's effect, counted, not failed.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Fiber, Option } from "effect"
import {
  checkRuns,
  type Child,
  FaultError,
  freshDatabase,
  percentile,
  query,
  reclaimsAfterKills,
  requestJson,
  seconds,
  startNode,
  unfinished,
  waitAllFinished,
  waitFor
} from "./common.ts"
import { asFault, type Scenario } from "./harness.ts"
import { makeChecks } from "./report.ts"

const leaseMs = 3000
const steps = 5
/** The children of each `faults.parent`. */
const children = 3

/** Per run, per step: the nonces its effect wrote, in the order written. */
const readEffects = (path: string): Map<string, Array<string>> => {
  const effects = new Map<string, Array<string>>()
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line === "") continue
    const [runId, step, nonce] = line.split(" ")
    const key = `${runId} ${step}`
    const list = effects.get(key)
    if (list === undefined) effects.set(key, [nonce!])
    else list.push(nonce!)
  }
  return effects
}

export const scenario: Scenario = {
  id: 9,
  name: "Workflows under faults",
  run: (ctx) =>
    Effect.gen(function*() {
      const began = Date.now()
      const postgres = ctx.postgres
      if (postgres === undefined) return yield* new FaultError({ message: "scenario 9 needs the suite's own Postgres" })
      // Waves of runs while the faults go on: every kill and the restart find
      // runs asleep, in a step and waiting to be claimed.
      const wave = 60
      const maxRuns = ctx.quick ? 600 : 2400
      const kills = ctx.quick ? 4 : 12
      const stepMs = 100
      const db = yield* freshDatabase(postgres.url)
      const effectsFile = join(ctx.logDir, "s9-side-effects.log")
      writeFileSync(effectsFile, "")
      const env = {
        FAULTS_SIDE_EFFECTS: effectsFile,
        RUNSTREAM_LEASE: `${leaseMs} millis`,
        RUNSTREAM_WORKER_CONCURRENCY: "10"
      }
      let incarnation = 0
      const startWorker = () => startNode({ name: `s9-worker-${incarnation++}`, role: "worker", url: db.url, logDir: ctx.logDir, env })
      const [server, first, second] = yield* Effect.all([
        startNode({ name: "s9-server", role: "server", url: db.url, logDir: ctx.logDir, env }),
        startWorker(),
        startWorker()
      ], { concurrency: "unbounded" })
      const workers: Array<(Child & { readonly workerId: string | undefined }) | undefined> = [first, second]

      const startRuns = (from: number, count: number) =>
        Effect.forEach(
          Array.from({ length: count }, (_, i) => from + i),
          (i) =>
            requestJson("POST", `${server.url!}/v1/runs`, {
              // Every fourth a parent of three workflows, started by its body and awaited with one wait.
              task: i % 4 === 3 ? "faults.parent" : "faults.workflow",
              // Sleeps of 0.5-4 s: some wake during the kills, some across the restart.
              input: i % 4 === 3
                ? { children, napMs: 500 + Math.floor(Math.random() * 3500), stepMs }
                : { steps, napMs: 500 + Math.floor(Math.random() * 3500), stepMs },
              maxAttempts: 30,
              idempotencyKey: `s9-${i}`
            }).pipe(Effect.flatMap((answer) =>
              answer.status === 201
                ? Effect.succeed(answer.body.run.id as string)
                : Effect.fail(new FaultError({ message: `POST /v1/runs answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 300)}` }))
            )),
          { concurrency: 8 }
        )
      const ids: Array<string> = yield* startRuns(0, wave)

      const killed: Array<{ at: number; held: ReadonlyArray<{ run_id: string; attempt: number }> }> = []
      const restarting: Array<Fiber.RuntimeFiber<void, FaultError>> = []
      let restart: { readonly downMs: number; readonly waiting: number; readonly running: number } | undefined
      while (killed.length < kills) {
        yield* waitFor("both workers up", Effect.sync(() => workers.every((w) => w !== undefined) ? Option.some(true) : Option.none()), {
          timeout: "180 seconds",
          interval: "50 millis"
        })
        if ((yield* unfinished(db.url)) < wave && ids.length < maxRuns) ids.push(...(yield* startRuns(ids.length, wave)))
        if (killed.length === Math.floor(kills / 2) && restart === undefined) {
          // Restarted with runs asleep and runs in a step.
          const counts = yield* waitFor("runs asleep and running", Effect.map(query<{ waiting: number; running: number }>(db.url, `
            SELECT count(*) FILTER (WHERE status = 'waiting')::int AS waiting, count(*) FILTER (WHERE status = 'running')::int AS running
            FROM runstream_runs`), ([row]) => row!.waiting > 0 && row!.running > 0 ? Option.some(row!) : Option.none()), { timeout: "60 seconds", interval: "20 millis" })
          const { downMs } = yield* postgres.restart("fast")
          restart = { downMs, ...counts }
        }
        const index = Math.floor(Math.random() * 2)
        const victim = workers[index]!
        // Killed while it holds attempts (in a step, or between a step and its entry).
        yield* waitFor(`${victim.name} to hold runs`, Effect.map(
          query<{ n: number }>(db.url, "SELECT count(*)::int AS n FROM runstream_jobs WHERE locked_by = $1", [victim.workerId]),
          ([row]) => row!.n > 0 ? Option.some(row!.n) : Option.none()
        ), { timeout: "60 seconds", interval: "20 millis" })
        workers[index] = undefined
        yield* victim.kill("SIGKILL")
        const at = Date.now()
        const held = yield* query<{ run_id: string; attempt: number }>(db.url, "SELECT run_id, attempt FROM runstream_jobs WHERE locked_by = $1", [victim.workerId])
        killed.push({ at, held })
        restarting.push(yield* Effect.forkScoped(Effect.asVoid(Effect.tap(startWorker(), (worker) => Effect.sync(() => {
          workers[index] = worker
        })))))
        yield* Effect.sleep("2 seconds")
      }

      yield* waitAllFinished(db.url, ctx.quick ? "150 seconds" : "600 seconds")
      yield* Effect.forEach(restarting, Fiber.await, { discard: true })
      const check = yield* checkRuns(db.url, ids)
      const { heldTotal, notReclaimed, perKill } = yield* reclaimsAfterKills(db.url, killed)

      // The journal, against the effects written outside the database.
      const entries = yield* query<{ run_id: string; type: string; name: string; nonce: string | null }>(db.url, `
        SELECT run_id, type, data->>'name' AS name, data->'output'->>'nonce' AS nonce FROM runstream_events
        WHERE type IN ('step.completed', 'sleep.started')`)
      const outputs = yield* query<{ id: string; task: string; total: number | null }>(db.url, "SELECT id, task, (output->>'total')::int AS total FROM runstream_runs")
      const workflowIds = outputs.filter((row) => row.task === "faults.workflow").map((row) => row.id)
      const parentIds = outputs.filter((row) => row.task === "faults.parent").map((row) => row.id)
      const childRows = yield* query<{ parent_id: string; n: number; started: number; completed: number }>(db.url, `
        SELECT p.id AS parent_id,
          (SELECT count(*)::int FROM runstream_runs c WHERE c.parent_id = p.id) AS n,
          (SELECT count(*)::int FROM runstream_events e WHERE e.run_id = p.id AND e.type = 'child.started') AS started,
          (SELECT count(*)::int FROM runstream_events e WHERE e.run_id = p.id AND e.type = 'child.completed') AS completed
        FROM runstream_runs p WHERE p.task = 'faults.parent'`)
      const badFamilies = childRows.filter((row) => row.n !== children || row.started !== children || row.completed !== children).length
      const effects = readEffects(effectsFile)
      const recorded = new Map<string, Array<string>>()
      let sleeps = 0
      for (const entry of entries) {
        if (entry.type === "sleep.started") {
          sleeps++
          continue
        }
        const key = `${entry.run_id} ${entry.name}`
        recorded.set(key, [...(recorded.get(key) ?? []), entry.nonce ?? ""])
      }
      let stepsRecordedTwice = 0
      let stepsMissing = 0
      let ranAfterRecorded = 0
      let ranAgainBeforeRecorded = 0
      let recordedWithoutEffect = 0
      const examples: Array<string> = []
      for (const runId of workflowIds) {
        for (let n = 1; n <= steps; n++) {
          const key = `${runId} s${n}`
          const nonces = recorded.get(key) ?? []
          if (nonces.length === 0) stepsMissing++
          if (nonces.length > 1) stepsRecordedTwice++
          if (nonces.length !== 1) continue
          const lines = effects.get(key) ?? []
          const at = lines.indexOf(nonces[0]!)
          if (at < 0) {
            recordedWithoutEffect++
            continue
          }
          ranAgainBeforeRecorded += at
          ranAfterRecorded += lines.length - 1 - at
          if (lines.length - 1 - at > 0 && examples.length < 5) examples.push(key)
        }
      }
      const stepsTotal = (steps * (steps + 1)) / 2
      const wrongTotals = outputs.filter((row) => row.total !== (row.task === "faults.parent" ? children * stepsTotal : stepsTotal)).length

      const { expect, failures } = makeChecks()
      expect(check.lost === 0, `no run lost (${check.lost}: ${check.examples.join(", ")})`)
      expect(check.gaps === 0, `no run with a gap or duplicate seq (${check.gaps})`)
      expect(check.badTerminal === 0 && check.statusMismatch === 0, `one terminal event per run, matching its status (${check.badTerminal}, ${check.statusMismatch})`)
      expect(check.failed === 0 && wrongTotals === 0, `every run succeeded with the total of its steps (${check.succeeded} of ${check.runs} succeeded, ${wrongTotals} wrong totals)`)
      expect(stepsRecordedTwice === 0 && stepsMissing === 0, `exactly one step.completed per step (${stepsRecordedTwice} recorded twice, ${stepsMissing} missing)`)
      expect(sleeps === workflowIds.length, `exactly one sleep.started per workflow (${sleeps} for ${workflowIds.length})`)
      expect(parentIds.length > 0 && badFamilies === 0, `each parent has ${children} children, each started and awaited once (${badFamilies} of ${parentIds.length} parents do not)`)
      expect(ranAfterRecorded === 0, `no step ran again after its entry was recorded (${ranAfterRecorded}: ${examples.join(", ")})`)
      expect(recordedWithoutEffect === 0, `every recorded step's effect is in the side-effect file (${recordedWithoutEffect} are not)`)
      expect(notReclaimed === 0, `every attempt held by a killed worker is reclaimed (${notReclaimed} were not)`)

      return {
        id: 9,
        name: "Workflows under faults",
        load: `${check.runs} runs: ${workflowIds.length} workflows × ${steps} steps (${stepMs} ms each) and a 0.5-4 s durable sleep, ${parentIds.length} parents of ${children} of them; in waves of ${wave}, 1 server, 2 workers`,
        faults: `${killed.length} × kill -9 of a random worker, every ≥ 2 s, restarted; 1 Postgres restart (fast) half-way`,
        lost: String(check.lost),
        duplicated: `${ranAfterRecorded} steps re-run after recorded, ${stepsRecordedTwice} recorded twice, ${badFamilies} bad families, ${check.gaps} gaps`,
        recovery: perKill.length === 0 ? "n/a" : `max ${seconds(Math.max(...perKill))} kill→reclaim (lease 3 s)`,
        passed: failures.length === 0,
        durationMs: Date.now() - began,
        figures: [
          ["runs", `${ids.length} accepted (${parentIds.length} parents), ${check.runs} in all with the children: ${check.succeeded} succeeded, ${check.failed} failed, ${check.lost} lost; ${check.retried} needed more than one attempt`],
          ["journal", `${workflowIds.length * steps} steps: ${stepsRecordedTwice} recorded twice, ${stepsMissing} missing; ${sleeps} sleeps journaled`],
          ["child runs", `${parentIds.length} parents × ${children}: ${badFamilies} with a child missing, started twice or awaited twice`],
          [
            "step effects",
            `${ranAfterRecorded} ran again after their entry was recorded; ${ranAgainBeforeRecorded} ran again because their attempt died between the effect and its entry (at least once, as documented)`
          ],
          ["kills", `${killed.length}; attempts held by the dead worker: ${heldTotal} in all (${killed.map((k) => k.held.length).join(", ")}); ${notReclaimed} not reclaimed`],
          ["kill → reclaim", perKill.length === 0 ? "n/a" : `p50 ${seconds(percentile(perKill, 50))}, max ${seconds(Math.max(...perKill))}`],
          [
            "Postgres restart",
            restart === undefined ? "not reached" : `down ${seconds(restart.downMs)}, with ${restart.waiting} runs waiting (asleep) and ${restart.running} running`
          ]
        ],
        failures
      }
    }).pipe(asFault)
}
