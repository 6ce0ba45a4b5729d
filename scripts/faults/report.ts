/**
 * The suite's report: one row per scenario (scenario, load, faults injected,
 * lost, duplicated, recovery time, verdict), the figures of each scenario
 * below it, printed as text and written as Markdown to docs/reliability.md.
 */

export interface ScenarioResult {
  readonly id: number
  readonly name: string
  readonly load: string
  readonly faults: string
  readonly lost: string
  readonly duplicated: string
  readonly recovery: string
  readonly passed: boolean
  readonly durationMs: number
  /** Every figure the scenario measured, in order. */
  readonly figures: ReadonlyArray<ReadonlyArray<string>>
  /** The checks that failed, in words. */
  readonly failures: ReadonlyArray<string>
}

const columns = ["#", "scenario", "load", "faults injected", "lost", "duplicated", "recovery time", "result"] as const

const cells = (r: ScenarioResult): ReadonlyArray<string> => [
  String(r.id),
  r.name,
  r.load,
  r.faults,
  r.lost,
  r.duplicated,
  r.recovery,
  r.passed ? "pass" : "FAIL"
]

const wrap = (text: string, width: number): Array<string> => {
  const lines: Array<string> = []
  let line = ""
  for (const word of text.split(" ")) {
    if (line.length > 0 && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else {
      line = line.length === 0 ? word : `${line} ${word}`
    }
  }
  lines.push(line)
  return lines
}

/** A plain-text table for the terminal, long cells wrapped. */
export const text = (results: ReadonlyArray<ScenarioResult>, header: string): string => {
  const widths = [2, 22, 30, 34, 6, 10, 14, 6]
  const row = (values: ReadonlyArray<string>) => {
    const wrapped = values.map((v, i) => wrap(v, widths[i]!))
    const height = Math.max(...wrapped.map((w) => w.length))
    const out: Array<string> = []
    for (let l = 0; l < height; l++) {
      out.push(wrapped.map((w, i) => (w[l] ?? "").padEnd(widths[i]!)).join(" | ").trimEnd())
    }
    return out.join("\n")
  }
  const rule = widths.map((w) => "-".repeat(w)).join("-+-")
  const lines = [header, "", row(columns), rule]
  for (const r of results) lines.push(row(cells(r)), rule)
  for (const r of results) {
    lines.push("", `${r.id}. ${r.name} — ${r.passed ? "pass" : "FAIL"} in ${(r.durationMs / 1000).toFixed(1)} s`)
    for (const [name, value] of r.figures) lines.push(`   ${name}: ${value}`)
    for (const failure of r.failures) lines.push(`   FAILED: ${failure}`)
  }
  return lines.join("\n")
}

const escape = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ")

/** The Markdown of docs/reliability.md's figures section. */
export const markdown = (results: ReadonlyArray<ScenarioResult>, header: ReadonlyArray<string>): string => {
  const lines = [...header, "", `| ${columns.join(" | ")} |`, `|${columns.map(() => " --- ").join("|")}|`]
  for (const r of results) lines.push(`| ${cells(r).map(escape).join(" | ")} |`)
  for (const r of results) {
    lines.push("", `### ${r.id}. ${r.name} — ${r.passed ? "pass" : "**FAIL**"} (${(r.durationMs / 1000).toFixed(1)} s)`, "")
    for (const [name, value] of r.figures) lines.push(`- ${name}: ${escape(value)}`)
    for (const failure of r.failures) lines.push(`- **failed:** ${escape(failure)}`)
  }
  return lines.join("\n")
}

/** Collects the failed checks of a scenario. */
export const makeChecks = () => {
  const failures: Array<string> = []
  return {
    failures,
    /** Records a failure unless `ok`. */
    expect: (ok: boolean, description: string) => {
      if (!ok) failures.push(description)
    }
  }
}
