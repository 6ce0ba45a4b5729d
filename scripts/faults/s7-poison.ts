/**
 * Scenario 7, poison runs. One worker process (concurrency 10) gets healthy
 * runs (`demo.count`, 20 ticks) mixed with runs of hostile tasks: one that
 * dies with a defect, one that never finishes, one that never finishes and
 * whose cleanup never finishes either, one whose output fails its schema, one
 * that emits an event over the size limit, and events Postgres cannot store
 * (a lone surrogate, JSON nested 20,000 deep). Each poison task has 2 attempts.
 *
 * Expected: the worker survives; every poison run fails after its 2 attempts
 * with the cause recorded; the healthy runs all succeed, at their first
 * attempt (a poison run must not cost another run an attempt); a last wave of
 * healthy runs started after the poison still completes.
 */
import { Context, Effect, Layer, Option } from "effect"
import { Runs } from "../../src/Runs.ts"
import { checkRuns, query, seconds, shuffle, startNode, waitFor, freshDatabase } from "./common.ts"
import { asFault, driverProgram, type Scenario } from "./harness.ts"
import { makeChecks } from "./report.ts"

const kinds = [
  { task: "faults.defect", input: {}, label: "defect", expect: "Defect" },
  { task: "faults.hang", input: {}, label: "never finishes", expect: "TaskTimeout" },
  { task: "faults.hang-in-cleanup", input: {}, label: "never finishes, nor its cleanup", expect: "TaskTimeout" },
  // No retry can cure an output that fails its schema: it fails on its first attempt.
  { task: "faults.bad-output", input: {}, label: "output fails its schema", expect: "OutputInvalid", permanent: true },
  { task: "faults.huge-event", input: {}, label: "200 KiB event", expect: "PayloadTooLarge" },
  { task: "faults.unstorable-event", input: { kind: "surrogate" }, label: "event with a lone surrogate", expect: undefined },
  { task: "faults.unstorable-event", input: { kind: "deep" }, label: "event nested 20,000 deep", expect: undefined }
] as const

export const scenario: Scenario = {
  id: 7,
  name: "Poison runs",
  run: (ctx) =>
    Effect.gen(function*() {
      const began = Date.now()
      const perKind = ctx.quick ? 2 : 5
      const healthyCount = ctx.quick ? 60 : 300
      const lateCount = 20
      const db = yield* freshDatabase(ctx.serverUrl)
      const program = yield* Layer.build(driverProgram(db.url))
      const runs = Context.get(program, Runs)
      const worker = yield* startNode({
        name: "s7-worker",
        role: "worker",
        url: db.url,
        logDir: ctx.logDir,
        env: {
          RUNSTREAM_WORKER_CONCURRENCY: "10",
          RUNSTREAM_LEASE: "2 seconds",
          RUNSTREAM_RECLAIM_INTERVAL: "500 millis",
          RUNSTREAM_WORKER_POLL: "500 millis",
          RUNSTREAM_SHUTDOWN_GRACE: "2 seconds"
        }
      })

      const poison = kinds.flatMap((kind) => Array.from({ length: perKind }, () => ({ task: kind.task, input: kind.input as unknown, kind })))
      const healthy = Array.from({ length: healthyCount }, () => ({ task: "demo.count", input: { to: 20, delayMs: 20 } as unknown, kind: undefined }))
      const requests = shuffle([...poison, ...healthy])
      const created = yield* runs.startMany(requests.map(({ input, task }) => ({ task, input })))
      const kindOf = new Map<string, typeof kinds[number] | undefined>(created.map((c, i) => [c.run.id, requests[i]!.kind]))

      // Every run should end. The runs whose cleanup never ends are waited for
      // last, a bounded while past the others (their 2 attempts take about 2 s).
      const deadline = ctx.quick ? "60 seconds" : "120 seconds"
      const pending = (exceptTask: string) =>
        Effect.map(
          query<{ n: number }>(db.url, "SELECT count(*)::int AS n FROM runstream_runs WHERE status IN ('queued', 'running') AND task <> $1", [exceptTask]),
          (rows) => rows[0]!.n === 0 ? Option.some(true) : Option.none()
        )
      const others = yield* Effect.either(waitFor("every run but faults.hang-in-cleanup to finish", pending("faults.hang-in-cleanup"), { timeout: deadline }))
      const finished = others._tag === "Left" ? others : yield* Effect.either(waitFor("every run to finish", pending(""), { timeout: "10 seconds" }))
      const firstWaveMs = Date.now() - began

      // Other runs keep flowing: a late wave, after the poison.
      const late = yield* runs.startMany(Array.from({ length: lateCount }, () => ({ task: "demo.count", input: { to: 5 } })))
      const lateDone = yield* Effect.either(waitFor(
        "the late wave to finish",
        Effect.map(query<{ n: number }>(db.url, "SELECT count(*)::int AS n FROM runstream_runs WHERE id = ANY($1) AND status = 'succeeded'", [late.map((c) => c.run.id)]), (rows) =>
          rows[0]!.n === lateCount ? Option.some(true) : Option.none()),
        { timeout: "30 seconds" }
      ))

      const alive = worker.alive()
      const pong = alive ? yield* Effect.either(Effect.zipRight(worker.send({ type: "ping" }), worker.next("pong", "5 seconds"))) : undefined
      // A graceful stop: in-flight runs get the grace (2 s), then are handed back.
      const stopping = Date.now()
      const stopped = yield* worker.kill("SIGTERM").pipe(Effect.timeoutOption("15 seconds"))
      const stopMs = Date.now() - stopping
      if (Option.isNone(stopped)) yield* worker.kill("SIGKILL")
      const check = yield* checkRuns(db.url)
      const rows = yield* query<{ id: string; task: string; status: string; attempt: number; max_attempts: number; tag: string | null; message: string | null; ms: number | null }>(db.url, `
        SELECT id, task, status, attempt, max_attempts, error->>'tag' AS tag, error->>'message' AS message,
          (extract(epoch FROM finished_at - created_at) * 1000)::int AS ms
        FROM runstream_runs`)

      const { expect, failures } = makeChecks()
      const figures: Array<readonly [string, string]> = []
      expect(alive && pong?._tag === "Right", "the worker process is alive and answers")
      figures.push(["worker process", alive ? (pong?._tag === "Right" ? "alive, answering" : "alive, NOT answering") : "DEAD"])

      let slowestPoison = 0
      for (const kind of kinds) {
        const mine = rows.filter((row) => kindOf.get(row.id) === kind)
        const permanent = "permanent" in kind && kind.permanent
        const failedAll = mine.filter((row) => row.status === "failed" && row.attempt === (permanent ? 1 : row.max_attempts))
        const tags = [...new Set(mine.map((row) => `${row.status}${row.tag === null ? "" : `/${row.tag}`}`))].join(", ")
        const example = mine.find((row) => row.message !== null)?.message?.split("\n")[0]?.slice(0, 100) ?? "none"
        for (const row of mine) if (row.ms !== null) slowestPoison = Math.max(slowestPoison, row.ms)
        const slowest = Math.max(0, ...mine.map((row) => row.ms ?? 0))
        const attempts = permanent ? "1 attempt (permanent)" : `${mine[0]?.max_attempts ?? "?"} attempts`
        figures.push([`${kind.task} (${kind.label})`, `${failedAll.length}/${mine.length} failed after ${attempts} (slowest in ${seconds(slowest)}); status/cause: ${tags}; message: "${example}"`])
        expect(failedAll.length === mine.length, `${kind.label}: every run fails after ${attempts} (${failedAll.length}/${mine.length})`)
        if (kind.expect !== undefined) {
          expect(mine.every((row) => row.tag === kind.expect), `${kind.label}: the cause recorded is ${kind.expect} (got ${tags})`)
        } else {
          expect(mine.every((row) => row.tag !== null && row.message !== null), `${kind.label}: a cause is recorded`)
        }
      }

      figures.push(["graceful stop (SIGTERM, grace 2 s)", Option.isSome(stopped) ? `exited in ${seconds(stopMs)}` : "did NOT exit within 15 s (killed)"])
      expect(Option.isSome(stopped), "the worker stops on SIGTERM within its grace (+ 13 s)")
      const healthyRows = rows.filter((row) => kindOf.has(row.id) && kindOf.get(row.id) === undefined)
      const healthyOk = healthyRows.filter((row) => row.status === "succeeded").length
      const disturbed = healthyRows.filter((row) => row.attempt > 1)
      const retryErrors = disturbed.length === 0 ? [] : yield* query<{ error: string; n: number }>(db.url, `
        SELECT coalesce(data->'error'->>'tag', '?') || ': ' || left(coalesce(data->'error'->>'message', ''), 120) AS error, count(*)::int AS n
        FROM runstream_events WHERE type = 'run.retrying' AND run_id = ANY($1) GROUP BY 1 ORDER BY 2 DESC`, [disturbed.map((row) => row.id)])
      const disturbedTags = retryErrors.map((e) => `${e.n}× ${e.error}`).join("; ")
      figures.push(["healthy runs", `${healthyOk}/${healthyRows.length} succeeded; ${disturbed.length} needed more than one attempt${disturbed.length > 0 ? ` (errors recorded: ${disturbedTags})` : ""}`])
      expect(healthyOk === healthyRows.length, `every healthy run succeeds (${healthyOk}/${healthyRows.length})`)
      expect(disturbed.length === 0, `no healthy run loses an attempt to a poison run (${disturbed.length} did)`)
      const unfinishedTasks = rows.filter((r) => r.status === "queued" || r.status === "running").map((r) => `${r.task} (${r.status})`)
      figures.push(["first wave", finished._tag === "Right" ? `all finished in ${seconds(firstWaveMs)}` : `NOT all finished: ${unfinishedTasks.join(", ")}`])
      expect(finished._tag === "Right", `every run finishes (still unfinished: ${unfinishedTasks.join(", ")})`)
      figures.push(["late wave (after the poison)", lateDone._tag === "Right" ? `${lateCount}/${lateCount} succeeded` : "did NOT complete in 30 s"])
      expect(lateDone._tag === "Right", "runs started after the poison still complete")
      figures.push(["logs", `${check.gaps} with a gap, ${check.badTerminal} with a bad terminal event, ${check.statusMismatch} status mismatches`])
      expect(check.gaps === 0 && check.badTerminal === 0 && check.statusMismatch === 0, `every log is 1..n with one terminal event (${check.examples.join(", ")})`)

      const stuck = rows.filter((row) => row.status === "queued" || row.status === "running").length
      return {
        id: 7,
        name: "Poison runs",
        load: `${healthyCount} healthy runs (22 events) + ${poison.length} poison runs, 1 worker`,
        faults: "defect, hang, hang in cleanup, bad output, 200 KiB event, 2 unstorable events",
        lost: String(stuck),
        duplicated: String(check.multiTerminal),
        recovery: `${seconds(slowestPoison)} (slowest poison run to fail)`,
        passed: failures.length === 0,
        durationMs: Date.now() - began,
        figures,
        failures
      }
    }).pipe(asFault)
}
