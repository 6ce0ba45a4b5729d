/**
 * Scenario 8, flow control under faults. One server and three workers
 * (`scripts/faults/node.ts` with scenario 8's tasks, lease 2 s). For 30 [150] s:
 *
 * - runs of `faults.limited` (`concurrency: { limit: 2 }`, each holds 30-150
 *   ms) on 10 keys, and of `faults.queue-limited` (the same body, no limits
 *   of its own) on the queue `faults.limited` (the same limit, declared on
 *   the queue) on 10 other keys: every 1 [0.5] s, 3-5 runs for each of 2 keys
 *   (the first keys more often);
 * - every 4 [3] s, while two workers are up, 8 more runs for each of 6 keys,
 *   then `kill -9` of the worker holding the most of them (it is started
 *   again): its runs hold their keys' slots until their leases are reclaimed;
 * - 3 [10] waves of 12 runs per key of `faults.rated` (`rateLimit: 4 per
 *   second`) on 4 [8] keys;
 * - bursts of 4-8 debounced starts (30 ms apart, delay 1.5 s, trailing or
 *   leading) of `faults.debounced` on 6 [12] keys, over HTTP, a key's next
 *   burst once the last one's run is claimed;
 * - and every process declares `faults.every-second` (every 1 second).
 *
 * The limited and rated runs are started by the suite's own program (a batch
 * a statement); it does not know the schedule's task, so it does not tick it.
 *
 * The times come from the database. A trigger installed by the scenario
 * stamps each event row with Postgres's `clock_timestamp()` as it is written
 * (the events' own `at` is the writer's clock, read before its statement: a
 * statement that waited for a connection stamps an earlier time). A run holds
 * its key's slot from the statement that claims it (its `run.started`) to
 * the one that ends its attempt (`run.succeeded`, `run.retrying`, ...; for a
 * dead worker's run, the reclaim's `run.retrying` with `LeaseExpired`), and a
 * claim sees a slot given back only once that statement committed: so these
 * stamps order each key's handovers as Postgres did, and at no instant may
 * more than 2 of one key's attempts be open.
 *
 * Checked: no run lost, with a gap or with two terminal events, every run
 * succeeded; at most 2 attempts of one key open at any instant, a dead
 * worker's counted until its reclaim, and the keys' counters back to zero at
 * the end; at most 4 starts of a rated key in any second of the starts' own
 * times (those the limit counts: the claimants' clocks), each throttled run
 * with one `run.throttled` and not started before its `until`; debounce: a
 * start folds into its key's run unless that run was claimed first (by the
 * trigger's stamp of its claim), never into a claimed run, answers 201 when it
 * creates the run and 200 `folded` otherwise, and the run has its last
 * (trailing) or first (leading) start's input and starts no sooner than 1.5 s
 * after its last start; one run for each tick of the schedule from its first
 * to past the load, none skipped; every run held by a dead worker reclaimed
 * within lease + 2 s.
 */
import { Context, Effect, Fiber, Layer, Option } from "effect"
import pg from "pg"
import { Runs } from "../../src/Runs.ts"
import * as Tasks from "./tasks.ts"
import {
  checkRuns,
  FaultError,
  freshDatabase,
  percentile,
  query,
  reclaimsAfterKills,
  randomInt,
  requestJson,
  seconds,
  startNode,
  waitAllFinished,
  waitFor
} from "./common.ts"
import { asFault, driverProgram, type Scenario } from "./harness.ts"
import { makeChecks } from "./report.ts"

const leaseMs = 2000
const concurrencyLimit = Tasks.Limited.limits.concurrency!
/** The runs counted by a limit of 2 per key: the task's own, and the queue's. */
const limitedTasks: ReadonlyArray<string> = [Tasks.Limited.name, Tasks.QueueLimited.name]
const rate = Tasks.Rated.limits.rateLimit!
const debounceDelayMs = 1500
const scheduleName = Tasks.EverySecond.name

/** The events that end an attempt (`RunQueue.recordEnds`: `run.` and the end's kind). */
const attemptEnds = new Set(["run.succeeded", "run.failed", "run.cancelled", "run.retrying", "run.released"])

/** Stamps each event row with the database's clock as it is written. */
const installEventClock = (url: string) =>
  query(url, `
    CREATE TABLE faults_event_clock (run_id uuid NOT NULL, seq integer NOT NULL, at timestamptz NOT NULL);
    CREATE FUNCTION faults_stamp_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO faults_event_clock (run_id, seq, at) VALUES (NEW.run_id, NEW.seq, clock_timestamp());
      RETURN NULL;
    END $$;
    CREATE TRIGGER faults_stamp_event AFTER INSERT ON runstream_events
      FOR EACH ROW EXECUTE FUNCTION faults_stamp_event();`)

/** Picks one of `n` keys, the first ones more often (weights 1, 1/2, 1/3, ...). */
const skewedKey = (n: number) => {
  const total = Array.from({ length: n }, (_, i) => 1 / (i + 1)).reduce((a, b) => a + b, 0)
  let r = Math.random() * total
  for (let i = 0; i < n; i++) {
    r -= 1 / (i + 1)
    if (r <= 0) return i
  }
  return n - 1
}

interface Interval {
  readonly key: string
  readonly runId: string
  readonly attempt: number
  /** Database clock, microseconds. */
  readonly from: number
  readonly to: number
  /** The writers' own stamps (events' `at`), milliseconds. */
  readonly fromStamp: number
  readonly toStamp: number
  /** Ended by a reclaim (its worker died). */
  readonly reclaimed: boolean
}

/** The most intervals of one key open at one instant; an end at the same instant as a start comes first. */
const peakOverlap = (intervals: ReadonlyArray<Interval>, clock: "db" | "stamp") => {
  const points = intervals.flatMap((i) =>
    clock === "db" ? [[i.from, 1], [i.to, -1]] as const : [[i.fromStamp, 1], [i.toStamp, -1]] as const
  ).sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let open = 0
  let peak = 0
  let at = 0
  for (const [time, delta] of points) {
    open += delta
    if (open > peak) {
      peak = open
      at = time
    }
  }
  return { peak, at }
}

/** The most of `times` (sorted or not) in any window `(t - period, t]`. */
const peakInWindow = (times: ReadonlyArray<number>, period: number) => {
  const sorted = [...times].sort((a, b) => a - b)
  let from = 0
  let peak = 0
  for (let i = 0; i < sorted.length; i++) {
    while (sorted[from]! <= sorted[i]! - period) from++
    peak = Math.max(peak, i - from + 1)
  }
  return peak
}

interface Burst {
  readonly key: string
  readonly mode: "trailing" | "leading"
  readonly index: number
  readonly starts: Array<{
    readonly seq: number
    readonly sentAt: number
    readonly answeredAt: number
    readonly status: number
    readonly runId: string
    readonly folded: boolean
  }>
  claimedAt: number
}

export const scenario: Scenario = {
  id: 8,
  name: "Flow control under faults",
  run: (ctx) =>
    Effect.gen(function*() {
      const began = Date.now()
      const loadMs = ctx.quick ? 30_000 : 150_000
      const killEveryMs = ctx.quick ? 4_000 : 3_000
      const limitedKeys = 20
      const trickleEveryMs = ctx.quick ? 1_000 : 500
      const ratedKeys = ctx.quick ? 4 : 8
      const ratedWaves = ctx.quick ? 3 : 10
      const ratedPerWave = 12
      const debounceKeys = ctx.quick ? 6 : 12

      const db = yield* freshDatabase(ctx.serverUrl)
      const flowEnv = { FAULTS_FLOW_CONTROL: "1", RUNSTREAM_RECLAIM_INTERVAL: "500 millis" }
      const workerEnv = {
        ...flowEnv,
        RUNSTREAM_WORKER_QUEUES: `default,${Tasks.limitedQueue}`,
        RUNSTREAM_LEASE: `${leaseMs} millis`,
        RUNSTREAM_WORKER_CONCURRENCY: "8",
        RUNSTREAM_WORKER_POLL: "500 millis",
        RUNSTREAM_SHUTDOWN_GRACE: "2 seconds"
      }
      let incarnation = 0
      const startWorker = () => startNode({ name: `s8-worker-${incarnation++}`, role: "worker", url: db.url, logDir: ctx.logDir, env: workerEnv })
      const [server, ...first] = yield* Effect.all([
        startNode({ name: "s8-server", role: "server", url: db.url, logDir: ctx.logDir, env: flowEnv }),
        startWorker(),
        startWorker(),
        startWorker()
      ], { concurrency: "unbounded" })
      const readyAt = Date.now()
      yield* installEventClock(db.url)
      // The driver starts the limited and rated runs, a batch a statement. It does not
      // know the schedule's task: the schedule is the server's and the workers' alone.
      const program = yield* Layer.build(driverProgram(db.url, {
        tasks: [Tasks.Limited, Tasks.QueueLimited, Tasks.Rated],
        queues: Tasks.flowControlQueues
      }))
      const runs = Context.get(program, Runs)
      const workers: Array<typeof first[number] | undefined> = [...first]
      const loadEnd = Date.now() + loadMs

      const accepted: Array<string> = []
      let limitedCount = 0
      /**
       * Starts `count` runs on each key given: of `faults.limited` on even keys (its own
       * limit), of `faults.queue-limited` on its queue on odd keys (the queue's limit).
       */
      const startLimited = (perKey: ReadonlyArray<readonly [key: number, count: number]>) =>
        Effect.map(
          runs.startMany(perKey.flatMap(([key, count]) =>
            Array.from({ length: count }, () => ({
              task: key % 2 === 0 ? Tasks.Limited.name : Tasks.QueueLimited.name,
              input: { holdMs: randomInt(30, 150) },
              options: {
                concurrencyKey: `k${key}`,
                maxAttempts: 20,
                ...(key % 2 === 0 ? {} : { queue: Tasks.limitedQueue })
              }
            }))
          )),
          (created) => {
            for (const c of created) accepted.push(c.run.id)
            limitedCount += created.length
          }
        )

      // Limited runs: every batch gives 2 keys (the first keys more often) 3-5 runs each.
      const trickle = Effect.gen(function*() {
        while (Date.now() < loadEnd) {
          yield* startLimited([[skewedKey(limitedKeys), randomInt(3, 5)], [skewedKey(limitedKeys), randomInt(3, 5)]])
          yield* Effect.sleep(trickleEveryMs)
        }
      })

      // Rated runs: waves of 12 per key, 3 s of starts for each at 4 per second.
      let ratedCount = 0
      const ratedLoad = Effect.forEach(Array.from({ length: ratedWaves }, (_, i) => i), (wave) =>
        Effect.gen(function*() {
          const due = loadEnd - loadMs + (wave * loadMs) / ratedWaves
          yield* Effect.sleep(Math.max(0, due - Date.now()))
          const created = yield* runs.startMany(Array.from({ length: ratedKeys * ratedPerWave }, (_, i) => ({
            task: Tasks.Rated.name,
            input: {},
            options: { concurrencyKey: `r${i % ratedKeys}`, maxAttempts: 20 }
          })))
          for (const c of created) accepted.push(c.run.id)
          ratedCount += created.length
        }), { discard: true })

      // Debounce, over HTTP: bursts of 4-8 starts 30 ms apart; a key's next burst once the last one's run is claimed.
      const startOverHttp = (body: Record<string, unknown>) =>
        requestJson("POST", `${server.url}/v1/runs`, body).pipe(
          Effect.flatMap((answer) =>
            answer.status === 201 || answer.status === 200
              ? Effect.succeed({ status: answer.status, runId: answer.body.run.id as string, folded: answer.body.folded === true })
              : Effect.fail(new FaultError({ message: `POST /v1/runs answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 300)}` }))
          ),
          Effect.tap((answer) => Effect.sync(() => answer.status === 201 && accepted.push(answer.runId)))
        )
      const bursts: Array<Burst> = []
      const debounceLoad = Effect.forEach(Array.from({ length: debounceKeys }, (_, k) => k), (k) =>
        Effect.gen(function*() {
          const key = `d${k}`
          const mode = k % 2 === 0 ? "trailing" : "leading"
          for (let index = 0; Date.now() < loadEnd; index++) {
            const burst: Burst = { key, mode, index, starts: [], claimedAt: 0 }
            const size = randomInt(4, 8)
            for (let seq = 0; seq < size; seq++) {
              if (seq > 0) yield* Effect.sleep("30 millis")
              const sentAt = Date.now()
              const answer = yield* startOverHttp({
                task: Tasks.Debounced.name,
                input: { key, burst: index, seq },
                debounce: { key, delayMs: debounceDelayMs, mode },
                maxAttempts: 20
              })
              burst.starts.push({ seq, sentAt, answeredAt: Date.now(), ...answer })
            }
            const runId = burst.starts.at(-1)!.runId
            yield* waitFor(
              `the run of debounce burst ${key}/${index} to be claimed`,
              Effect.map(query<{ claimed: boolean }>(db.url, "SELECT started_at IS NOT NULL AS claimed FROM runstream_runs WHERE id = $1", [runId]), (rows) =>
                rows[0]?.claimed === true ? Option.some(true) : Option.none()),
              { timeout: "60 seconds", interval: "50 millis" }
            )
            burst.claimedAt = Date.now()
            bursts.push(burst)
            yield* Effect.sleep(randomInt(200, 2000))
          }
        }), { concurrency: "unbounded", discard: true })

      // Kills: every few seconds, while two workers are up, a burst of limited runs (6 keys, 8
      // runs each), then the worker holding the most of them (a random one if none) is killed.
      const killed: Array<{ at: number; workerId: string; held: ReadonlyArray<{ run_id: string; attempt: number; task: string }> }> = []
      const down: Array<{ from: number; to: number }> = []
      const restarts: Array<number> = []
      const upIndexes = () => workers.flatMap((w, i) => w === undefined ? [] : [i])
      const killLoop = Effect.gen(function*() {
        while (true) {
          yield* Effect.sleep(killEveryMs)
          if (Date.now() >= loadEnd - 1000) return
          yield* waitFor("two workers up", Effect.sync(() => upIndexes().length >= 2 ? Option.some(true) : Option.none()), {
            timeout: "120 seconds",
            interval: "50 millis"
          })
          if (Date.now() >= loadEnd - 1000) return
          yield* startLimited(Array.from({ length: 6 }, () => [randomInt(0, limitedKeys - 1), 8] as const))
          const holding = yield* waitFor(
            "limited runs held by a worker",
            Effect.map(
              query<{ worker: string; n: number }>(db.url, `
                SELECT locked_by AS worker, count(*)::int AS n FROM runstream_jobs
                WHERE task = ANY($1) AND locked_by IS NOT NULL GROUP BY locked_by ORDER BY n DESC`, [limitedTasks]),
              (rows) => {
                const index = rows.map((row) => upIndexes().find((i) => workers[i]!.workerId === row.worker)).find((i) => i !== undefined)
                return index === undefined ? Option.none() : Option.some(index)
              }
            ),
            { timeout: "5 seconds", interval: "20 millis" }
          ).pipe(Effect.option)
          const up = upIndexes()
          const index = Option.getOrElse(holding, () => up[Math.floor(Math.random() * up.length)]!)
          const victim = workers[index]!
          workers[index] = undefined
          yield* victim.kill("SIGKILL")
          const at = Date.now()
          const held = yield* query<{ run_id: string; attempt: number; task: string }>(db.url, "SELECT run_id, attempt, task FROM runstream_jobs WHERE locked_by = $1", [victim.workerId])
          killed.push({ at, workerId: victim.workerId!, held })
          const window = { from: at, to: Number.POSITIVE_INFINITY }
          down.push(window)
          // Not waited for at the end: a restart takes seconds (tens on a busy machine).
          yield* Effect.forkScoped(Effect.gen(function*() {
            workers[index] = yield* startWorker()
            window.to = Date.now()
            restarts.push(window.to - at)
          }))
        }
      })

      // When each tick pass committed: the schedule's next_tick_at, watched every 50 ms (Postgres's clock).
      const passes = new Map<number, number>()
      const watchTicks = Effect.acquireUseRelease(
        Effect.promise(async () => {
          const client = new pg.Client({ connectionString: db.url, application_name: "faults-tick-watch" })
          client.on("error", () => {})
          await client.connect()
          return client
        }),
        (client) =>
          Effect.gen(function*() {
            while (Date.now() < loadEnd + 3000) {
              const rows = yield* Effect.promise(() =>
                client.query<{ next: Date; now: Date }>("SELECT next_tick_at AS next, clock_timestamp() AS now FROM runstream_schedules WHERE name = $1", [scheduleName])
              )
              const row = rows.rows[0]
              if (row !== undefined && !passes.has(row.next.getTime())) passes.set(row.next.getTime(), row.now.getTime())
              yield* Effect.sleep("50 millis")
            }
          }),
        (client) => Effect.promise(() => client.end().catch(() => undefined))
      )
      const watching = yield* Effect.forkScoped(watchTicks)

      yield* Effect.all([trickle, ratedLoad, debounceLoad, killLoop], { concurrency: "unbounded", discard: true })
      const loadEnded = Date.now()

      // The schedule: ticking on until after the load, then paused so that the runs can all end.
      const tickOf = (key: string) => new Date(key.slice(`schedule:${scheduleName}:`.length)).getTime()
      yield* waitFor("a tick after the load", Effect.map(query<{ key: string | null }>(db.url,
        "SELECT max(idempotency_key) AS key FROM runstream_runs WHERE task = $1", [Tasks.Tick.name]), (rows) =>
        rows[0]?.key != null && tickOf(rows[0].key) >= loadEnded ? Option.some(true) : Option.none()), { timeout: "15 seconds", interval: "100 millis" })
      const paused = yield* requestJson("POST", `${server.url}/v1/schedules/${scheduleName}/pause`)
      if (paused.status !== 200) return yield* new FaultError({ message: `pausing the schedule answered ${paused.status}: ${JSON.stringify(paused.body)}` })
      yield* waitAllFinished(db.url, ctx.quick ? "120 seconds" : "300 seconds")
      yield* Fiber.interrupt(watching)
      const drainedMs = Date.now() - loadEnded

      const check = yield* checkRuns(db.url, accepted)
      const { expect, failures } = makeChecks()
      const figures: Array<readonly [string, string]> = []
      const failedRuns = yield* query<{ task: string; n: number }>(db.url, "SELECT task, count(*)::int AS n FROM runstream_runs WHERE status <> 'succeeded' GROUP BY task")
      expect(check.lost === 0, `no run lost (${check.lost}: ${check.examples.join(", ")})`)
      expect(check.gaps === 0, `no run with a gap or duplicate seq (${check.gaps})`)
      expect(check.badTerminal === 0 && check.statusMismatch === 0, `one terminal event per run, matching its status (${check.badTerminal}, ${check.statusMismatch})`)
      expect(failedRuns.length === 0, `every run succeeds (not: ${failedRuns.map((r) => `${r.n} of ${r.task}`).join(", ")})`)
      const attempts = yield* query<{ task: string; runs: number; retried: number; max: number }>(db.url, `
        SELECT task, count(*)::int AS runs, count(*) FILTER (WHERE attempt > 1)::int AS retried, max(attempt) AS max
        FROM runstream_runs GROUP BY task ORDER BY task`)
      figures.push(["processes", `1 server and 3 workers ready ${seconds(readyAt - began)} after the start; load ${seconds(loadMs)}`])
      figures.push(["runs", `${check.runs} in all: ${check.succeeded} succeeded, ${check.failed} failed, ${check.lost} lost; ${
        attempts.map((a) => `${a.task} ${a.runs} (${a.retried} retried, max attempt ${a.max})`).join(", ")
      }`])
      figures.push(["logs", `${check.gaps} runs with a gap or duplicate seq, ${check.multiTerminal} with more than one terminal event, ${check.statusMismatch} whose status disagrees with it`])

      // --- Concurrency: the attempts' slots, by the database's clock.
      const events = (tasks: ReadonlyArray<string>) =>
        query<{ run_id: string; key: string | null; seq: number; type: string; attempt: number | null; tag: string | null; until: string | null; wall_us: string | null; stamp_ms: string }>(db.url, `
          SELECT e.run_id, r.concurrency_key AS key, e.seq, e.type, (e.data->>'attempt')::int AS attempt,
            e.data->'error'->>'tag' AS tag, e.data->>'until' AS until,
            (extract(epoch FROM c.at) * 1000000)::bigint::text AS wall_us,
            (extract(epoch FROM e.at) * 1000)::bigint::text AS stamp_ms
          FROM runstream_events e JOIN runstream_runs r ON r.id = e.run_id
          LEFT JOIN faults_event_clock c ON c.run_id = e.run_id AND c.seq = e.seq
          WHERE r.task = ANY($1) ORDER BY e.run_id, e.seq`, [tasks])
      const limitedEvents = yield* events(limitedTasks)
      const intervals: Array<Interval> = []
      let unstamped = 0
      let unclosed = 0
      let opened: { runId: string; key: string; attempt: number; from: number; fromStamp: number } | undefined
      for (const row of limitedEvents) {
        if (row.wall_us === null) unstamped++
        if (opened !== undefined && opened.runId !== row.run_id) {
          unclosed++
          opened = undefined
        }
        if (row.type === "run.started") {
          if (opened !== undefined) unclosed++
          opened = { runId: row.run_id, key: row.key ?? "", attempt: row.attempt ?? 0, from: Number(row.wall_us), fromStamp: Number(row.stamp_ms) }
        } else if (attemptEnds.has(row.type) && opened !== undefined) {
          intervals.push({ ...opened, to: Number(row.wall_us), toStamp: Number(row.stamp_ms), reclaimed: row.tag === "LeaseExpired" })
          opened = undefined
        }
      }
      if (opened !== undefined) unclosed++
      const byKey = new Map<string, Array<Interval>>()
      for (const interval of intervals) byKey.set(interval.key, [...(byKey.get(interval.key) ?? []), interval])
      let peak = 0
      let peakStamp = 0
      let keysAtLimit = 0
      let queueKeysAtLimit = 0
      const over: Array<string> = []
      for (const [key, mine] of byKey) {
        const byDatabase = peakOverlap(mine, "db")
        const byStamps = peakOverlap(mine, "stamp")
        peak = Math.max(peak, byDatabase.peak)
        peakStamp = Math.max(peakStamp, byStamps.peak)
        if (byDatabase.peak === concurrencyLimit) keysAtLimit++
        // Odd keys are counted by the queue's limit (see `startLimited`).
        if (byDatabase.peak === concurrencyLimit && Number(key.slice(1)) % 2 === 1) queueKeysAtLimit++
        if (byDatabase.peak > concurrencyLimit && over.length < 5) {
          over.push(`${key}: ${byDatabase.peak} at ${new Date(byDatabase.at / 1000).toISOString()}`)
        }
      }
      const reclaimedIntervals = intervals.filter((i) => i.reclaimed)
      // Attempts of a key that started while one of its slots was held by a dead worker's run.
      const besideDead = intervals.filter((i) =>
        !i.reclaimed && reclaimedIntervals.some((d) => d.key === i.key && d.from < i.from && i.from < d.to)
      ).length
      const heldDeadMs = reclaimedIntervals.map((i) => (i.to - i.from) / 1000)
      figures.push([
        "concurrency (limit 2 per key)",
        `${intervals.length} attempts of ${limitedCount} runs on ${byKey.size} keys; at most ${peak} attempts of one key open at once by the database's clock (${keysAtLimit} keys reached 2, ${queueKeysAtLimit} of them by the queue's limit); by the writers' own stamps the peak would read ${peakStamp}${
          over.length > 0 ? `; over the limit: ${over.join(", ")}` : ""
        }`
      ])
      figures.push([
        "dead workers' limited runs",
        `${reclaimedIntervals.length} attempts held a slot until their reclaim (p50 ${seconds(percentile(heldDeadMs, 50))}, max ${seconds(Math.max(0, ...heldDeadMs))} from claim to reclaim); ${besideDead} attempts of their keys started meanwhile, beside them`
      ])
      expect(peak <= concurrencyLimit, `at most ${concurrencyLimit} attempts of one key running at once, a dead worker's until its reclaim (peak ${peak}: ${over.join(", ")})`)
      expect(keysAtLimit > 0, "the load brings some key to its limit")
      expect(queueKeysAtLimit > 0, "the load brings some key of the queue's limit to it")
      expect(unstamped === 0 && unclosed === 0, `every attempt of a limited run is stamped and ended (${unstamped} events unstamped, ${unclosed} attempts not ended)`)
      const counters = yield* query<{ scope: string; key: string; running: number; waiting: number }>(db.url, "SELECT scope, key, running, waiting FROM runstream_limits WHERE running <> 0 OR waiting <> 0")
      expect(counters.length === 0, `the keys' counters are back to zero (${counters.slice(0, 5).map((c) => `${c.scope}/${c.key}: running ${c.running}, waiting ${c.waiting}`).join("; ")})`)

      // --- Rate: starts per key in any window of the period, by the starts' own times (those the limit counts).
      const ratedEvents = yield* events([Tasks.Rated.name])
      const startsByKey = new Map<string, { stamps: Array<number>; walls: Array<number> }>()
      const throttledPerRun = new Map<string, number>()
      let startedBeforeUntil = 0
      let pendingUntil: { runId: string; until: number } | undefined
      for (const row of ratedEvents) {
        if (pendingUntil !== undefined && pendingUntil.runId !== row.run_id) pendingUntil = undefined
        if (row.type === "run.started") {
          const starts = startsByKey.get(row.key ?? "") ?? { stamps: [], walls: [] }
          starts.stamps.push(Number(row.stamp_ms))
          starts.walls.push(Number(row.wall_us))
          startsByKey.set(row.key ?? "", starts)
          if (pendingUntil !== undefined && Number(row.stamp_ms) < pendingUntil.until) startedBeforeUntil++
          pendingUntil = undefined
        } else if (row.type === "run.throttled") {
          throttledPerRun.set(row.run_id, (throttledPerRun.get(row.run_id) ?? 0) + 1)
          pendingUntil = { runId: row.run_id, until: new Date(row.until!).getTime() }
        }
      }
      let ratePeak = 0
      let ratePeakWall = 0
      let starts = 0
      // By Postgres's clock: the shortest span holding one start more than the limit (ms).
      let shortestOver = Number.POSITIVE_INFINITY
      for (const { stamps, walls } of startsByKey.values()) {
        starts += stamps.length
        ratePeak = Math.max(ratePeak, peakInWindow(stamps, rate.periodMs))
        ratePeakWall = Math.max(ratePeakWall, peakInWindow(walls, rate.periodMs * 1000))
        const sorted = [...walls].sort((a, b) => a - b)
        for (let i = 0; i + rate.limit < sorted.length; i++) shortestOver = Math.min(shortestOver, (sorted[i + rate.limit]! - sorted[i]!) / 1000)
      }
      const throttledTwice = [...throttledPerRun.values()].filter((n) => n > 1).length
      figures.push([
        "rate (4 per second per key)",
        `${starts} starts of ${ratedCount} runs on ${startsByKey.size} keys; at most ${ratePeak} starts of one key in any second of their own times (the limit's clock), ${ratePeakWall} by the database's clock (${rate.limit + 1} starts within ${shortestOver.toFixed(0)} ms at the closest); ${throttledPerRun.size} runs throttled, ${throttledTwice} of them logged run.throttled more than once, ${startedBeforeUntil} started before their until`
      ])
      // How much earlier than its statement's own time each claim stamped its starts (its clock is read before it gets a connection).
      const staleness = [...limitedEvents, ...ratedEvents].filter((row) => row.type === "run.started" && row.wall_us !== null)
        .map((row) => Number(row.wall_us) / 1000 - Number(row.stamp_ms))
      figures.push([
        "claims' stamps",
        `a run.started's \`at\` (the claimant's clock, read before its statement) precedes the statement's time in Postgres by p50 ${percentile(staleness, 50).toFixed(0)} ms, p99 ${percentile(staleness, 99).toFixed(0)} ms, max ${Math.max(0, ...staleness).toFixed(0)} ms`
      ])
      expect(ratePeak <= rate.limit, `at most ${rate.limit} starts of one key in any ${rate.periodMs} ms (peak ${ratePeak})`)
      expect(throttledPerRun.size > 0, "some rated runs are throttled")
      expect(throttledTwice === 0, `a throttled run logs run.throttled once (${throttledTwice} logged it more than once)`)
      expect(startedBeforeUntil === 0, `a throttled run does not start before its until (${startedBeforeUntil} did)`)

      // --- Debounce: one run per burst; a start that did not fold came after its run's claim.
      const debounced = new Map(
        (yield* query<{ id: string; burst: number; seq: number; started_ms: string; claimed_us: string | null }>(db.url, `
          SELECT r.id, (r.input->>'burst')::int AS burst, (r.input->>'seq')::int AS seq,
            (extract(epoch FROM r.started_at) * 1000)::bigint::text AS started_ms,
            (SELECT (extract(epoch FROM c.at) * 1000000)::bigint::text FROM runstream_events e
             JOIN faults_event_clock c ON c.run_id = e.run_id AND c.seq = e.seq
             WHERE e.run_id = r.id AND e.type = 'run.started' ORDER BY e.seq LIMIT 1) AS claimed_us
          FROM runstream_runs r WHERE r.task = $1`, [Tasks.Debounced.name])).map((row) => [row.id, row])
      )
      const claimedAtMs = (runId: string) => Number(debounced.get(runId)?.claimed_us ?? Number.NaN) / 1000
      let split = 0
      let wrongSplit = 0
      let foldedIntoClaimed = 0
      let badAnswers = 0
      let wrongInput = 0
      let early = 0
      let duringKill = 0
      const burstRuns = new Set<string>()
      for (const burst of bursts) {
        const groups = new Map<string, Array<Burst["starts"][number]>>()
        burst.starts.forEach((start, i) => {
          groups.set(start.runId, [...(groups.get(start.runId) ?? []), start])
          burstRuns.add(start.runId)
          const previous = burst.starts[i - 1]
          const opens = previous === undefined || previous.runId !== start.runId
          if (opens ? start.status !== 201 || start.folded : start.status !== 200 || !start.folded) badAnswers++
          // Not folded: the previous start's run must have been claimed before this start's answer.
          if (previous !== undefined && opens && !(claimedAtMs(previous.runId) <= start.answeredAt)) wrongSplit++
          // Folded: into a run not claimed before this start was sent.
          if (!opens && claimedAtMs(start.runId) < start.sentAt) foldedIntoClaimed++
        })
        if (groups.size > 1) split++
        for (const [runId, mine] of groups) {
          const run = debounced.get(runId)
          const expected = (burst.mode === "trailing" ? mine.at(-1)! : mine[0]!).seq
          if (run === undefined || run.burst !== burst.index || run.seq !== expected) wrongInput++
          if (run === undefined || Number(run.started_ms) < mine.at(-1)!.sentAt + debounceDelayMs) early++
        }
        const from = burst.starts[0]!.sentAt
        if (down.some((d) => d.from < burst.claimedAt && from < d.to)) duringKill++
      }
      const others = [...debounced.keys()].filter((id) => !burstRuns.has(id)).length
      const startsSent = bursts.reduce((n, b) => n + b.starts.length, 0)
      const answerMs = bursts.flatMap((b) => b.starts.map((s) => s.answeredAt - s.sentAt))
      figures.push([
        `debounce (${debounceDelayMs} ms)`,
        `${bursts.length} bursts of 4-8 starts 30 ms apart (${startsSent} starts) on ${debounceKeys} keys, ${duringKill} of them while a worker was down: ${debounced.size} runs; ${split} bursts split by a start answered after the run's claim (${wrongSplit} before it; a POST took p50 ${percentile(answerMs, 50)} ms, max ${Math.max(0, ...answerMs)} ms), ${foldedIntoClaimed} starts folded into a run already claimed, ${badAnswers} answers other than 201 for a new run and 200 folded for the others, ${wrongInput} runs with another input than their last (trailing) or first (leading) start's, ${early} started sooner than ${debounceDelayMs} ms after their last start, ${others} runs of no start`
      ])
      expect(debounced.size === burstRuns.size && others === 0, `every debounced run is the run of starts that answered it (${debounced.size} runs, ${burstRuns.size} answered, ${others} of no start)`)
      expect(wrongSplit === 0, `a burst's start folds into its run unless the run was claimed first (${wrongSplit} did not)`)
      expect(foldedIntoClaimed === 0, `no start folds into a run already claimed (${foldedIntoClaimed} did)`)
      expect(badAnswers === 0, `a start that creates a run answers 201, one folded 200 with folded: true (${badAnswers} did not)`)
      expect(wrongInput === 0, `a debounced run runs with its last (trailing) or first (leading) start's input (${wrongInput} did not)`)
      expect(early === 0, `no debounced run starts sooner than ${debounceDelayMs} ms after its last start (${early} did)`)

      // --- Schedule: one run per tick, from the first tick to the last.
      // created_at: the ticking program's clock as its insert began; inserted: Postgres's, as the row was written.
      const tickRuns = yield* query<{ key: string; created_ms: string; inserted_ms: string | null; ended_ms: string | null; status: string }>(db.url, `
        SELECT r.idempotency_key AS key, (extract(epoch FROM r.created_at) * 1000)::bigint::text AS created_ms,
          (SELECT (extract(epoch FROM c.at) * 1000)::bigint::text FROM faults_event_clock c WHERE c.run_id = r.id AND c.seq = 1) AS inserted_ms,
          (SELECT (extract(epoch FROM c.at) * 1000)::bigint::text FROM faults_event_clock c WHERE c.run_id = r.id AND c.seq = r.last_seq) AS ended_ms,
          r.status
        FROM runstream_runs r WHERE r.task = $1 ORDER BY r.idempotency_key`, [Tasks.Tick.name])
      const ticks = tickRuns.map((row) => tickOf(row.key))
      const missing: Array<string> = []
      let twice = 0
      for (let i = 1; i < ticks.length; i++) {
        const step = ticks[i]! - ticks[i - 1]!
        if (step === 0) twice++
        else if (step !== 1000 && missing.length < 5) {
          // The runs on either side of the gap: when their ticking programs began and wrote them.
          const side = (j: number) => {
            const inserted = tickRuns[j]!.inserted_ms
            const committed = passes.get(ticks[j]! + 1000)
            return `${new Date(ticks[j]!).toISOString().slice(17, 19)}: begun +${Number(tickRuns[j]!.created_ms) - ticks[j]!} ms, written ${
              inserted === null ? "?" : `+${Number(inserted) - ticks[j]!} ms`
            }, its pass committed ${committed === undefined ? "?" : `+${committed - ticks[j]!} ms`}`
          }
          const kills = killed.filter((k) => k.at >= ticks[i - 1]! - 1000 && k.at <= ticks[i]! + 1000).length
          missing.push(`${new Date(ticks[i - 1]!).toISOString()} → ${new Date(ticks[i]!).toISOString()} (${side(i - 1)}; ${side(i)}; ${kills} kills near)`)
        }
      }
      const [schedule] = yield* query<{ skipped: string }>(db.url,
        "SELECT skipped_ticks::text AS skipped FROM runstream_schedules WHERE name = $1", [scheduleName])
      const recorded = yield* query<{ tick: Date; key: string | null }>(db.url, `
        SELECT t.tick, r.idempotency_key AS key FROM runstream_schedule_runs t LEFT JOIN runstream_runs r ON r.id = t.run_id
        WHERE t.schedule = $1`, [scheduleName])
      const misrecorded = recorded.filter((row) => row.key !== `schedule:${scheduleName}:${row.tick.toISOString()}`).length
      const lateness = tickRuns.map((row, i) => Number(row.created_ms) - ticks[i]!)
      // From a tick's run written to its pass's commit (the schedule's row locked meanwhile), as watched.
      const held = tickRuns.flatMap((row, i) => {
        const committed = passes.get(ticks[i]! + 1000)
        return committed === undefined || row.inserted_ms === null ? [] : [committed - Number(row.inserted_ms)]
      })
      // Ticks whose run had already ended (run, in the program that started it or another) before their pass committed.
      const endedFirst = tickRuns.filter((row, i) => {
        const committed = passes.get(ticks[i]! + 1000)
        return committed !== undefined && row.ended_ms !== null && Number(row.ended_ms) < committed
      }).length
      const firstTick = ticks[0] ?? Number.POSITIVE_INFINITY
      const lastTick = ticks.at(-1) ?? 0
      figures.push([
        "schedule (every 1 s)",
        `${ticks.length} ticks from ${new Date(firstTick).toISOString().slice(11, 19)} to ${new Date(lastTick).toISOString().slice(11, 19)}; ${missing.length} gaps, ${twice} ticks with two runs, ${schedule?.skipped ?? "?"} skipped, ${misrecorded} of ${recorded.length} recorded ticks not matching their run; run created after its tick: p50 ${percentile(lateness, 50)} ms, p99 ${percentile(lateness, 99)} ms, max ${Math.max(0, ...lateness)} ms; the pass committed after writing it: p50 ${percentile(held, 50)} ms, max ${Math.max(0, ...held)} ms (watched every 50 ms; ${endedFirst} of ${held.length} runs had ended by then)`
      ])
      expect(ticks.length > 0 && firstTick <= readyAt + 1000, `the schedule ticks from the processes' start (first tick ${new Date(firstTick).toISOString()}, processes ready ${new Date(readyAt).toISOString()})`)
      expect(lastTick >= loadEnded, "the schedule ticks until after the load")
      expect(missing.length === 0 && twice === 0, `one run per tick, none missing (${missing.join(", ")}; ${twice} twice)`)
      expect(schedule?.skipped === "0", `no tick skipped (${schedule?.skipped ?? "no schedule"})`)
      expect(misrecorded === 0, `every recorded tick's run is the run of its key (${misrecorded} are not)`)

      // --- Kills: every run a dead worker held is reclaimed, within lease + 2 s.
      const { heldTotal, notReclaimed, perKill } = yield* reclaimsAfterKills(db.url, killed)
      const bound = leaseMs + 2000
      const heldLimited = killed.map((kill) => kill.held.filter((h) => limitedTasks.includes(h.task)).length)
      const heldByQueue = killed.map((kill) => kill.held.filter((h) => h.task === Tasks.QueueLimited.name).length)
      figures.push(["kills", `${killed.length}; runs held by the dead worker: ${heldTotal} in all, of limited keys ${heldLimited.join(", ")} (by the queue's limit ${heldByQueue.join(", ")})`])
      figures.push(["kill → reclaim", perKill.length === 0 ? "n/a" : `p50 ${seconds(percentile(perKill, 50))}, max ${seconds(Math.max(...perKill))} (bound: lease + 2 s = ${seconds(bound)}); ${notReclaimed} held runs not reclaimed`])
      figures.push(["worker restart (kill to ready)", restarts.length === 0 ? "n/a" : `${restarts.length} of ${killed.length} before the checks: p50 ${seconds(percentile(restarts, 50))}, max ${seconds(Math.max(...restarts))}`])
      figures.push(["drain after the load", seconds(drainedMs)])
      expect(killed.length > 0, "workers were killed")
      expect(heldLimited.some((n) => n > 0), "a killed worker held runs of a limited key")
      expect(notReclaimed === 0, `every run held by a killed worker is reclaimed (${notReclaimed} were not)`)
      expect(perKill.length === 0 || Math.max(...perKill) <= bound, `kill to reclaim within lease + 2 s = ${seconds(bound)} (max ${seconds(Math.max(...perKill))})`)

      return {
        id: 8,
        name: "Flow control under faults",
        load: `${limitedCount} runs on 20 keys (limit 2: 10 keys by the task's, 10 by the queue's), ${ratedCount} on ${ratedKeys} keys (4/s), ${bursts.length} debounce bursts (${startsSent} starts), a 1 s schedule (${ticks.length} ticks); 1 server, 3 workers`,
        faults: `${killed.length} × kill -9 of the worker holding most limited runs, every ≥ ${killEveryMs / 1000} s, restarted`,
        lost: String(check.lost),
        duplicated: `${check.gaps} gaps/dup seqs, ${check.multiTerminal} multi-terminal, ${twice} ticks run twice`,
        recovery: perKill.length === 0 ? "n/a" : `max ${seconds(Math.max(...perKill))} kill→reclaim (lease 2 s)`,
        passed: failures.length === 0,
        durationMs: Date.now() - began,
        figures,
        failures
      }
    }).pipe(asFault)
}
