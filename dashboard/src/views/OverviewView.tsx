/**
 * Overview: `GET /v1/stats` as charts and tables. The server gives runs
 * finished per minute over the last hour; queue depth and the percentiles are
 * one value each, so the page keeps the values it has read while it is open
 * as their series. It reads the stats again when the debug stream shows runs
 * moving (at most every 2 s), and every 30 s while nothing happens.
 */
import { useEffect, useMemo, useState } from "preact/hooks"
import { ApiFailure, getStats, type Stats } from "../api.ts"
import { Chart } from "../components/Chart.tsx"
import { duration, time } from "../format.ts"
import { follow } from "../sse.ts"

interface Sample {
  readonly at: number
  readonly queues: Record<string, number>
  readonly waitP50: number | null
  readonly waitP95: number | null
  readonly durationP50: number | null
  readonly durationP95: number | null
}

const maxSamples = 720
const palette = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626"]

export const OverviewView = () => {
  const [stats, setStats] = useState<Stats | null>(null)
  const [samples, setSamples] = useState<ReadonlyArray<Sample>>([])
  const [error, setError] = useState<string | null>(null)

  useEffect(() => {
    let closed = false
    let inFlight = false
    let again = false
    let last = 0
    let timer: ReturnType<typeof setTimeout> | undefined
    const read = () => {
      if (closed) return
      if (inFlight) return void (again = true)
      inFlight = true
      last = Date.now()
      getStats().then((answer) => {
        if (closed) return
        setError(null)
        setStats(answer)
        setSamples((samples) => [...samples, {
          at: Date.parse(answer.at),
          queues: Object.fromEntries(answer.queues.map((q) => [q.queue, q.waiting])),
          waitP50: answer.queueWaitMs.p50,
          waitP95: answer.queueWaitMs.p95,
          durationP50: answer.durationMs.p50,
          durationP95: answer.durationMs.p95
        }].slice(-maxSamples))
      }, (e) => closed || setError(e instanceof ApiFailure && e.status === 404 ? "This server has no /v1/stats." : e.message))
        .finally(() => {
          inFlight = false
          schedule()
          if (again) {
            again = false
            soon()
          }
        })
    }
    const schedule = () => {
      clearTimeout(timer)
      timer = setTimeout(read, 30_000)
    }
    const soon = () => {
      const wait = Math.max(0, last + 2000 - Date.now())
      clearTimeout(timer)
      timer = setTimeout(read, wait)
    }
    read()
    const stop = follow("/v1/events", {
      onMessage: (message) => {
        if (/"type":"run\.(queued|started|succeeded|failed|cancelled|retrying)"/.test(message.data) || message.event.startsWith("run.")) soon()
      }
    })
    return () => {
      closed = true
      clearTimeout(timer)
      stop()
    }
  }, [])

  const finished = useMemo(() => {
    const rows = stats?.finishedPerMinute ?? []
    return [
      rows.map((r) => Date.parse(r.minute) / 1000),
      rows.map((r) => r.succeeded),
      rows.map((r) => r.failed),
      rows.map((r) => r.cancelled ?? 0)
    ]
  }, [stats])
  const failureRate = useMemo(() => {
    const rows = stats?.finishedPerMinute ?? []
    return [
      rows.map((r) => Date.parse(r.minute) / 1000),
      rows.map((r) => {
        const total = r.succeeded + r.failed + (r.cancelled ?? 0)
        return total === 0 ? null : (100 * r.failed) / total
      })
    ]
  }, [stats])
  const queueNames = useMemo(() => [...new Set(samples.flatMap((s) => Object.keys(s.queues)))].sort(), [samples])
  const depth = useMemo(() => [
    samples.map((s) => s.at / 1000),
    ...queueNames.map((name) => samples.map((s) => s.queues[name] ?? 0))
  ], [samples, queueNames])
  const percentiles = useMemo(() => [
    samples.map((s) => s.at / 1000),
    samples.map((s) => s.waitP50),
    samples.map((s) => s.waitP95),
    samples.map((s) => s.durationP50),
    samples.map((s) => s.durationP95)
  ], [samples])

  const tasks = useMemo(() => {
    const byTask = new Map<string, Record<string, number>>()
    for (const row of stats?.runs ?? []) {
      const counts = byTask.get(row.task) ?? {}
      counts[row.status] = (counts[row.status] ?? 0) + row.count
      byTask.set(row.task, counts)
    }
    return [...byTask.entries()].sort(([a], [b]) => a.localeCompare(b))
  }, [stats])
  const shownStatuses = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"] as const

  return (
    <section aria-labelledby="overview-title">
      <div class="title-row">
        <h1 id="overview-title">Overview</h1>
        {stats !== null && <span class="muted">as of {time(stats.at)}</span>}
      </div>
      {error !== null && <p class="error" role="alert">{error}</p>}
      {stats !== null && (
        <>
          <div class="cards">
            <div class="card"><span>Queue wait p50 / p95</span><b>{duration(stats.queueWaitMs.p50)} / {duration(stats.queueWaitMs.p95)}</b></div>
            <div class="card"><span>Duration p50 / p95</span><b>{duration(stats.durationMs.p50)} / {duration(stats.durationMs.p95)}</b></div>
            <div class="card"><span>Waiting now</span><b>{stats.queues.reduce((n, q) => n + q.waiting, 0)}</b></div>
            <div class="card"><span>Finished, last hour</span><b>{stats.finishedPerMinute.reduce((n, r) => n + r.succeeded + r.failed + (r.cancelled ?? 0), 0)}</b></div>
          </div>
          <div class="charts">
            <Chart title="Runs finished per minute (last hour)" yLabel="runs" stacked data={finished as any}
              series={[{ label: "succeeded", color: "#059669" }, { label: "failed", color: "#dc2626" }, { label: "cancelled", color: "#6b7280" }]} />
            <Chart title="Failures (% of runs finished per minute)" yLabel="%" points data={failureRate as any}
              series={[{ label: "failed %", color: "#dc2626", fill: true }]} />
            <Chart title="Queue depth (waiting runs, since this page opened)" yLabel="runs" points data={depth as any}
              series={queueNames.map((name, i) => ({ label: name, color: palette[i % palette.length]! }))} />
            <Chart title="Queue wait and run duration, p50 / p95 over the last hour (ms)" yLabel="ms" points data={percentiles as any}
              series={[
                { label: "wait p50", color: "#93c5fd" },
                { label: "wait p95", color: "#2563eb" },
                { label: "duration p50", color: "#fcd34d" },
                { label: "duration p95", color: "#d97706" }
              ]} />
          </div>
          <div class="values">
            <div>
              <h2>Runs by task <span class="muted">(queued, running and waiting now; ended in the last hour)</span></h2>
              <table>
                <thead><tr><th scope="col">Task</th>{shownStatuses.map((s) => <th scope="col" class="num" key={s}>{s}</th>)}</tr></thead>
                <tbody>
                  {tasks.map(([task, counts]) => (
                    <tr key={task}>
                      <td><a href={`#/runs?task=${encodeURIComponent(task)}`}>{task}</a></td>
                      {shownStatuses.map((s) => <td class="num" key={s}>{counts[s] === undefined ? "" : <a href={`#/runs?task=${encodeURIComponent(task)}&status=${s}`}>{counts[s]}</a>}</td>)}
                    </tr>
                  ))}
                  {tasks.length === 0 && <tr><td colSpan={6} class="empty">No runs yet.</td></tr>}
                </tbody>
              </table>
            </div>
            <div>
              <h2>Queues</h2>
              <table>
                <thead><tr><th scope="col">Queue</th><th scope="col" class="num">Waiting</th><th scope="col" class="num">Scheduled</th><th scope="col" class="num">Running</th><th scope="col">Oldest waiting for</th></tr></thead>
                <tbody>
                  {stats.queues.map((q) => (
                    <tr key={q.queue}>
                      <td><a href={`#/runs?queue=${encodeURIComponent(q.queue)}&status=queued`}>{q.queue}</a></td>
                      <td class="num">{q.waiting}</td>
                      <td class="num">{q.scheduled ?? ""}</td>
                      <td class="num">{q.running ?? ""}</td>
                      <td>{q.oldestWaitingSince === null ? "—" : duration(Date.parse(stats.at) - Date.parse(q.oldestWaitingSince))}</td>
                    </tr>
                  ))}
                  {stats.queues.length === 0 && <tr><td colSpan={5} class="empty">No queued or running runs.</td></tr>}
                </tbody>
              </table>
            </div>
          </div>
        </>
      )}
    </section>
  )
}
