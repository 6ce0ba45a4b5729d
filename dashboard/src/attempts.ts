/** A run's attempts, read from its event log (`run.started` opens one; the next system event ends it). */
import type { RunError, RunEvent } from "./api.ts"

export interface Attempt {
  readonly number: number
  readonly startedAt: string
  readonly endedAt: string | null
  /** The event that ended it, without `run.`: succeeded, failed, retrying, cancelled, released, waiting (a durable sleep). */
  readonly outcome: string | null
  readonly error: RunError | null
}

export const attemptsOf = (events: ReadonlyArray<RunEvent>): ReadonlyArray<Attempt> => {
  const attempts: Array<Attempt> = []
  let open: { number: number; startedAt: string } | null = null
  for (const event of events) {
    if (!event.type.startsWith("run.") || event.type === "run.queued") continue
    const data = (event.data ?? {}) as Record<string, any>
    if (event.type === "run.started") {
      if (open !== null) attempts.push({ ...open, endedAt: null, outcome: null, error: null })
      open = { number: typeof data["attempt"] === "number" ? data["attempt"] : attempts.length + 1, startedAt: event.at }
      continue
    }
    const outcome = event.type.slice(4)
    if (open === null) {
      // Cancelled before any start: no attempt ran.
      continue
    }
    attempts.push({ ...open, endedAt: event.at, outcome, error: data["error"] ?? null })
    open = null
  }
  if (open !== null) attempts.push({ ...open, endedAt: null, outcome: null, error: null })
  return attempts
}
