/**
 * Run: where it sits in its tree (its ancestors, its children expandable),
 * the run, its attempts and timeline, its input / output / error, and
 * its event log followed live (`GET /v1/runs/:id/events`, from the first
 * event; the stream ends after the terminal event). Cancel and replay ask
 * first.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks"
import { ApiFailure, cancelRun, getRun, isFinished, replayRun, type Run, type RunEvent } from "../api.ts"
import { attemptsOf } from "../attempts.ts"
import { ChildTree } from "../components/ChildTree.tsx"
import { ConfirmButton } from "../components/Confirm.tsx"
import { Json } from "../components/Json.tsx"
import { RunPath } from "../components/RunPath.tsx"
import { Status } from "../components/Status.tsx"
import { Timeline } from "../components/Timeline.tsx"
import { VirtualList } from "../components/VirtualList.tsx"
import { duration, json, runDuration, time } from "../format.ts"
import { apply, isTerminal, parseEvent } from "../live.ts"
import { runHref } from "../router.ts"
import { follow } from "../sse.ts"
import { useNow } from "../useNow.ts"

const rowHeight = 30
const lineHeight = 18
const maxLines = 20
// How soon a finished run with unfinished children is read again, doubling up to the most.
const settleFirstMs = 250
const settleMaxMs = 10_000

export const RunView = ({ id }: { readonly id: string }) => {
  const [run, setRun] = useState<Run | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [events, setEvents] = useState<ReadonlyArray<RunEvent>>([])
  const [stream, setStream] = useState<"connecting" | "open" | "closed">("connecting")
  const [expanded, setExpanded] = useState<ReadonlySet<number>>(new Set())
  const [notice, setNotice] = useState<string | null>(null)
  const now = useNow(1000)
  const runRef = useRef<Run | null>(null)
  // Reads the run again (its children's statuses come with it, not with its log).
  const refreshRef = useRef<() => void>(() => {})

  useEffect(() => {
    setRun(null)
    setEvents([])
    setError(null)
    setNotice(null)
    setExpanded(new Set())
    let closed = false
    let childrenTimer: ReturnType<typeof setTimeout> | undefined
    let settleTimer: ReturnType<typeof setTimeout> | undefined
    let settleDelay = settleFirstMs
    const received: Array<RunEvent> = []
    let scheduled = false
    // Thousands of events can arrive at once (a backfill): one render per frame.
    const flush = () => {
      scheduled = false
      if (closed) return
      setEvents(received.slice())
      const current = runRef.current
      if (current !== null) {
        const next = received.reduce(apply, current)
        runRef.current = next
        setRun(next)
      }
    }
    const refresh = () =>
      getRun(id).then((fresh) => {
        if (closed) return
        const next = received.reduce(apply, fresh)
        runRef.current = next
        setRun(next)
        // A finished run's log says nothing more of its children, which may still be ending
        // (a cancel's running children stop when their workers see it): read it again, less
        // and less often, until every child listed has finished.
        clearTimeout(settleTimer)
        if (isFinished(next.status) && next.children?.some((child) => !isFinished(child.status)) === true) {
          settleTimer = setTimeout(refresh, settleDelay)
          settleDelay = Math.min(settleDelay * 2, settleMaxMs)
        }
      }, (e) => closed || setError(e instanceof ApiFailure && e.status === 404 ? `No run ${id}.` : e.message))
    refresh()
    const stop = follow(`/v1/runs/${encodeURIComponent(id)}/events`, {
      onState: (state, failure) => {
        setStream(state)
        if (failure !== undefined && state === "closed") setError(failure)
      },
      onMessage: (message) => {
        const event = parseEvent(message.data)
        if (event === null) return
        received.push(event)
        if (!scheduled) {
          scheduled = true
          requestAnimationFrame(flush)
        }
        // The terminal event carries no output or error in full: read the run once more.
        if (isTerminal(event.type)) setTimeout(refresh, 0)
        // The children's statuses are the server's (their own logs): read them again when
        // the parent's log says one started or ended, once for a burst.
        else if (event.type.startsWith("child.") && childrenTimer === undefined) {
          childrenTimer = setTimeout(() => {
            childrenTimer = undefined
            refresh()
          }, 250)
        }
      }
    })
    refreshRef.current = refresh
    return () => {
      closed = true
      clearTimeout(childrenTimer)
      clearTimeout(settleTimer)
      stop()
    }
  }, [id])

  const attempts = useMemo(() => attemptsOf(events), [events])
  // From when the run was due (its queued event's runAt; a retry moves the run's own runAt) to its first start.
  const firstWait = useMemo(() => {
    const queued = events.find((e) => e.type === "run.queued")
    const started = events.find((e) => e.type === "run.started")
    if (queued === undefined || started === undefined) return null
    const due = Math.max(Date.parse(queued.at), Date.parse(String((queued.data as any)?.runAt ?? queued.at)))
    return Math.max(0, Date.parse(started.at) - due)
  }, [events])
  // The log's last event is terminal: nothing more will come (the stream has ended or is ending).
  const ended = events.length > 0 && isTerminal(events[events.length - 1]!.type)
  const texts = useMemo(() => new Map<number, string>(), [events])
  const textOf = (event: RunEvent) => {
    let text = texts.get(event.seq)
    if (text === undefined) texts.set(event.seq, (text = json(event.data)))
    return text
  }
  const heightOf = useCallback((event: RunEvent) => {
    if (!expanded.has(event.seq)) return rowHeight
    const lines = textOf(event).split("\n").length
    return rowHeight + Math.min(lines, maxLines) * lineHeight + 20
  }, [expanded, texts])
  const toggle = (seq: number) => {
    const next = new Set(expanded)
    if (next.has(seq)) next.delete(seq)
    else next.add(seq)
    setExpanded(next)
  }

  if (error !== null && run === null) return <section><h1>Run</h1><p class="error" role="alert">{error}</p></section>
  if (run === null) return <section><h1>Run</h1><p aria-busy="true">Loading…</p></section>

  return (
    <section aria-labelledby="run-title">
      <RunPath run={run} />
      <div class="title-row">
        <h1 id="run-title"><span class="mono">{run.id}</span></h1>
        <Status status={run.status} />
        <div class="spacer" />
        <ConfirmButton label="Cancel run" danger disabled={isFinished(run.status)}
          question={`Cancel ${run.id}? A running attempt is interrupted; the run ends as cancelled.`}
          confirmLabel="Cancel the run"
          onConfirm={async () => {
            const cancelled = await cancelRun(run.id)
            // The answer lists no children: keep those shown, then read them again (cancelled too).
            const shown = cancelled.lastSeq >= run.lastSeq ? cancelled : run
            runRef.current = shown.children === undefined && run.children !== undefined
              ? { ...shown, children: run.children, ...(run.moreChildren === undefined ? {} : { moreChildren: run.moreChildren }) }
              : shown
            setRun(runRef.current)
            setNotice("Cancelled.")
            refreshRef.current()
          }} />
        <ConfirmButton label="Replay" question={`Start a new run of ${run.task} with the same input?`} confirmLabel="Start the replay"
          onConfirm={async () => {
            const answer = await replayRun(run.id)
            location.hash = runHref(answer.run.id)
          }} />
      </div>
      {notice !== null && <p class="notice" role="status">{notice}</p>}
      {error !== null && <p class="error" role="alert">{error}</p>}
      <dl class="facts">
        <div><dt>Task</dt><dd><a href={`#/tasks/${encodeURIComponent(run.task)}`}>{run.task}</a></dd></div>
        <div><dt>Queue</dt><dd>{run.queue}</dd></div>
        <div><dt>Attempt</dt><dd>{run.attempt} of {run.maxAttempts}</dd></div>
        <div><dt>Priority</dt><dd>{run.priority}</dd></div>
        <div><dt>Created</dt><dd>{time(run.createdAt)}</dd></div>
        <div><dt>Run at</dt><dd>{time(run.runAt)}</dd></div>
        <div><dt>Started</dt><dd>{time(run.startedAt)}</dd></div>
        <div><dt>Finished</dt><dd>{time(run.finishedAt)}</dd></div>
        <div><dt>Duration</dt><dd>{duration(runDuration(run, now))}</dd></div>
        <div><dt>Waited</dt><dd>{duration(firstWait)}</dd></div>
        {run.idempotencyKey !== null && <div><dt>Idempotency key</dt><dd class="mono">{run.idempotencyKey}</dd></div>}
        {run.replayOf != null && <div><dt>Replay of</dt><dd><a class="mono" href={runHref(run.replayOf)}>{run.replayOf}</a></dd></div>}
        {run.parentId !== undefined && <div><dt>Parent</dt><dd><a class="mono" href={runHref(run.parentId)}>{run.parentId}</a></dd></div>}
      </dl>

      {run.children !== undefined && run.children.length > 0 && (
        <>
          <h2>Children</h2>
          <ChildTree runs={run.children} />
          {run.moreChildren === true && (
            <p class="muted">
              The first {run.children.length} children are listed: <a href={`#/runs?parentId=${encodeURIComponent(run.id)}`}>all of them</a>.
            </p>
          )}
        </>
      )}

      <h2>Timeline</h2>
      <Timeline run={run} attempts={attempts} events={events} now={now} />

      <h2>Attempts</h2>
      {attempts.length === 0 ? <p class="muted">No attempt has started.</p> : (
        <table class="attempts">
          <thead><tr><th scope="col">#</th><th scope="col">Started</th><th scope="col">Ended</th><th scope="col">Took</th><th scope="col">Outcome</th><th scope="col">Error</th></tr></thead>
          <tbody>
            {attempts.map((attempt) => (
              <tr key={attempt.number}>
                <td class="num">{attempt.number}</td>
                <td>{time(attempt.startedAt)}</td>
                <td>{time(attempt.endedAt)}</td>
                <td class="num">{duration((attempt.endedAt === null ? now : Date.parse(attempt.endedAt)) - Date.parse(attempt.startedAt))}</td>
                <td><span class={`outcome attempt-${attempt.outcome ?? "running"}`}>{attempt.outcome ?? "running"}</span></td>
                <td>{attempt.error === null ? "" : <><b>{attempt.error.tag}</b>: {attempt.error.message}{attempt.error.retryable ? "" : " (not retryable)"}</>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <div class="values">
        <div><h2>Input</h2><Json value={run.input} label="Input" /></div>
        <div><h2>Output</h2>{run.status === "succeeded" ? <Json value={run.output} label="Output" /> : <p class="muted">{isFinished(run.status) ? "None." : "Not yet."}</p>}</div>
        {run.error !== null && <div><h2>Error</h2><Json value={run.error} label="Error" /></div>}
      </div>

      <div class="title-row">
        <h2 id="events-title">Events <span class="muted">({events.length})</span></h2>
        <span class={`live live-${ended ? "closed" : stream}`} role="status">
          {ended ? "complete" : stream === "open" ? "streaming" : stream === "connecting" ? "connecting…" : "stopped"}
        </span>
      </div>
      <div class="events" aria-labelledby="events-title">
        <div class="event-head" aria-hidden="true"><span>seq</span><span>time</span><span>type</span><span>data</span></div>
        <VirtualList items={events} heightOf={heightOf} maxHeight={480} label="Events" follow
          render={(event) => {
            const open = expanded.has(event.seq)
            const text = textOf(event)
            return (
              <div class={`event ${event.type.startsWith("run.") ? "event-system" : "event-task"}`} data-seq={event.seq} data-type={event.type}>
                <button type="button" class="event-line" aria-expanded={open} onClick={() => toggle(event.seq)}>
                  <span class="num">{event.seq}</span>
                  <span>{time(event.at).slice(11)}</span>
                  <span class={`type type-${event.type.replace(/[^a-z]/gi, "-")}`}>{event.type}</span>
                  <span class="preview mono">{(JSON.stringify(event.data) ?? "null").slice(0, 200)}</span>
                </button>
                {open && <pre class="json event-data" style={{ maxHeight: `${maxLines * lineHeight + 8}px` }} tabIndex={0} aria-label={`Data of event ${event.seq}`}>{text}</pre>}
              </div>
            )
          }} />
      </div>
    </section>
  )
}
