/**
 * A backlog for the retention: `runs` finished runs (each with the three
 * events of a drained run: queued, started, succeeded) created and finished
 * `ageDays` ago, written by two `generate_series` statements in batches.
 * Their ids are UUIDv7 of their creation time, one millisecond apart, as the
 * retention's walk expects.
 *
 *   DATABASE_URL=postgres://... npx tsx scripts/retention-backlog.ts [--runs N] [--measure]
 *
 * With `--measure`: the table sizes, then one retention pass (timed), the
 * sizes again, a VACUUM, and the sizes after it (the figures of
 * docs/decisions.md). The database is migrated first if it is not.
 * The bench seeds the same backlog for `--retention-backlog N`.
 */
import pg from "pg"

/** The statements that write `runs` old finished runs, `batch` at a time (run them in order). */
export const backlogStatements = (options: { readonly runs: number; readonly ageDays?: number; readonly batch?: number }) => {
  const batch = options.batch ?? 100_000
  const base = Date.now() - (options.ageDays ?? 30) * 24 * 60 * 60 * 1000
  const statements: Array<string> = []
  for (let from = 0; from < options.runs; from += batch) {
    const to = Math.min(options.runs, from + batch) - 1
    // 12 digits of time, the version 7, 3 random digits, the variant 8, 15 random digits.
    statements.push(`
      WITH runs AS (
        INSERT INTO runstream_runs (id, task, queue, status, input, output, max_attempts, attempt, created_at, run_at,
          started_at, finished_at, last_seq)
        SELECT (lpad(to_hex(${base}::bigint + g), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
          'backlog.task', 'default', 'succeeded', '{"n": 1}', '{"ok": true}', 3, 1, t, t, t, t, 3
        FROM generate_series(${from}, ${to}) AS g,
          LATERAL (SELECT md5(g::text || random()::text) AS h, to_timestamp((${base}::bigint + g) / 1000.0) AS t) x
        RETURNING id, created_at
      )
      INSERT INTO runstream_events (run_id, seq, type, data, at)
      SELECT id, s, (ARRAY['run.queued', 'run.started', 'run.succeeded'])[s],
        CASE s WHEN 1 THEN '{"task": "backlog.task", "queue": "default"}'::jsonb
          WHEN 2 THEN '{"attempt": 1}'::jsonb ELSE '{"attempt": 1, "output": {"ok": true}}'::jsonb END,
        created_at
      FROM runs, generate_series(1, 3) AS s`)
  }
  return statements
}

/** The sizes of the run and event tables, with their indexes and TOAST, in MB, and their dead tuples. */
export const sizesQuery = `
  SELECT relname AS table, round(pg_total_relation_size(relid) / 1048576.0, 1) AS mb,
    n_live_tup AS live, n_dead_tup AS dead
  FROM pg_stat_user_tables WHERE relname IN ('runstream_runs', 'runstream_events') ORDER BY relname`

const main = async () => {
  const args = process.argv.slice(2)
  const runsAt = args.indexOf("--runs")
  const runs = runsAt === -1 ? 1_000_000 : Number(args[runsAt + 1])
  const url = process.env["DATABASE_URL"]
  if (url === undefined || !Number.isInteger(runs) || runs < 1) {
    console.error("usage: DATABASE_URL=postgres://... npx tsx scripts/retention-backlog.ts [--runs N] [--measure]")
    process.exit(2)
  }
  const { measurePass, migrate } = await import("./retention-pass.ts")
  await migrate(url)
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const started = Date.now()
    for (const statement of backlogStatements({ runs })) await client.query(statement)
    console.log(`seeded ${runs} runs (${3 * runs} events) in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    if (!args.includes("--measure")) return
    await client.query("ANALYZE runstream_runs, runstream_events")
    console.table((await client.query(sizesQuery)).rows)
    // The retention itself, as a program runs it (one process, all batches, no pauses).
    const pass = await measurePass(url)
    console.log(`retention pass: ${pass.runs} runs, ${pass.events} events, ${pass.batches} statements, ${pass.seconds.toFixed(1)} s`)
    await client.query("ANALYZE runstream_runs, runstream_events")
    console.table((await client.query(sizesQuery)).rows)
    const vacuumStarted = Date.now()
    await client.query("VACUUM runstream_runs, runstream_events")
    console.log(`VACUUM: ${((Date.now() - vacuumStarted) / 1000).toFixed(1)} s`)
    console.table((await client.query(sizesQuery)).rows)
  } finally {
    await client.end()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error) => {
    console.error(error)
    process.exit(1)
  })
}
