/**
 * What sleeping runs cost (issue 20, durable sleep): on a fresh database
 * (`TEST_DATABASE_URL`, through the test kit), one program with a pool of
 * workers drains `--runs` no-op runs, then puts `--sleepers` runs to sleep
 * (`ctx.sleep` of an hour), then drains `--runs` no-op runs again beside
 * them, then once more (noise). It prints, for each drain, its rate and the
 * process's CPU per run, and, while the sleepers wait, the jobs locked (the
 * worker places they hold) and the database connections open.
 *
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx scripts/sleepers.ts --sleepers 10000 --runs 5000
 */
import { SqlClient } from "@effect/sql"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Schedule, Schema } from "effect"
import { Echo } from "../src/demo/tasks.ts"
import { Runs } from "../src/Runs.ts"
import * as Task from "../src/Task.ts"
import { RunstreamTest } from "../src/testing/index.ts"

const argument = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at === -1 ? fallback : Number(process.argv[at + 1])
}
const sleepers = argument("sleepers", 10_000)
const drained = argument("runs", 5_000)
const concurrency = argument("concurrency", 10)

const Sleeper = Task.make("bench.sleeper", {
  input: Schema.Null,
  output: Schema.Null,
  run: (_, ctx) => Effect.as(ctx.sleep("nap", "1 hour"), null)
})

/** Waits until `count` returns at least `target`, looking every 20 ms. */
const until = <E>(count: Effect.Effect<number, E, SqlClient.SqlClient>, target: number) =>
  Effect.repeat(count, { until: (n) => n >= target, schedule: Schedule.spaced("20 millis") })

const countWhere = (status: string, task: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_runs WHERE status = ${status} AND task = ${task}`,
      ([row]) => row!.n
    ))

const startInBatches = (task: string, n: number) =>
  Effect.flatMap(Runs, (runs) =>
    Effect.forEach(
      Array.from({ length: Math.ceil(n / 1000) }, (_, b) => Math.min(1000, n - b * 1000)),
      (size) => runs.startMany(Array.from({ length: size }, () => ({ task, input: null }))),
      { discard: true }
    ))

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  let succeededSoFar = 0
  const drain = (label: string) =>
    Effect.gen(function*() {
      const cpu = process.cpuUsage()
      const started = performance.now()
      yield* startInBatches(Echo.name, drained)
      succeededSoFar += drained
      yield* until(countWhere("succeeded", Echo.name), succeededSoFar)
      const seconds = (performance.now() - started) / 1000
      const used = process.cpuUsage(cpu)
      console.log(
        `${label}: ${drained} runs in ${seconds.toFixed(2)} s, ${(drained / seconds).toFixed(0)} runs/s, ` +
          `CPU ${((used.user + used.system) / 1000 / drained).toFixed(3)} ms/run`
      )
    })

  yield* drain("drain, no sleepers")

  const asleep = performance.now()
  yield* startInBatches(Sleeper.name, sleepers)
  yield* until(countWhere("waiting", Sleeper.name), sleepers)
  console.log(`${sleepers} runs asleep in ${((performance.now() - asleep) / 1000).toFixed(2)} s`)
  const [held] = yield* sql<{ locked: number; jobs: number }>`
    SELECT count(*) FILTER (WHERE locked_until IS NOT NULL)::integer AS locked, count(*)::integer AS jobs FROM runstream_jobs`
  const [connections] = yield* sql<{ n: number }>`
    SELECT count(*)::integer AS n FROM pg_stat_activity WHERE datname = current_database()`
  console.log(`while they sleep: ${held!.jobs} jobs, ${held!.locked} locked (worker places held), ${connections!.n} connections to the database`)

  yield* drain(`drain beside ${sleepers} sleepers`)
  yield* drain(`drain beside ${sleepers} sleepers, again`)
  const [still] = yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_runs WHERE status = 'waiting'`
  console.log(`still waiting at the end: ${still!.n}`)
}).pipe(
  Effect.provide(RunstreamTest.layer({ tasks: [Echo, Sleeper], workers: { concurrency }, maxConnections: 10 }))
)

NodeRuntime.runMain(program)
