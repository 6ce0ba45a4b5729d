/**
 * Runstream's fault and load suite: `npm run test:faults [-- flags]`.
 * See docs/reliability.md for what each scenario does and the last figures.
 *
 * Every scenario runs real processes (the production layers, composed in
 * scripts/faults/node.ts) on a fresh database of a Postgres server that the
 * suite starts for itself (embedded, loopback only), injects its faults, then
 * checks the guarantees in SQL and prints one row of the table. Bounded in
 * count and time; `--quick` is the short version CI runs.
 *
 * Flags:
 *   --quick              small loads and few faults (CI); default is the full version
 *   --only 1,3,7         run these scenarios only
 *   --database-url URL   create the scenarios' databases on this server instead
 *                        (scenario 2 always restarts the suite's own server)
 *   --write-doc          write the table and figures into docs/reliability.md
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { availableParallelism, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { Duration, Effect, Exit, Layer } from "effect"
import { FaultError, here } from "./faults/common.ts"
import { fileLogger, type Scenario, type ScenarioContext } from "./faults/harness.ts"
import * as Postgres from "./faults/postgres.ts"
import { markdown, type ScenarioResult, text } from "./faults/report.ts"
import { scenario as s1 } from "./faults/s1-worker-kill.ts"
import { scenario as s2 } from "./faults/s2-db-restart.ts"
import { scenario as s3 } from "./faults/s3-relay.ts"
import { scenario as s4 } from "./faults/s4-network.ts"
import { scenario as s5 } from "./faults/s5-many-clients.ts"
import { scenario as s6 } from "./faults/s6-fuzz.ts"
import { scenario as s7 } from "./faults/s7-poison.ts"
import { scenario as s8 } from "./faults/s8-flow-control.ts"
import { scenario as s9 } from "./faults/s9-workflows.ts"

const scenarios: ReadonlyArray<Scenario> = [s1, s2, s3, s4, s5, s6, s7, s8, s9]

interface Flags {
  readonly quick: boolean
  readonly only: ReadonlySet<number> | undefined
  readonly databaseUrl: string | undefined
  readonly writeDoc: boolean
}

const parseFlags = (argv: ReadonlyArray<string>): Flags => {
  let quick = false
  let only: Set<number> | undefined
  let databaseUrl: string | undefined
  let writeDoc = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--quick") quick = true
    else if (arg === "--write-doc") writeDoc = true
    else if (arg === "--only") only = new Set(argv[++i]!.split(",").map(Number))
    else if (arg === "--database-url") databaseUrl = argv[++i]
    else {
      console.error(`unknown flag ${arg}\n${readFileSync(new URL(import.meta.url), "utf8").split("\n").filter((l) => l.startsWith(" *   ")).join("\n")}`)
      process.exit(2)
    }
  }
  return { quick, only, databaseUrl, writeDoc }
}

/** The longest a scenario may take before it is stopped and failed. */
const scenarioTimeout = (quick: boolean) => Duration.minutes(quick ? 3 : 15)

/**
 * The longest the whole suite may take: a scenario still running then is
 * stopped and failed, and the ones after it are not started (CI runs the
 * quick version inside its own 15 minutes).
 */
const suiteBudget = (quick: boolean) => Duration.minutes(quick ? 9 : 90)

/** The row of a scenario that gave no figures. */
const notRun = (scenario: Scenario): ScenarioResult => ({
  id: scenario.id,
  name: scenario.name,
  load: "-",
  faults: "-",
  lost: "?",
  duplicated: "?",
  recovery: "?",
  passed: false,
  durationMs: 0,
  figures: [],
  failures: []
})

const runScenario = (scenario: Scenario, context: ScenarioContext, suiteDeadline: number) =>
  Effect.gen(function*() {
    const began = Date.now()
    console.log(`\n== scenario ${scenario.id}: ${scenario.name} (${context.quick ? "quick" : "full"})`)
    const timeout = Duration.millis(Math.max(0, Math.min(Duration.toMillis(scenarioTimeout(context.quick)), suiteDeadline - began)))
    const exit = yield* scenario.run(context).pipe(
      Effect.scoped,
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new FaultError({
            message: `did not end within ${Duration.format(timeout)}${Duration.lessThan(timeout, scenarioTimeout(context.quick)) ? ` (the rest of the suite's ${Duration.format(suiteBudget(context.quick))})` : ""}`
          })
      }),
      Effect.exit
    )
    const result: ScenarioResult = Exit.isSuccess(exit) ? exit.value : {
      ...notRun(scenario),
      durationMs: Date.now() - began,
      failures: [`the scenario could not complete: ${exit.cause._tag === "Fail" ? exit.cause.error.message : String(exit.cause)}`]
    }
    console.log(`   ${result.passed ? "pass" : "FAIL"} in ${(result.durationMs / 1000).toFixed(1)} s`)
    for (const failure of result.failures) console.log(`   FAILED: ${failure}`)
    return result
  })

/**
 * Writes the figures into docs/reliability.md, between its markers. The rows
 * of scenarios not run this time are kept (with the run they came from): the
 * results travel in the document itself, base64 JSON in a comment.
 */
const writeDoc = (results: ReadonlyArray<ScenarioResult>, header: string) => {
  const path = join(here, "..", "..", "docs", "reliability.md")
  const start = "<!-- figures:start -->"
  const end = "<!-- figures:end -->"
  let doc = ""
  try {
    doc = readFileSync(path, "utf8")
  } catch {
    doc = `# Reliability\n\n${start}\n${end}\n`
  }
  const from = doc.indexOf(start)
  const to = doc.indexOf(end)
  const previous = from >= 0 && to > from ? /<!-- results: ([A-Za-z0-9+/=]+) -->/.exec(doc.slice(from, to)) : null
  const stored: Array<{ readonly result: ScenarioResult; readonly run: string }> = previous === null
    ? []
    : JSON.parse(Buffer.from(previous[1]!, "base64").toString("utf8"))
  const ran = new Set(results.map((r) => r.id))
  const merged = [...stored.filter((s) => !ran.has(s.result.id)), ...results.map((result) => ({ result, run: header }))]
    .sort((a, b) => a.result.id - b.result.id)
  const runs = [...new Set(merged.map((m) => m.run))]
  const lines = runs.map((run) => {
    const ids = merged.filter((m) => m.run === run).map((m) => m.result.id)
    return `${runs.length === 1 ? "" : `Scenario${ids.length > 1 ? "s" : ""} ${ids.join(", ")}: `}${run}`
  })
  const json = Buffer.from(JSON.stringify(merged)).toString("base64")
  const figures = `${start}\n${markdown(merged.map((m) => m.result), lines)}\n\n<!-- results: ${json} -->\n${end}`
  doc = from >= 0 && to > from ? `${doc.slice(0, from)}${figures}${doc.slice(to + end.length)}` : `${doc}\n${figures}\n`
  writeFileSync(path, doc)
  console.log(`\nwrote ${path}`)
}

const main = Effect.gen(function*() {
  const flags = parseFlags(process.argv.slice(2))
  const began = Date.now()
  const loadBefore = loadavg()[0]!
  const logDir = mkdtempSync(join(tmpdir(), "runstream-faults-logs-"))
  const postgres = yield* Postgres.start
  const context: ScenarioContext = {
    serverUrl: flags.databaseUrl ?? postgres.url,
    postgres,
    quick: flags.quick,
    logDir
  }
  console.log(`runstream fault suite (${flags.quick ? "quick" : "full"}); processes' logs in ${logDir}`)
  const selected = scenarios.filter((s) => flags.only === undefined || flags.only.has(s.id))
  const results: Array<ScenarioResult> = []
  const suiteDeadline = began + Duration.toMillis(suiteBudget(flags.quick))
  for (const scenario of selected) {
    if (Date.now() >= suiteDeadline) {
      console.log(`\n== scenario ${scenario.id}: ${scenario.name}: not started, the suite's ${Duration.format(suiteBudget(flags.quick))} are spent`)
      results.push({
        ...notRun(scenario),
        failures: [`not started: the suite's ${Duration.format(suiteBudget(flags.quick))} were spent`]
      })
      continue
    }
    results.push(yield* runScenario(scenario, context, suiteDeadline).pipe(Effect.provide(fileLogger(join(logDir, `driver-s${scenario.id}.log`)))))
  }
  const totalMs = Date.now() - began
  const header = [
    `Run of ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC, ${flags.quick ? "quick (`--quick`)" : "full"} version, ` +
    `${(totalMs / 1000).toFixed(0)} s in all, Node ${process.version}, ${flags.databaseUrl === undefined ? "embedded Postgres" : "Postgres at --database-url"}, ` +
    `${availableParallelism()} CPU cores, load average ${loadBefore.toFixed(1)} at the start and ${loadavg()[0]!.toFixed(1)} at the end (other work on the machine shares them).`
  ]
  console.log(`\n${text(results, header.join(" "))}`)
  if (flags.writeDoc) writeDoc(results, header.join(" "))
  const failed = results.filter((r) => !r.passed)
  console.log(`\n${failed.length === 0 ? "all scenarios passed" : `${failed.length} scenario(s) FAILED: ${failed.map((r) => r.id).join(", ")}`} in ${(totalMs / 1000).toFixed(0)} s; logs in ${logDir}`)
  return failed.length === 0
})

Effect.runPromise(main.pipe(Effect.scoped, Effect.provide(Layer.empty))).then(
  (ok) => process.exit(ok ? 0 : 1),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
