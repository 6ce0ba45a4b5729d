/**
 * A scoped pool of workers: the runs it holds, how they get fibers
 * (`dispatch`), how their attempts stop and end, and its shutdown. Its parts:
 * `ClaimLoop` finds work, `Attempt` runs one attempt and classifies how it
 * ended, `Writer` records emits and ends, `Heartbeat` keeps the leases, and
 * `queue/Claiming.ts`'s handoff brings runs started in this program.
 *
 * The ending of an attempt, in five verbs (used with these meanings only):
 * - **stop**: ask an attempt to end early, for a reason (`cancel`,
 *   `leaseLost`, `shutdown`): its body is interrupted, or skipped if it has
 *   not begun;
 * - **abandon**: a stopped body that does not end within the shutdown grace
 *   is left running detached; its run moves on;
 * - **end**: the attempt is over (its body ended, or was abandoned): its
 *   outcome is decided (`Attempt.outcomeOf`) and its place among the
 *   `concurrency` freed; once per attempt;
 * - **record**: the outcome is handed to the writer, which writes it with
 *   `RunQueue.recordEnds` (refused when the lease was lost meanwhile);
 * - **free**: the run leaves the pool, once its end is recorded (or at once
 *   when there is nothing to record: a lost lease).
 * An outcome `released` (a database term: `run.released`) hands the run back
 * to the queue without using up its attempt, as a shutdown does.
 * @since 0.2.0
 */
import {
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberId,
  FiberRef,
  FiberRefs,
  FiberSet,
  Option,
  Order,
  Queue,
  Runtime,
  Schedule
} from "effect"
import { makeInstanceId, type RunId } from "../domain/Ids.ts"
import type { Claim, Taker } from "../queue/Claiming.ts"
import * as Metrics from "../metrics/Metrics.ts"
import * as Limits from "../queue/Limits.ts"
import { QueueLimits } from "../queue/QueueLimits.ts"
import { type Outcome, RunQueue } from "../queue/RunQueue.ts"
import * as Task from "../Task.ts"
import * as Tracing from "../tracing/Tracing.ts"
import * as Attempt from "./Attempt.ts"
import * as ClaimLoop from "./ClaimLoop.ts"
import * as Heartbeat from "./Heartbeat.ts"
import { inFlight, type InFlight, PoolState, type StopReason } from "./InFlight.ts"
import * as Prefetch from "./Prefetch.ts"
import * as PriorityBuffer from "./PriorityBuffer.ts"
import type { WorkersOptions } from "./WorkersConfig.ts"
import * as Writer from "./Writer.ts"

/** What a pool tells its program. */
export interface Pool {
  readonly workerId: string
  /** Runs this pool holds now: waiting in its buffer, executing, or whose end is being recorded. */
  readonly inFlight: Effect.Effect<number>
  /** Runs this pool took as they were started in its program, without a claim (see `queue/Claiming.ts`). */
  readonly takenAtStart: Effect.Effect<number>
}

/**
 * Starts a pool in the current scope. Closing the scope stops claiming, lets
 * in-flight runs finish within a grace period, then stops the rest (handed
 * back, so another worker takes them at once).
 */
export const make = (options: WorkersOptions) =>
  Effect.gen(function*() {
    const queue = yield* RunQueue
    const registry = yield* Task.TaskRegistry
    const queueLimits = yield* QueueLimits
    const workerId = yield* makeInstanceId("worker")
    const scope = yield* Effect.scope
    const leaseMs = Duration.toMillis(options.lease)
    const pool = new PoolState(
      options.concurrency,
      Prefetch.make({ max: options.prefetch, windowMs: Duration.toMillis(options.prefetchWindow) }),
      yield* Queue.sliding<void>(1)
    )
    const { prefetch } = pool
    // Best first: the order the queue claims in.
    const buffer = PriorityBuffer.make(Order.make<InFlight>((a, b) =>
      Order.number(b.claim.priority, a.claim.priority) ||
      Order.number(a.claim.runAt.getTime(), b.claim.runAt.getTime()) ||
      Order.string(a.claim.runId, b.claim.runId)
    ))
    // Ends of attempts recorded again after their group commit failed.
    const recordingAgain = yield* FiberSet.make()
    // Set while `dispatch` starts runs (see there).
    let dispatching = false
    const metrics = yield* Metrics.option
    const tracing = yield* Tracing.option

    const annotate = Effect.annotateLogs({ component: "Workers", workerId })
    const annotateRun = (claim: Claim) => Effect.annotateLogs({ runId: claim.runId, attempt: claim.attempt })

    const writer = yield* Writer.make(workerId)
    const attempts = yield* Attempt.make({
      poolRuntime: yield* annotate(Effect.runtime<never>()).pipe(
        // A run's fiber is the attempt itself, and a failed attempt is an
        // outcome, not an error nobody handled (the default logs it at debug).
        Effect.locally(FiberRef.unhandledErrorLogLevel, Option.none())
      ),
      writer,
      shutdownGrace: options.shutdownGrace
    })

    /**
     * Stops an attempt, once: interrupts its body (a timer abandons it if it
     * does not end within the grace), or, not begun yet, ends it at once.
     */
    const stop = (entry: InFlight, reason: StopReason) =>
      Effect.suspend(() => {
        if (entry.stop !== undefined) return Effect.void
        entry.stop = reason
        const fiber = entry.fiber
        if (fiber !== undefined) {
          return Effect.zipRight(
            Fiber.interruptFork(fiber),
            // A body whose finalizers hang must not hold its place forever.
            Effect.sleep(options.shutdownGrace).pipe(
              Effect.zipRight(Effect.suspend(() =>
                entry.ended ? Effect.void : Effect.zipRight(
                  Attempt.logAbandoned(entry.claim, reason, options.shutdownGrace),
                  Effect.sync(() => end(entry, Exit.interrupt(fiber.id())))
                )
              )),
              // Stops may come from uninterruptible code; the timer must not be.
              Effect.interruptible,
              Effect.forkIn(scope),
              Effect.asVoid
            )
          )
        }
        // Begun (its fiber was started) and without a fiber: ended already.
        if (entry.taken) return Effect.void
        // Still buffered: end it now rather than when a place frees up.
        entry.taken = true
        end(entry, Exit.interrupt(FiberId.none))
        return Effect.void
      })

    const stopRun = (runId: RunId, reason: StopReason) =>
      Effect.suspend(() => {
        const entry = pool.inFlight.get(runId)
        return entry === undefined ? Effect.void : stop(entry, reason)
      })

    /** After an attempt's end is recorded: report a refused end, or let others take a handed-back run. */
    const afterRecorded = (claim: Claim, outcome: Outcome, stillHeld: boolean): Effect.Effect<void> | undefined => {
      // A run finished is one the end statement finished: a refused end finished nothing.
      if (stillHeld && metrics !== undefined) metrics.runFinished(claim.task, outcome._tag, (Date.now() - claim.firstStartedAt) / 1000)
      return !stillHeld
        ? Effect.logInfo(`attempt ${claim.attempt} of ${claim.runId} lost its lease; its ${outcome._tag} was refused`)
        : outcome._tag === "released" || outcome._tag === "retrying" || outcome._tag === "waiting"
        // Handed back: any worker (here or in another process) may take it now.
        // Retrying or waiting: idle workers learn when it is due (they sleep until
        // the next due run, or their poll), instead of finding it at their poll.
        ? queue.wake(claim.queue)
        : undefined
    }

    const endOf = (claim: Claim, outcome: Outcome) => ({
      runId: claim.runId,
      attempt: claim.attempt,
      outcome,
      limited: claim.limited,
      parentId: claim.parentId
    })

    /** Records the end of an attempt again while the database is away (the lease bounds it). */
    const recordRetrying = (claim: Claim, outcome: Outcome) =>
      writer.record(endOf(claim, outcome)).pipe(
        Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.upTo(options.lease))),
        Effect.flatMap((stillHeld) => afterRecorded(claim, outcome, stillHeld) ?? Effect.void),
        Effect.catchAllCause((cause) => Effect.logWarning(`could not record the end of ${claim.runId}; its lease will expire`, cause)),
        annotateRun(claim)
      )

    /**
     * Hands the end of an attempt to the writer without waiting for it:
     * waiting would cap a group at one run per place. The entry stays in
     * flight (its lease heartbeated, the shutdown waiting for it) until the end
     * is recorded, but its place in the pool is free at once: the next claim
     * does not wait for this commit (unless the writer is far behind: see
     * `placesTaken`). A failed write is retried in a fiber of its own.
     */
    const record = (entry: InFlight, outcome: Outcome): void => {
      // Marked before the submission, so that `free` always sees the mark.
      entry.recording = true
      pool.recording++
      prefetch.ended()
      writer.recordThen(endOf(entry.claim, outcome), (exit) => {
        if (Exit.isSuccess(exit)) {
          free(entry)
          return afterRecorded(entry.claim, outcome, exit.value)
        }
        return Effect.asVoid(FiberSet.run(recordingAgain, recordRetrying(entry.claim, outcome).pipe(Effect.ensuring(Effect.sync(() => free(entry))))))
      })
      claimLoop.placeFreed()
    }

    /** Lets the run go once its attempt is over and its end recorded (or abandoned). */
    const free = (entry: InFlight): void => {
      // The entry may be an older attempt of a run this pool claimed again.
      if (pool.inFlight.get(entry.claim.runId) === entry) pool.inFlight.delete(entry.claim.runId)
      if (entry.recording) pool.recording--
      else prefetch.ended()
      claimLoop.placeFreed()
    }

    /**
     * Ends an attempt once: decides its outcome and records it (`free` follows
     * the write), or frees the entry at once when there is nothing to record;
     * frees its place among the `concurrency`. Called when the run's fiber
     * ends (by `dispatch`, or the fiber's observer), or by the stop's timer for
     * a body that did not end in time after its interruption (abandoned: it
     * goes on running detached). Plain code, for every run: no effect steps.
     */
    const end = (entry: InFlight, exit: Exit.Exit<unknown, unknown>): void => {
      if (entry.ended) return
      entry.ended = true
      // Nothing interrupts it any more; let it be collected young (the entry
      // lives on until its end is recorded).
      entry.fiber = undefined
      const outcome = attempts.outcomeOf(entry.claim, exit, entry.stop)
      if (metrics !== undefined && entry.startedAt > 0) {
        metrics.attemptEnded(entry.claim.task, outcome?._tag ?? "lost", (Date.now() - entry.startedAt) / 1000)
      }
      if (outcome !== undefined) record(entry, outcome)
      else free(entry)
      if (entry.running) {
        entry.running = false
        pool.running--
        dispatch()
      }
    }

    /**
     * Gives buffered runs fibers of their own while fewer than `concurrency`
     * execute: one fiber per run, started from the task's runtime with the
     * run's log annotations, no runner fiber waiting on a queue in between.
     * The fiber is the attempt alone (interruptible: stops interrupt it); its
     * end is plain code, run when the fiber ends: here, for a body that ended
     * without waiting (the fiber runs at once, inside `runFork`), else by the
     * fiber's observer. A root fiber: a body abandoned after its interruption
     * may never end, and must not hold up the pool's shutdown; every body is
     * interrupted explicitly (`stop`), so none outlives the pool unasked.
     * Finding the buffer empty with a place free while the queue has more
     * runs is starving (see `Prefetch`).
     */
    const dispatch = (): void => {
      // A body that ends without waiting ends inside `runFork`, and its end
      // calls `dispatch` again. That call only frees its place; the loop
      // already running takes the next run, so runs start one after another
      // instead of each inside the last (a buffer of such runs would otherwise
      // overflow the stack).
      if (dispatching) return
      dispatching = true
      try {
        while (pool.accepting && pool.running < options.concurrency) {
          const entry = buffer.poll()
          if (entry === undefined) {
            if (!pool.idle) prefetch.starved()
            return
          }
          if (entry.taken) continue
          entry.taken = true
          entry.running = true
          pool.running++
          if (metrics !== undefined) {
            entry.startedAt = Date.now()
            metrics.attemptStarted(entry.claim.task, (entry.startedAt - entry.claim.runAt.getTime()) / 1000)
          }
          const annotations = attempts.annotationsOf(entry.claim)
          const attempt = tracing === undefined
            ? attempts.run(entry.claim)
            : Tracing.attemptSpan(entry.claim)(attempts.run(entry.claim))
          const fiber = Runtime.runFork(attempts.runtimeOf(entry.claim.task), attempt, {
            // The refs are the new fiber's already (`runFork` forked them).
            updateRefs: (refs, fiberId) => FiberRefs.updateAs(refs, { fiberId, fiberRef: FiberRef.currentLogAnnotations, value: annotations })
          })
          const exit = fiber.unsafePoll()
          if (exit !== null) {
            end(entry, exit)
          } else {
            entry.fiber = fiber
            fiber.addObserver((exit) => end(entry, exit))
          }
        }
      } finally {
        dispatching = false
      }
    }

    /** Makes claimed runs this pool's: counted, heartbeated, buffered, and started while places are free (all at once: claims are large). */
    const register = (claims: ReadonlyArray<Claim>) =>
      Effect.gen(function*() {
        const entries = claims.map(inFlight)
        for (const entry of entries) {
          // This pool lost the run's previous attempt (its lease lapsed) and got it back.
          const previous = pool.inFlight.get(entry.claim.runId)
          if (previous !== undefined) yield* stop(previous, "leaseLost")
          pool.inFlight.set(entry.claim.runId, entry)
        }
        buffer.offerAll(entries)
        dispatch()
        // Handed over while the pool shuts down: straight back to the queue.
        if (!pool.accepting) for (const entry of entries) yield* stop(entry, "shutdown")
      })

    // Tasks with limits per key: claimed by the claim's limited part only, never taken at their start.
    const limitedTasks = registry.names.filter((name) =>
      Option.exists(registry.get(name), ({ task }) => Limits.isLimited(task.limits))
    )
    // The scopes of limits it serves: its limited tasks' and its limited queues'...
    const declaredScopes = [
      ...limitedTasks.map(Limits.taskScope),
      ...options.queues.filter((name) => queueLimits.limited.includes(name)).map(Limits.queueScope)
    ]
    // ...and those of its other tasks and queues with runs still waiting under a key: limits this
    // program's definitions dropped (or another program's declare), claimed until they are done.
    const otherScopes = [...registry.names.map(Limits.taskScope), ...options.queues.map(Limits.queueScope)]
      .filter((scope) => !declaredScopes.includes(scope))
    const waitingScopes = yield* queue.scopesWaiting(otherScopes).pipe(
      Effect.catchAllCause((cause) =>
        Effect.as(Effect.logWarning("could not look for waiting runs of limits this program does not declare", cause), [])
      )
    )
    const claimLoop = yield* ClaimLoop.make({
      pool,
      workerId,
      queues: options.queues,
      tasks: registry.names,
      limitScopes: [...declaredScopes, ...waitingScopes],
      leaseMs,
      pollInterval: options.pollInterval,
      // Its claims bring each run's traceparent (`Claiming.ClaimOptions.traced`).
      traced: tracing !== undefined,
      register
    })

    /**
     * This pool as a taker of runs started in its program (`queue/Claiming.ts`):
     * only while it is idle (its last claim found nothing more) and a place is
     * free, so a run handed over starts at once and jumps no run that was ready.
     */
    const taker: Taker = {
      workerId,
      leaseMs,
      queues: new Set(options.queues),
      // Not the limited tasks: their runs wait for their key's slot, which only the claim counts.
      tasks: new Set(registry.names.filter((name) => !limitedTasks.includes(name))),
      tryReserve: () => {
        if (!pool.accepting || !pool.idle || pool.inFlight.size + pool.reserved >= options.concurrency) return false
        pool.reserved++
        return true
      },
      cancel: () => {
        pool.reserved--
      },
      take: (claim) =>
        Effect.suspend(() => {
          pool.reserved--
          pool.takenAtStart++
          return register([claim])
        })
    }
    yield* queue.handoff.register(taker)

    if (metrics !== undefined) {
      metrics.queuesServed(options.queues)
      yield* metrics.gauge(
        Metrics.names.inFlight,
        "Runs a worker pool holds: buffered, running, or whose end is being recorded.",
        Effect.sync(() => [{ labels: { worker: workerId }, value: pool.inFlight.size }])
      )
    }

    yield* Heartbeat.make({ pool, workerId, leaseMs, stop, annotate })

    const claimer = yield* Effect.forkScoped(annotate(claimLoop.run))

    const drained = Effect.gen(function*() {
      while (pool.inFlight.size > 0) yield* Queue.take(pool.signal)
    })

    // Added last, so it runs first when the scope closes, while the writer,
    // the heartbeat and the listener are still up.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        pool.accepting = false
        yield* Fiber.interrupt(claimer)
        // Runs not started yet go back at once.
        for (const entry of [...pool.inFlight.values()]) {
          if (!entry.taken) yield* stopRun(entry.claim.runId, "shutdown")
        }
        // Said at once: else a Ctrl-C is silent for up to the grace period.
        if (pool.inFlight.size > 0) {
          yield* Effect.logInfo(
            `shutting down: waiting up to ${Duration.format(options.shutdownGrace)} for ${pool.inFlight.size} run(s) ` +
              "in flight to finish; those still running then are handed back"
          )
        }
        // Finalizers run uninterruptibly: let the timeout interrupt the wait.
        const finished = yield* drained.pipe(Effect.interruptible, Effect.timeoutOption(options.shutdownGrace))
        if (Option.isNone(finished)) {
          yield* Effect.logInfo(`handing back ${pool.inFlight.size} run(s) still in flight`)
          for (const runId of [...pool.inFlight.keys()]) yield* stopRun(runId, "shutdown")
          yield* drained
        }
      })
    )

    return {
      workerId,
      inFlight: Effect.sync(() => pool.inFlight.size),
      takenAtStart: Effect.sync(() => pool.takenAtStart)
    } satisfies Pool
  })
