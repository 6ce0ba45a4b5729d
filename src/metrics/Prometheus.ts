/**
 * Metric pairs (a `Metrics.snapshot`) in the Prometheus text exposition
 * format (0.0.4): one `# HELP` and `# TYPE` per name, then its samples;
 * histograms as cumulative `_bucket{le=...}` lines with `_sum` and `_count`.
 * @since 0.4.0
 */
import { type MetricPair, MetricState, Option } from "effect"

export const contentType = "text/plain; version=0.0.4; charset=utf-8"

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")
const escapeHelp = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const number = (value: number | bigint) => {
  const n = Number(value)
  return Number.isNaN(n) ? "NaN" : n === Infinity ? "+Inf" : n === -Infinity ? "-Inf" : String(n)
}

const labelsOf = (labels: ReadonlyArray<readonly [string, string]>) =>
  labels.length === 0 ? "" : `{${labels.map(([key, value]) => `${key}="${escapeLabel(value)}"`).join(",")}}`

interface Family {
  type: "counter" | "gauge" | "histogram"
  help: string
  readonly lines: Array<string>
}

/** The text of `pairs`; metrics of other kinds (frequencies, summaries) are left out. */
export const encode = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  const familyOf = (name: string, type: Family["type"], help: Option.Option<string>) => {
    let family = families.get(name)
    if (family === undefined) {
      family = { type, help: Option.getOrElse(help, () => name), lines: [] }
      families.set(name, family)
    }
    return family
  }
  for (const { metricKey, metricState } of pairs) {
    const name = metricKey.name
    const labels = metricKey.tags.map((tag) => [tag.key, tag.value] as const)
    if (MetricState.isCounterState(metricState)) {
      familyOf(name, "counter", metricKey.description).lines.push(`${name}${labelsOf(labels)} ${number(metricState.count)}`)
    } else if (MetricState.isGaugeState(metricState)) {
      familyOf(name, "gauge", metricKey.description).lines.push(`${name}${labelsOf(labels)} ${number(metricState.value)}`)
    } else if (MetricState.isHistogramState(metricState)) {
      const family = familyOf(name, "histogram", metricKey.description)
      let infinite = false
      for (const [bound, count] of metricState.buckets) {
        if (bound === Infinity) infinite = true
        family.lines.push(`${name}_bucket${labelsOf([...labels, ["le", number(bound)]])} ${count}`)
      }
      if (!infinite) family.lines.push(`${name}_bucket${labelsOf([...labels, ["le", "+Inf"]])} ${metricState.count}`)
      family.lines.push(`${name}_sum${labelsOf(labels)} ${number(metricState.sum)}`)
      family.lines.push(`${name}_count${labelsOf(labels)} ${metricState.count}`)
    }
  }
  let text = ""
  for (const [name, family] of families) {
    text += `# HELP ${name} ${escapeHelp(family.help)}\n# TYPE ${name} ${family.type}\n${family.lines.join("\n")}\n`
  }
  return text
}
