/**
 * `docs/grafana-dashboard.json` cannot drift from the program's metrics: it
 * is JSON, asks for its Prometheus data source at import (`__inputs`), and
 * every metric its queries name is one `metrics/Metrics.ts` exports.
 */
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as Metrics from "../../src/metrics/Metrics.ts"

const dashboard = JSON.parse(readFileSync(join(import.meta.dirname, "../../docs/grafana-dashboard.json"), "utf8"))

/** Every query text of the dashboard: its panels' and its variables'. */
const queries: Array<string> = [
  ...dashboard.panels.flatMap((panel: any) => (panel.targets ?? []).map((target: any) => String(target.expr))),
  ...dashboard.templating.list.flatMap((variable: any) => variable.definition === undefined ? [] : [String(variable.definition)])
]

const histograms = [Metrics.names.queueWait, Metrics.names.runDuration, Metrics.names.attemptDuration] as ReadonlyArray<string>

/** A series name as the program exports it: a histogram's `_bucket`, `_sum` and `_count` are its own. */
const exported = (series: string) => {
  const histogram = /^(.*)_(bucket|sum|count)$/.exec(series)
  return histogram !== null && histograms.includes(histogram[1]!) ? histogram[1]! : series
}

describe("the Grafana dashboard", () => {
  it("asks for a Prometheus data source at import, and its panels query through it", () => {
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: "DS_PROMETHEUS", type: "datasource", pluginId: "prometheus" })])
    const variable = dashboard.templating.list.find((v: any) => v.name === "datasource")
    expect(variable).toMatchObject({ type: "datasource", query: "prometheus", current: { value: "${DS_PROMETHEUS}" } })
    for (const panel of dashboard.panels) expect(panel.datasource, panel.title).toEqual({ type: "prometheus", uid: "${datasource}" })
  })

  it("names only metrics the program exports, and charts each counter", () => {
    const known = new Set<string>(Object.values(Metrics.names))
    const named = queries.flatMap((query) => query.match(/\brunstream_[a-z_]+/g) ?? []).map(exported)
    expect(named.length).toBeGreaterThan(0)
    expect(named.filter((name) => !known.has(name))).toEqual([])
    for (const counter of Object.values(Metrics.names).filter((name) => name.endsWith("_total"))) {
      expect(named, counter).toContain(counter)
    }
    // Panel ids are unique: Grafana keys panels by them.
    const ids = dashboard.panels.map((panel: any) => panel.id)
    expect(new Set(ids).size).toBe(ids.length)
  })
})
