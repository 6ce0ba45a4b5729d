/**
 * An Effect scheduler that gives the event loop a turn at least every
 * `sliceMs` of fiber work. Effect's default scheduler runs a fiber's next
 * steps as microtasks for up to 2,048 rounds before it lets the loop go:
 * under a burst of connections (fault scenario 6: a thousand RPC clients at
 * once) the microtask queue never empties for seconds, so no socket is read,
 * `/healthz` included. Here, once the current turn has run fibers for
 * `sliceMs`, the next steps wait for `setImmediate`, behind the I/O that
 * arrived meanwhile.
 * @since 0.1.0
 */
import { Scheduler } from "effect"

/** A scheduler of its own (its clock of the current turn is per instance, not per module). */
export const make = (sliceMs: number): Scheduler.Scheduler => {
  let turnStartedAt = 0
  let inTurn = false
  const turnEnded = () => {
    inTurn = false
  }
  const runners = Scheduler.SchedulerRunner.cached((depth, drain) => {
    const now = performance.now()
    if (!inTurn) {
      // The first step of this turn: the loop comes back to `turnEnded` once it has polled I/O.
      inTurn = true
      turnStartedAt = now
      setImmediate(turnEnded)
    }
    if (now - turnStartedAt >= sliceMs || depth >= 2048) setImmediate(() => drain(0))
    else queueMicrotask(() => drain(depth + 1))
  })
  return Scheduler.make((task, priority, fiber) => runners(fiber).scheduleTask(task, priority))
}
