/**
 * The claim statement's cost, two versions side by side (issue 21): this
 * tree's claim, plain and traced (the traceparent returned by the claim), and
 * another tree's (`--base DIR`: its `src/queue/Claiming.ts`, and with
 * `--lookup` its `Tracing.traceparentsOf` after each claim, the first
 * version's separate read). Interleaved batch by batch on one fresh database
 * of `DATABASE_URL`'s server, each run with a stored traceparent; prints the
 * wall time per claim (median, p90) and this process's CPU per claimed run.
 *
 *   DATABASE_URL=postgres://... npx tsx scripts/claim-cost.ts --base /path/to/tree [--rounds 100] [--batch 50]
 */
import { SqlClient } from "@effect/sql"
import { NodeRuntime } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import type { RunId } from "../src/domain/Ids.ts"
import * as Claiming from "../src/queue/Claiming.ts"
import { Runs } from "../src/Runs.ts"
import { makeDatabase, Noop, percentile, programLayer, sortNumbers } from "./bench/common.ts"

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback
}
const base = resolve(arg("base", "."))
const rounds = Number(arg("rounds", "100"))
const batch = Number(arg("batch", "50"))
const lookup = process.argv.includes("--lookup")

type ClaimFn = (sql: SqlClient.SqlClient, options: Claiming.ClaimOptions) => Effect.Effect<ReadonlyArray<Claiming.Claim>, unknown>

const program = Effect.gen(function*() {
  const baseClaiming = (yield* Effect.promise(() => import(pathToFileURL(`${base}/src/queue/Claiming.ts`).href))) as { claim: ClaimFn }
  const baseTracing = (yield* Effect.promise(() => import(pathToFileURL(`${base}/src/tracing/Tracing.ts`).href))) as {
    traceparentsOf?: (ids: ReadonlyArray<RunId>) => Effect.Effect<Map<RunId, string>, never, SqlClient.SqlClient>
  }
  const db = yield* makeDatabase(process.env["DATABASE_URL"]!)
  const context = yield* Layer.build(programLayer({ url: db.url, tasks: [Noop], bus: "memory", workers: false }))
  const runs = Context.get(context, Runs)
  const sql = Context.get(context, SqlClient.SqlClient)
  const variants: Array<{ name: string; claim: (options: Claiming.ClaimOptions) => Effect.Effect<number, unknown> }> = [
    { name: "base claim", claim: (options) => Effect.map(baseClaiming.claim(sql, options), (claims) => claims.length) },
    ...(lookup && baseTracing.traceparentsOf !== undefined
      ? [{
        name: "base claim + traceparent lookup",
        claim: (options: Claiming.ClaimOptions) =>
          Effect.flatMap(baseClaiming.claim(sql, options), (claims) =>
            Effect.as(
              Effect.provideService(baseTracing.traceparentsOf!(claims.map((claim) => claim.runId)), SqlClient.SqlClient, sql),
              claims.length
            ))
      }]
      : []),
    { name: "this claim", claim: (options) => Effect.map(Claiming.claim(sql, options), (claims) => claims.length) },
    {
      name: "this claim, traced",
      claim: (options) => Effect.map(Claiming.claim(sql, { ...options, traced: true }), (claims) => claims.length)
    }
  ]
  const total = rounds * batch * variants.length
  for (let started = 0; started < total; started += 1000) {
    yield* runs.startMany(Array.from({ length: Math.min(1000, total - started) }, (_, i) => ({ task: Noop.name, input: i })))
  }
  yield* sql`UPDATE runstream_runs SET traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'`
  yield* sql`VACUUM ANALYZE runstream_runs, runstream_jobs`
  const times = variants.map(() => [] as Array<number>)
  const cpu = variants.map(() => 0)
  const claimed = variants.map(() => 0)
  for (let round = 0; round < rounds; round++) {
    for (const [i, variant] of variants.entries()) {
      const options = { workerId: `w-${i}`, queues: ["default"], limit: batch, leaseMs: 600_000 }
      const before = process.cpuUsage()
      const start = performance.now()
      claimed[i]! += yield* variant.claim(options)
      times[i]!.push(performance.now() - start)
      const used = process.cpuUsage(before)
      cpu[i]! += used.user + used.system
    }
  }
  for (const [i, variant] of variants.entries()) {
    const sorted = sortNumbers(times[i]!)
    console.log(
      `${variant.name.padEnd(34)} ${claimed[i]} runs: per claim of ${batch} p50 ${percentile(sorted, 50).toFixed(2)} ms, p90 ${
        percentile(sorted, 90).toFixed(2)
      } ms; CPU here ${(cpu[i]! / claimed[i]!).toFixed(1)} µs per run`
    )
  }
})

NodeRuntime.runMain(Effect.scoped(program))
