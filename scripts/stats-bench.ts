/**
 * Times `GET /v1/stats` on a database of many runs:
 * `npx tsx scripts/stats-bench.ts [--runs 1000000] [--span-hours 720] [--requests 30]`.
 *
 * Creates a database on `DATABASE_URL`'s server (default the local one,
 * postgres://postgres@127.0.0.1:5432/postgres), migrates it, fills it with
 * `--runs` ended runs created evenly over the last `--span-hours` (in id order,
 * as starts insert them), plus a backlog of 10,000 waiting and 100 running
 * runs, analyzes it, serves the API on it, and times the endpoint
 * (sequential requests after 3 of warm-up). Prints the plans of the two
 * statements, the timings, and the load average; drops the database after.
 */
import { HttpServer } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { loadavg } from "node:os"
import { parseArgs } from "node:util"
import * as Demo from "../src/demo/tasks.ts"
import * as Server from "../src/http/Server.ts"
import { admin, makeDatabase, median, percentile, programLayer, sortNumbers } from "./bench/common.ts"

const { values: flags } = parseArgs({
  options: {
    runs: { type: "string", default: "1000000" },
    "span-hours": { type: "string", default: "720" },
    requests: { type: "string", default: "30" }
  }
})
const runs = Number(flags.runs)
const spanMs = Number(flags["span-hours"]) * 3_600_000
const requests = Number(flags.requests)
const serverUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
const chunk = 100_000

/** A UUIDv7-shaped id from the creation time `c` (timestamptz) and a random part from `i`. */
const idOf = `(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' || substr(r, 4, 3) || '-' || substr(r, 7, 12))::uuid`
const parts = `lpad(to_hex((extract(epoch FROM c) * 1000)::bigint), 12, '0') AS h, md5(i::text) AS r`

const fill = (url: string) =>
  Effect.gen(function*() {
    const now = Date.now()
    const started = performance.now()
    for (let from = 1; from <= runs; from += chunk) {
      const to = Math.min(runs, from + chunk - 1)
      // Ended runs, created in id order over the span; 2 % failed, 1 % cancelled, 20 tasks, 5 queues.
      yield* admin(url, `
        INSERT INTO runstream_runs (id, task, queue, status, input, output, max_attempts, attempt, created_at, run_at,
          started_at, finished_at, last_seq)
        SELECT ${idOf}, 'task.' || (i % 20), 'queue.' || (i % 5),
          CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 100 = 1 THEN 'cancelled' ELSE 'succeeded' END,
          '{"n": 1}', '{"ok": true}', 3, 1, c, c, c + w, least(c + w + d, $1::timestamptz), 3
        FROM (
          SELECT i, c, w, d, ${parts} FROM (
            SELECT i, $1::timestamptz - ($2::double precision * (1 - i::double precision / $3)) * interval '1 ms' AS c,
              random() * 50 * interval '1 ms' AS w, random() * 2000 * interval '1 ms' AS d
            FROM generate_series($4::integer, $5::integer) i
          ) s
        ) t`, [new Date(now), spanMs, runs, from, to])
    }
    // The backlog: 10,000 waiting (due over the last 10 minutes) and 100 running, in the queue's table too.
    yield* admin(url, `
      WITH live AS (
        SELECT ${idOf} AS id, 'task.' || (i % 20) AS task, 'queue.' || (i % 5) AS queue, i <= 100 AS running, c
        FROM (SELECT i, c, ${parts} FROM (
          SELECT i, $1::timestamptz - (10000 - i) * interval '60 ms' AS c FROM generate_series(1, 10100) i) s) t
      ), runs AS (
        INSERT INTO runstream_runs (id, task, queue, status, input, max_attempts, attempt, created_at, run_at, started_at, last_seq)
        SELECT id, task, queue, CASE WHEN running THEN 'running' ELSE 'queued' END, '{"n": 1}', 3,
          CASE WHEN running THEN 1 ELSE 0 END, c, c, CASE WHEN running THEN c END, CASE WHEN running THEN 2 ELSE 1 END FROM live
      )
      INSERT INTO runstream_jobs (run_id, queue, task, priority, run_at, attempt, locked_by, locked_until)
      SELECT id, queue, task, 0, c, CASE WHEN running THEN 1 ELSE 0 END, CASE WHEN running THEN 'bench' END,
        CASE WHEN running THEN $1::timestamptz + interval '1 hour' END FROM live`, [new Date(now)])
    yield* admin(url, "VACUUM ANALYZE runstream_runs")
    yield* admin(url, "VACUUM ANALYZE runstream_jobs")
    const [size] = yield* admin(url, "SELECT pg_size_pretty(pg_total_relation_size('runstream_runs')) AS size, count(*)::integer AS n FROM runstream_runs")
    console.log(`filled ${size!["n"]} runs (${size!["size"]}, runstream_runs with its indexes) in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  })

/** The plans of the statements `Stats.read` runs, with the same shape and bounds. */
const explain = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const now = Date.now()
  const since = new Date(Math.floor(now / 60_000) * 60_000 - 59 * 60_000)
  const time = Math.max(0, now - 24 * 3_600_000).toString(16).padStart(12, "0")
  const first = `${time.slice(0, 8)}-${time.slice(8, 12)}-0000-0000-000000000000`
  const plans = [
    yield* sql<{ "QUERY PLAN": string }>`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
      SELECT task, queue, locked_until IS NOT NULL AS running, run_at <= now() AS due, count(*)::integer, min(run_at)
      FROM runstream_jobs GROUP BY 1, 2, 3, 4`,
    yield* sql<{ "QUERY PLAN": string }>`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
      WITH ended AS MATERIALIZED (
        SELECT * FROM (
          SELECT task, status, run_at, started_at, finished_at, row_number() OVER (ORDER BY id DESC) AS n,
            (finished_at >= ${since} AND status IN ('succeeded', 'failed', 'cancelled')) IS TRUE AS ended
          FROM runstream_runs WHERE id >= ${first}::uuid ORDER BY id DESC LIMIT 100001
        ) recent WHERE ended OR n > 100000
      )
      SELECT EXISTS (SELECT 1 FROM ended WHERE n > 100000),
        (SELECT json_agg(t) FROM (SELECT task, status, count(*) FROM ended WHERE ended GROUP BY 1, 2) t),
        (SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)) FROM ended WHERE ended)`
  ]
  for (const plan of plans) console.log(plan.map((row) => row["QUERY PLAN"]).join("\n"), "\n")
})

const time = (base: string) =>
  Effect.promise(async () => {
    const get = async () => {
      const t0 = performance.now()
      const response = await fetch(`${base}/v1/stats`)
      const body = await response.json() as { window: { truncated: boolean }; runs: Array<{ count: number }> }
      if (response.status !== 200) throw new Error(`status ${response.status}`)
      return { ms: performance.now() - t0, body }
    }
    for (let i = 0; i < 3; i++) await get()
    const cpu0 = process.cpuUsage()
    const times: Array<number> = []
    let last: Awaited<ReturnType<typeof get>>["body"] | undefined
    for (let i = 0; i < requests; i++) {
      const { body, ms } = await get()
      times.push(ms)
      last = body
    }
    const cpu = process.cpuUsage(cpu0)
    const sorted = sortNumbers(times)
    console.log(
      `GET /v1/stats x${requests}: median ${median(sorted).toFixed(1)} ms, p95 ${percentile(sorted, 95).toFixed(1)} ms, ` +
        `min ${sorted[0]!.toFixed(1)} ms; server process CPU ${((cpu.user + cpu.system) / 1000 / requests).toFixed(2)} ms per request; ` +
        `truncated ${last!.window.truncated}; load average ${loadavg().map((n) => n.toFixed(1)).join(" ")}`
    )
  })

const main = Effect.scoped(Effect.gen(function*() {
  const db = yield* makeDatabase(serverUrl)
  console.log(`database ${db.name}: ${runs} runs over ${flags["span-hours"]} h`)
  const program = Layer.effect(HttpServer.HttpServer, HttpServer.HttpServer).pipe(
    Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1" })),
    Layer.provideMerge(programLayer({ url: db.url, tasks: Demo.all, bus: "memory", workers: false }))
  )
  yield* Effect.gen(function*() {
    yield* fill(db.url)
    yield* explain
    yield* time(yield* HttpServer.addressFormattedWith(Effect.succeed))
  }).pipe(Effect.provide(program))
}))

main.pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)), NodeRuntime.runMain)
