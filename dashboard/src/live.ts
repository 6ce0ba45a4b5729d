/**
 * What an event of a run's log says about the run, so that a list or a page
 * follows a run from the stream alone, without asking the server again.
 */
import type { Run, RunEvent, RunStatus } from "./api.ts"

const statusAfter: Record<string, RunStatus> = {
  "run.started": "running",
  "run.retrying": "queued",
  "run.released": "queued",
  // A durable sleep or wait (ctx.sleep, ctx.waitForSignal, ctx.await): no worker holds it.
  "run.waiting": "waiting",
  "run.succeeded": "succeeded",
  "run.failed": "failed",
  "run.cancelled": "cancelled"
}

export const isTerminal = (type: string) => type === "run.succeeded" || type === "run.failed" || type === "run.cancelled"

/** `run` after `event`; the same object when the event is old news (its seq is not past `lastSeq`). */
export const apply = (run: Run, event: RunEvent): Run => {
  if (event.seq <= run.lastSeq) return run
  const data = (event.data ?? {}) as Record<string, any>
  const status = statusAfter[event.type]
  if (status === undefined) return { ...run, lastSeq: event.seq }
  return {
    ...run,
    status,
    lastSeq: event.seq,
    attempt: typeof data["attempt"] === "number" ? data["attempt"] : run.attempt,
    startedAt: event.type === "run.started" ? event.at : run.startedAt,
    finishedAt: isTerminal(event.type) ? event.at : run.finishedAt,
    output: event.type === "run.succeeded" && "output" in data ? data["output"] : run.output,
    error: (event.type === "run.failed" || event.type === "run.retrying") && data["error"] !== undefined ? data["error"] : run.error
  }
}

/** Parses one SSE message's data as an event; null if it is not one. */
export const parseEvent = (data: string): RunEvent | null => {
  try {
    const event = JSON.parse(data)
    return typeof event?.runId === "string" && typeof event?.seq === "number" && typeof event?.type === "string" ? event : null
  } catch {
    return null
  }
}
