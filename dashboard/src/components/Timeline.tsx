/**
 * A run on a time axis: a bar per attempt (coloured by how it ended) and a
 * tick per event, from the run's creation to its end (or now).
 */
import type { Run, RunEvent } from "../api.ts"
import type { Attempt } from "../attempts.ts"
import { duration } from "../format.ts"

const width = 1000
const maxTicks = 600

export const Timeline = ({ run, attempts, events, now }: {
  readonly run: Run
  readonly attempts: ReadonlyArray<Attempt>
  readonly events: ReadonlyArray<RunEvent>
  readonly now: number
}) => {
  const start = Date.parse(run.createdAt)
  const end = Math.max(run.finishedAt === null ? now : Date.parse(run.finishedAt), start + 1)
  const x = (iso: string) => ((Date.parse(iso) - start) / (end - start)) * width
  // Past a few hundred events the ticks would merge: every n-th one stands for its neighbours.
  const step = Math.max(1, Math.ceil(events.length / maxTicks))
  const ticks = events.filter((_, i) => i % step === 0 || i === events.length - 1)
  return (
    <figure class="timeline">
      <svg viewBox={`0 0 ${width} 56`} preserveAspectRatio="none" role="img"
        aria-label={`Timeline: ${attempts.length} attempt(s) and ${events.length} event(s) over ${duration(end - start)}`}>
        <line x1="0" y1="44" x2={width} y2="44" class="axis" />
        {attempts.map((attempt) => {
          const left = x(attempt.startedAt)
          const right = attempt.endedAt === null ? x(new Date(end).toISOString()) : x(attempt.endedAt)
          return (
            <rect key={attempt.number} x={left} y="6" width={Math.max(2, right - left)} height="22"
              class={`attempt attempt-${attempt.outcome ?? "running"}`}>
              <title>{`attempt ${attempt.number}: ${attempt.outcome ?? "running"}`}</title>
            </rect>
          )
        })}
        {ticks.map((event) => (
          <line key={event.seq} x1={x(event.at)} x2={x(event.at)} y1="34" y2="44" class={event.type.startsWith("run.") ? "tick system" : "tick"}>
            <title>{`#${event.seq} ${event.type}`}</title>
          </line>
        ))}
      </svg>
      <figcaption>
        <span>{new Date(start).toLocaleTimeString()}</span>
        <span class="legend">
          <i class="attempt-succeeded" /> succeeded <i class="attempt-retrying" /> failed, retried <i class="attempt-failed" /> failed
          <i class="attempt-running" /> running <i class="attempt-waiting" /> waiting <i class="attempt-cancelled" /> cancelled
        </span>
        <span>{duration(end - start)}</span>
      </figcaption>
    </figure>
  )
}
