#!/usr/bin/env node
// Runs the whole suite N times in a row (default 20) and stops at the first
// failure: a test that passed once is not stable. Usage:
//   npm run test:repeat -- [times] [vitest args...]
import { spawnSync } from "node:child_process"

const [timesArg, ...rest] = process.argv.slice(2)
const times = Number.parseInt(timesArg ?? "20", 10)
if (!Number.isInteger(times) || times < 1) {
  console.error(`usage: npm run test:repeat -- [times] [vitest args...] (got '${timesArg}')`)
  process.exit(2)
}
const started = Date.now()
for (let i = 1; i <= times; i++) {
  const t0 = Date.now()
  const run = spawnSync("npx", ["vitest", "run", "--reporter=dot", ...rest], { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" })
  const seconds = ((Date.now() - t0) / 1000).toFixed(1)
  if (run.status !== 0) {
    process.stdout.write(run.stdout)
    process.stderr.write(run.stderr)
    console.error(`repeat ${i}/${times}: FAILED after ${seconds}s`)
    process.exit(1)
  }
  const summary = run.stdout.split("\n").find((line) => line.trim().startsWith("Tests")) ?? ""
  console.log(`repeat ${i}/${times}: ok in ${seconds}s  ${summary.trim()}`)
}
console.log(`${times} passed, 0 failed (${((Date.now() - started) / 1000).toFixed(0)}s)`)
