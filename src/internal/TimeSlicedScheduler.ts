/**
 * An Effect scheduler that gives the event loop a turn at least every
 * `sliceMs` of fiber work, however many fibers are ready.
 *
 * Effect's default scheduler keeps a queue per fiber and runs a fiber's next
 * steps as microtasks for up to 2,048 rounds before it lets the loop go:
 * under a burst of connections (fault scenario 6: a thousand RPC clients at
 * once) the microtask queue never empties for seconds, so no socket is read,
 * `/healthz` included. Deferring each fiber's steps to `setImmediate` once a
 * slice is used is not enough either: Node runs every immediate queued before
 * its check phase in that phase, so a thousand ready fibers still run one
 * after the other before the next poll of the sockets.
 *
 * Here all fibers share one queue, taken in order as microtasks while the
 * current turn has run for less than `sliceMs`, checked between tasks; then
 * the rest waits for one `setImmediate`, behind the I/O that arrived
 * meanwhile. Priorities are not kept apart (Effect's own fibers all run at
 * the default one).
 * @since 0.1.0
 */
import { Scheduler } from "effect"

/** A scheduler of its own (its queue and clock of the current turn are per instance, not per module). */
export const make = (sliceMs: number): Scheduler.Scheduler => {
  let tasks: Array<Scheduler.Task> = []
  let next = 0
  /** A drain is queued (microtask or immediate) or running. */
  let draining = false
  let turnStartedAt = 0
  let inTurn = false
  const turnEnded = () => {
    inTurn = false
  }

  const drain = () => {
    if (!inTurn) {
      // The first drain of this turn: the loop comes back to `turnEnded` once it has polled I/O.
      inTurn = true
      turnStartedAt = performance.now()
      setImmediate(turnEnded)
    }
    while (next < tasks.length) {
      if (performance.now() - turnStartedAt >= sliceMs) {
        compact()
        setImmediate(drain)
        return
      }
      if (next === 4096) compact()
      const task = tasks[next]!
      tasks[next++] = undefined as unknown as Scheduler.Task
      try {
        task()
      } catch (error) {
        // As a task of Effect's own scheduler would: the error is thrown
        // (uncaught), and the other fibers still run.
        compact()
        setImmediate(drain)
        throw error
      }
    }
    tasks = []
    next = 0
    draining = false
  }

  /** Drops the tasks already run from the queue's front. */
  const compact = () => {
    tasks = tasks.slice(next)
    next = 0
  }

  return Scheduler.make((task) => {
    tasks.push(task)
    if (!draining) {
      draining = true
      queueMicrotask(drain)
    }
  })
}
