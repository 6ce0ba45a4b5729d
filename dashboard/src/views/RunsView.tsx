/**
 * Runs: a page of the list, newest first, with filters in the URL. New runs
 * and status changes come from the debug stream (`GET /v1/events`) as they
 * happen: a run's events change its row; a run queued while the first page is
 * shown is fetched once and put on top when it matches the filters.
 */
import { useEffect, useState } from "preact/hooks"
import { type Run, type RunEvent, type RunFilters, getRun, listRuns, statuses } from "../api.ts"
import { Status } from "../components/Status.tsx"
import { duration, runDuration, time } from "../format.ts"
import { apply, parseEvent } from "../live.ts"
import { runHref } from "../router.ts"
import { follow } from "../sse.ts"
import { useNow } from "../useNow.ts"

const pageSize = 50

const filtersOf = (params: URLSearchParams): RunFilters => {
  const filters: Record<string, string> = {}
  for (const key of ["status", "task", "queue", "q", "parentId"]) {
    const value = params.get(key)
    if (value !== null && value !== "") filters[key] = value
  }
  return filters
}

const matches = (run: Run, filters: RunFilters) =>
  (filters.status === undefined || run.status === filters.status) &&
  (filters.task === undefined || run.task === filters.task) &&
  (filters.queue === undefined || run.queue === filters.queue) &&
  (filters.q === undefined || run.id.startsWith(filters.q)) &&
  (filters.parentId === undefined || run.parentId === filters.parentId)

export const RunsView = ({ params }: { readonly params: URLSearchParams }) => {
  const filters = filtersOf(params)
  const filterKey = JSON.stringify(filters)
  const [cursors, setCursors] = useState<ReadonlyArray<string | undefined>>([undefined])
  const cursor = cursors[cursors.length - 1]
  const [page, setPage] = useState<{ runs: ReadonlyArray<Run>; nextCursor: string | null } | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [live, setLive] = useState<"connecting" | "open" | "closed">("connecting")
  const now = useNow(1000)

  useEffect(() => setCursors([undefined]), [filterKey])

  // Subscribe, then read: the stream is open (the server subscribed) before the
  // page is read, and events that arrive meanwhile are applied to it after.
  useEffect(() => {
    type Page = { runs: ReadonlyArray<Run>; nextCursor: string | null }
    let current: Page | null = null
    let buffered: Array<RunEvent> | null = []
    // Events of runs being fetched, applied when the run arrives.
    const pending = new Map<string, Array<RunEvent>>()
    let closed = false
    const show = (page: Page) => {
      current = page
      setPage(page)
    }
    const fetchNew = (runId: string) => {
      pending.set(runId, [])
      getRun(runId).then((run) => {
        const fresh = (pending.get(runId) ?? []).reduce(apply, run)
        pending.delete(runId)
        if (closed || current === null || !matches(fresh, filters) || current.runs.some((r) => r.id === runId)) return
        show({ ...current, runs: [fresh, ...current.runs].slice(0, pageSize) })
      }, () => pending.delete(runId))
    }
    const onEvent = (event: RunEvent) => {
      const waiting = pending.get(event.runId)
      if (waiting !== undefined) return void waiting.push(event)
      if (current === null) return void buffered?.push(event)
      const index = current.runs.findIndex((run) => run.id === event.runId)
      if (index === -1) {
        if (event.type === "run.queued" && cursor === undefined) fetchNew(event.runId)
        return
      }
      const updated = apply(current.runs[index]!, event)
      if (updated === current.runs[index]) return
      const runs = [...current.runs]
      runs[index] = updated
      show({ ...current, runs })
    }
    const load = () => {
      setError(null)
      listRuns(filters, pageSize, cursor).then((page) => {
        if (closed) return
        show(page)
        const early = buffered ?? []
        buffered = null
        early.forEach(onEvent)
      }, (e) => closed || setError(e.message))
    }
    const stop = follow(`/v1/events${filters.task === undefined ? "" : `?task=${encodeURIComponent(filters.task)}`}`, {
      onState: (state, failure) => {
        setLive(state)
        if (failure !== undefined && state === "closed") setError(failure)
        // Each (re)connection reads the page again: what happened while away is in it.
        if (state === "open") {
          buffered = []
          load()
        }
      },
      onMessage: (message) => {
        const event = parseEvent(message.data)
        if (event !== null && event.type.startsWith("run.")) onEvent(event)
      }
    })
    return () => {
      closed = true
      stop()
    }
  }, [filterKey, cursor])

  const setFilter = (key: string, value: string) => {
    const next = new URLSearchParams(params)
    if (value === "") next.delete(key)
    else next.set(key, value)
    const search = next.toString()
    location.hash = `#/runs${search === "" ? "" : `?${search}`}`
  }

  return (
    <section aria-labelledby="runs-title">
      <div class="title-row">
        <h1 id="runs-title">Runs</h1>
        <span class={`live live-${live}`} role="status">{live === "open" ? "live" : live === "connecting" ? "connecting…" : "not live"}</span>
      </div>
      <form class="filters" onSubmit={(event) => {
        event.preventDefault()
        const data = new FormData(event.currentTarget)
        // The parent is not a field of the form (a run's page links here): kept until cleared.
        const next = new URLSearchParams(filters.parentId === undefined ? {} : { parentId: filters.parentId })
        for (const key of ["status", "task", "queue", "q"]) {
          const value = String(data.get(key) ?? "").trim()
          if (value !== "") next.set(key, value)
        }
        const search = next.toString()
        location.hash = `#/runs${search === "" ? "" : `?${search}`}`
      }}>
        <label>Status
          <select name="status" value={filters.status ?? ""} onChange={(e) => setFilter("status", e.currentTarget.value)}>
            <option value="">any</option>
            {statuses.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </label>
        <label>Task <input name="task" defaultValue={filters.task ?? ""} key={`task-${filters.task}`} placeholder="demo.count" /></label>
        <label>Queue <input name="queue" defaultValue={filters.queue ?? ""} key={`queue-${filters.queue}`} placeholder="default" /></label>
        <label>Id prefix <input name="q" defaultValue={filters.q ?? ""} key={`q-${filters.q}`} placeholder="01a2…" /></label>
        <button type="submit">Apply</button>
        {filterKey !== "{}" && <a href="#/runs" class="button">Clear</a>}
      </form>
      {filters.parentId !== undefined && (
        <p class="notice" role="status">Children of <a class="mono" href={runHref(filters.parentId)}>{filters.parentId}</a>.</p>
      )}
      {error !== null && <p class="error" role="alert">{error}</p>}
      <table class="runs">
        <caption class="sr-only">Runs, newest first</caption>
        <thead>
          <tr><th scope="col">Id</th><th scope="col">Task</th><th scope="col">Status</th><th scope="col">Attempt</th><th scope="col">Created</th><th scope="col">Duration</th></tr>
        </thead>
        <tbody>
          {page?.runs.map((run) => (
            <tr key={run.id} data-run-id={run.id}>
              <td class="mono"><a href={runHref(run.id)}>{run.id}</a></td>
              <td>{run.task}</td>
              <td><Status status={run.status} /></td>
              <td class="num">{run.attempt} / {run.maxAttempts}</td>
              <td>{time(run.createdAt)}</td>
              <td class="num">{duration(runDuration(run, now))}</td>
            </tr>
          ))}
          {page !== null && page.runs.length === 0 && <tr><td colSpan={6} class="empty">No runs{filterKey === "{}" ? " yet" : " match these filters"}.</td></tr>}
        </tbody>
      </table>
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))}>← Newer</button>
        <span>Page {cursors.length}</span>
        <button type="button" disabled={page?.nextCursor == null} onClick={() => page?.nextCursor != null && setCursors([...cursors, page.nextCursor])}>Older →</button>
      </nav>
    </section>
  )
}
