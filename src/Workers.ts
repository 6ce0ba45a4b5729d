/**
 * A scoped pool of workers. Building the layer starts them; closing its scope
 * stops claiming, lets in-flight runs finish within a grace period, then
 * interrupts the rest and hands their runs back so another worker takes them at
 * once. No program runs tasks unless it includes this layer.
 * @since 0.1.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import {
  Cause,
  Clock,
  Config,
  Context,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberId,
  FiberRef,
  FiberRefs,
  FiberSet,
  HashMap,
  Layer,
  Option,
  Order,
  type ParseResult,
  Queue,
  Random,
  Runtime,
  RuntimeFlags,
  Schedule,
  Schema
} from "effect"
import { InvalidInput, LeaseLost } from "./domain/Errors.ts"
import { makeInstanceId, type RunId } from "./domain/Ids.ts"
import type { RunError } from "./domain/Run.ts"
import { TaskEventType } from "./domain/RunEvent.ts"
import { type AppendItem, EventLog } from "./EventLog.ts"
import * as GroupCommit from "./internal/GroupCommit.ts"
import type * as Handoff from "./internal/Handoff.ts"
import { interruptWithin } from "./internal/interruptWithin.ts"
import { storableJson, storableText } from "./internal/jsonb.ts"
import * as Prefetch from "./internal/Prefetch.ts"
import * as PriorityBuffer from "./internal/PriorityBuffer.ts"
import { now } from "./internal/time.ts"
import { Outbox } from "./Outbox.ts"
import { NotifyChannel, PgListener } from "./PgListener.ts"
import { type Claim, type Finish, type Outcome, Queue as RunQueue } from "./Queue.ts"
import * as Task from "./Task.ts"

export interface WorkersOptions {
  /** How many runs execute at once. */
  readonly concurrency: number
  /**
   * The most claimed runs that may wait in the local buffer beyond those
   * executing. Claims come in batches of up to `concurrency + prefetch`, so one
   * statement feeds many runs; a buffered run holds its lease (heartbeats cover it).
   */
  readonly prefetch: number
  /**
   * The buffer holds about as many runs as the pool ends in this window (up to
   * `prefetch`): large for quick runs, next to nothing for slow ones, which
   * other workers may start instead. `Duration.infinity`: always `prefetch`.
   */
  readonly prefetchWindow: Duration.Duration
  /** Which named queues to take runs from. */
  readonly queues: ReadonlyArray<string>
  /** How long a claim holds a run without a heartbeat; renewed every third of it. */
  readonly lease: Duration.Duration
  /** On shutdown, how long in-flight runs may take to finish before they are handed back. */
  readonly shutdownGrace: Duration.Duration
  /** The longest an idle worker waits before it looks for due runs (wake-ups are the fast path). */
  readonly pollInterval: Duration.Duration
  /** How often expired leases are reclaimed. */
  readonly reclaimInterval: Duration.Duration
}

/** @category config */
export const WorkersConfig: Config.Config<WorkersOptions> = Config.all({
  concurrency: Config.integer("RUNSTREAM_WORKER_CONCURRENCY").pipe(
    // Validate before the default, or the error loses the variable's name.
    Config.validate({ message: "must be between 1 and 10000", validation: (n) => n >= 1 && n <= 10_000 }),
    Config.withDefault(10)
  ),
  prefetch: Config.integer("RUNSTREAM_WORKER_PREFETCH").pipe(
    Config.validate({ message: "must be between 0 and 10000", validation: (n) => n >= 0 && n <= 10_000 }),
    Config.withDefault(500)
  ),
  prefetchWindow: Config.duration("RUNSTREAM_WORKER_PREFETCH_WINDOW").pipe(Config.withDefault(Duration.millis(100))),
  queues: Config.array(Config.string(), "RUNSTREAM_WORKER_QUEUES").pipe(
    Config.validate({ message: "must name at least one queue", validation: (qs) => qs.length > 0 }),
    Config.withDefault(["default"])
  ),
  lease: Config.duration("RUNSTREAM_LEASE").pipe(
    Config.validate({ message: "must be at least 300 millis", validation: (d) => Duration.toMillis(d) >= 300 }),
    Config.withDefault(Duration.seconds(30))
  ),
  shutdownGrace: Config.duration("RUNSTREAM_SHUTDOWN_GRACE").pipe(Config.withDefault(Duration.seconds(10))),
  pollInterval: Config.duration("RUNSTREAM_WORKER_POLL").pipe(Config.withDefault(Duration.seconds(2))),
  reclaimInterval: Config.duration("RUNSTREAM_RECLAIM_INTERVAL").pipe(Config.withDefault(Duration.seconds(1)))
})

export class Workers extends Context.Tag("runstream/Workers")<Workers, {
  readonly workerId: string
  /** Runs this pool holds now: waiting in its buffer, executing, or whose end is being written. */
  readonly inFlight: Effect.Effect<number>
  /** Runs this pool took as they were started in its program, without a claim (see `internal/Handoff.ts`). */
  readonly takenAtStart: Effect.Effect<number>
}>() {}

/** A body's attempt ran out of time. */
export class TaskTimeout extends Schema.TaggedError<TaskTimeout>()("TaskTimeout", {
  timeoutMs: Schema.Number
}) {
  override get message() {
    return `the attempt took longer than ${this.timeoutMs} ms`
  }
}

type StopReason = "cancel" | "leaseLost" | "shutdown"

/** A claimed run, buffered or executing. */
interface InFlight {
  readonly claim: Claim
  /** Set when it is given a fiber of its own (or a stop ended it while it was buffered). */
  taken: boolean
  /** Set when it was given a fiber of its own: it holds one of the pool's `concurrency` places until concluded. */
  running: boolean
  /** Its fiber, from the moment its body begins until it is concluded (only stops use it). */
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  stop: StopReason | undefined
  /** Set once its attempt is over (or abandoned) and its outcome decided: see `conclude`. */
  concluded: boolean
  /** Set once its end is handed to the group commit: it no longer takes a place in the pool. */
  ending: boolean
}

type Write =
  | { readonly _tag: "emit"; readonly item: AppendItem }
  | { readonly _tag: "finish"; readonly item: Finish }

const maxMessage = 2000

/** The most items (emits, ends) one group commit writes. */
const writerBatch = 500
/** The most items waiting for the group commit: a few batches. */
const writerCapacity = writerBatch * 4

/**
 * Places taken in a pool: runs buffered or executing, places promised to runs
 * being started, and ends the writer has no room for yet. Ends the writer's
 * queue holds take no place (the next claim does not wait for their commit);
 * the others wait in their runs' fibers, and while they do the pool claims no
 * more: else a pool whose commits fall behind would take the whole queue into
 * memory, a fiber waiting for each run's end.
 */
export const placesTaken = (pool: {
  /** Runs the pool holds: buffered, executing, or ending. */
  readonly inFlight: number
  /** Among them, runs whose end is submitted to the writer and not written yet. */
  readonly ending: number
  readonly reserved: number
  readonly writerCapacity: number
}): number => pool.inFlight - Math.min(pool.ending, pool.writerCapacity) + pool.reserved

/**
 * Errors that no retry can cure. An output that fails its schema or cannot be
 * stored is one: the same input gives the same output again.
 */
const isPermanent = (tag: string) =>
  tag === "PermanentError" || tag === "InputInvalid" || tag === "OutputInvalid" || tag === "UnknownTask"

/**
 * What is recorded of a failed attempt: the error's tag and message, bounded,
 * and storable (it goes into a batch with other runs' ends: text Postgres
 * cannot store would fail them all).
 */
export const runErrorOf = (cause: Cause.Cause<unknown>): RunError => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value as { readonly _tag?: unknown; readonly message?: unknown } | null
    const tag = typeof error?._tag === "string" ? error._tag : "Error"
    const message = typeof error?.message === "string" && error.message.length > 0 ? error.message : String(error)
    return { tag: storableText(tag.slice(0, 100)), message: storableText(message.slice(0, maxMessage)), retryable: !isPermanent(tag) }
  }
  const defect = Cause.squash(cause)
  const message = defect instanceof Error ? `${defect.name}: ${defect.message}` : String(defect)
  return { tag: "Defect", message: storableText(message.slice(0, maxMessage)), retryable: true }
}

const inputInvalid = (error: ParseResult.ParseError) => ({ _tag: "InputInvalid", message: error.message })
const outputInvalid = (error: ParseResult.ParseError) => ({ _tag: "OutputInvalid", message: error.message })

/**
 * Goes on with a decoding's result: at once when it is already there (a
 * schema without asynchronous parts decodes to an `Either`), else once it is.
 * Runs of quick tasks spend a fair share of their cost in such steps.
 */
const andThen = <A, B, E, R>(
  decoded: Effect.Effect<A, ParseResult.ParseError>,
  onFailure: (error: ParseResult.ParseError) => unknown,
  f: (a: A) => Effect.Effect<B, E, R>
): Effect.Effect<B, unknown, R> => {
  if (!Either.isEither(decoded)) return Effect.flatMap(Effect.mapError(decoded, onFailure), f)
  const result = decoded as Either.Either<A, ParseResult.ParseError>
  return Either.isRight(result) ? f(result.right) : Effect.fail(onFailure(result.left))
}

export const make = (options: WorkersOptions) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const queue = yield* RunQueue
    const log = yield* EventLog
    const outbox = yield* Outbox
    const listener = yield* PgListener
    const registry = yield* Task.TaskRegistry
    const workerId = yield* makeInstanceId("worker")
    const scope = yield* Effect.scope
    const leaseMs = Duration.toMillis(options.lease)
    const inFlight = new Map<RunId, InFlight>()
    // Pokes the claim loop (and the shutdown's drain): a slot it waits for was
    // freed, or a wake-up came. One queue, so waiting costs no race of two takes.
    const signal = yield* Queue.sliding<void>(1)
    const prefetch = Prefetch.make({ max: options.prefetch, windowMs: Duration.toMillis(options.prefetchWindow) })
    // Best first: the order the queue claims in.
    const buffer = PriorityBuffer.make(Order.make<InFlight>((a, b) =>
      Order.number(b.claim.priority, a.claim.priority) ||
      Order.number(a.claim.runAt.getTime(), b.claim.runAt.getTime()) ||
      Order.string(a.claim.runId, b.claim.runId)
    ))
    // Ends of attempts written again after their group commit failed.
    const ending = yield* FiberSet.make()
    let accepting = true
    // Set by a wake-up (an enqueue here or elsewhere, a reconnect), cleared by the claim it causes.
    let woken = true
    // Set while the claim loop waits for work: its last claim found fewer runs than it asked for.
    let idle = false
    // Places promised to runs being started in this program (see `taker`).
    let reserved = 0
    // Attempts executing (or about to): at most `concurrency` (see `dispatch`).
    let running = 0
    // Set while `dispatch` starts runs (see there).
    let dispatching = false
    let takenAtStart = 0
    // Runs in flight whose end is written already or being written (see `finish`).
    let endingCount = 0
    const taking = () =>
      placesTaken({ inFlight: inFlight.size, ending: endingCount, reserved, writerCapacity })
    const batchThreshold = (capacity: number) => Math.max(1, Math.ceil(capacity / 2))

    const annotate = Effect.annotateLogs({ component: "Workers", workerId })
    const annotateRun = (claim: Claim) => Effect.annotateLogs({ runId: claim.runId, attempt: claim.attempt })

    // Emits and ends of attempts go through one writer, in submission order:
    // a run's last emit always commits before its end, and an attempt handed
    // back at shutdown commits after everything its body wrote.
    const write = yield* GroupCommit.make<Write, number | boolean | undefined, SqlError.SqlError>({
      maxBatch: writerBatch,
      capacity: writerCapacity,
      write: (batch) => {
        const emits = batch.flatMap((w) => w._tag === "emit" ? [w.item] : [])
        const finishes = batch.flatMap((w) => w._tag === "finish" ? [w.item] : [])
        const written = Effect.gen(function*() {
          const seqs = yield* log.append(emits)
          const held = yield* queue.finish({ workerId }, finishes)
          let e = 0
          return batch.map((w) => w._tag === "emit" ? seqs[e++] : held.has(w.item.runId))
        })
        // One statement is atomic on its own: BEGIN and COMMIT would cost two
        // more round trips (most batches of a busy pool are ends alone).
        return (emits.length > 0 && finishes.length > 0 ? sql.withTransaction(written) : written).pipe(
          Effect.tap(() => outbox.written)
        )
      }
    })

    /**
     * An interrupted body gets the shutdown grace to end; one that does not (its
     * finalizers hang) is left running detached, and its run moves on.
     */
    const abandoned = (claim: Claim, reason: string) =>
      Effect.logWarning(
        `attempt ${claim.attempt} of ${claim.runId} did not end within ${
          Duration.format(options.shutdownGrace)
        } of its interruption (${reason}); abandoned, it still runs detached`
      )

    const stopRun = (runId: RunId, reason: StopReason) =>
      Effect.suspend(() => {
        const entry = inFlight.get(runId)
        return entry === undefined ? Effect.void : stopEntry(entry, reason)
      })

    const stopEntry = (entry: InFlight, reason: StopReason) =>
      Effect.suspend(() => {
        if (entry.stop !== undefined) return Effect.void
        entry.stop = reason
        if (entry.fiber !== undefined) {
          return Effect.zipRight(
            Fiber.interruptFork(entry.fiber),
            // A body whose finalizers hang must not hold its place forever.
            Effect.sleep(options.shutdownGrace).pipe(
              Effect.zipRight(Effect.suspend(() =>
                entry.concluded
                  ? Effect.void
                  : Effect.zipRight(abandoned(entry.claim, reason), conclude(entry, Exit.interrupt(entry.fiber!.id())))
              )),
              // Stops may come from uninterruptible code; the timer must not be.
              Effect.interruptible,
              Effect.forkIn(scope),
              Effect.asVoid
            )
          )
        }
        // Its fiber has not begun: it sees the stop and skips the body.
        if (entry.taken) return Effect.void
        // Still buffered: end it now rather than when a place frees up.
        entry.taken = true
        return Effect.asVoid(Effect.forkDaemon(conclude(entry, Exit.interrupt(FiberId.none))))
      })

    const contextFor = (claim: Claim): Task.TaskContext => ({
      runId: claim.runId,
      attempt: claim.attempt,
      emit: (type, data) =>
        Effect.gen(function*() {
          if (!Schema.is(TaskEventType)(type)) {
            return yield* new InvalidInput({ message: `event type '${String(type).slice(0, 100)}' is empty, too long or reserved (run.*)` })
          }
          yield* log.checkSize(yield* storableJson("event data", data))
          const seq = yield* write.submit({ _tag: "emit", item: { runId: claim.runId, attempt: claim.attempt, type, data: data ?? null } })
          if (typeof seq !== "number") {
            return yield* new LeaseLost({ runId: claim.runId, attempt: claim.attempt })
          }
          return seq
        })
    })

    /**
     * Each task as its attempts need it, prepared once: its decoder and encoder,
     * and the runtime its runs' fibers start from (this pool's fiber refs and
     * context, with the services the task was registered with).
     */
    const workersRuntime = yield* annotate(Effect.runtime<never>())
    // Bodies must be interruptible (stops interrupt them), whatever the flags of the fiber that built the pool.
    const runtimeWith = (context: Context.Context<never>) =>
      Runtime.make({
        context,
        fiberRefs: workersRuntime.fiberRefs,
        runtimeFlags: RuntimeFlags.enable(workersRuntime.runtimeFlags, RuntimeFlags.Interruption)
      })
    const prepared = new Map(registry.names.map((name) => {
      const { context, task } = Option.getOrThrow(registry.get(name))
      return [name, {
        task,
        decode: Schema.decodeUnknown(task.input),
        encode: Schema.encodeUnknown(task.output),
        runtime: runtimeWith(Context.merge(workersRuntime.context, context)),
        timeoutMs: Option.getOrUndefined(Option.map(task.timeout, Duration.toMillis))
      }]
    }))
    // A run of a task this pool lacks fails at once with UnknownTask (see `attemptOf`).
    const unknownTaskRuntime = runtimeWith(workersRuntime.context)
    const baseAnnotations = FiberRefs.getOrDefault(workersRuntime.fiberRefs, FiberRef.currentLogAnnotations)

    /**
     * The attempt itself: decode, run with its timeout, encode. Fails with what
     * is recorded. Runs in the run's own fiber, which starts with the task's
     * context and the run's log annotations (see `dispatch`) instead of
     * wrapping the body in `provide` and `annotateLogs` (which restore them
     * afterwards): about a tenth of a run's cost on the throughput bench.
     */
    const attemptOf = (claim: Claim): Effect.Effect<unknown, unknown> => {
      const entry = prepared.get(claim.task)
      if (entry === undefined) {
        return Effect.fail({ _tag: "UnknownTask", message: `task '${claim.task}' is not registered with this worker` })
      }
      const { decode, encode, task } = entry
      return andThen(decode(claim.input), inputInvalid, (input) => {
        const timeoutMs = claim.timeoutMs ?? entry.timeoutMs
        const body = task.run(input, contextFor(claim))
        return Effect.flatMap(
          timeoutMs === undefined ? body : body.pipe(
            // The attempt ends at its timeout even if the body's finalizers hang.
            interruptWithin(options.shutdownGrace, abandoned(claim, "timeout")),
            Effect.timeoutFail({ duration: Duration.millis(timeoutMs), onTimeout: () => new TaskTimeout({ timeoutMs }) })
          ),
          (output) => andThen(encode(output), outputInvalid, storableOutput)
        )
      }) as Effect.Effect<unknown, unknown>
    }

    /**
     * The output is written in the run and its run.succeeded event: refused
     * here, it fails this run alone instead of the group commit it would join.
     */
    const storableOutput = (encoded: unknown) => {
      const json = storableJson("output", encoded)
      if (Either.isLeft(json)) return Effect.fail({ _tag: "OutputInvalid", message: json.left.message })
      return log.checkSize(json.right).pipe(
        Effect.mapError((error) => ({ _tag: "OutputInvalid", message: `output: ${error.message}` })),
        Effect.as(encoded)
      )
    }

    /** How the attempt ended, as recorded; none when its lease was lost. An effect only for a retry's random backoff. */
    const outcomeOf = (
      claim: Claim,
      exit: Exit.Exit<unknown, unknown>,
      stop: StopReason | undefined
    ): Effect.Effect<Option.Option<Outcome>> => {
      const decided = (outcome: Outcome | undefined) => Effect.succeed(Option.fromNullable(outcome))
      if (stop === "cancel") return decided({ _tag: "cancelled" })
      if (stop === "shutdown") return decided({ _tag: "released", reason: "worker shutdown" })
      if (stop === "leaseLost") return decided(undefined)
      if (Exit.isSuccess(exit)) return decided({ _tag: "succeeded", output: exit.value ?? null })
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure) && failure.value instanceof LeaseLost) return decided(undefined)
      if (Cause.isInterruptedOnly(exit.cause)) return decided({ _tag: "released", reason: "interrupted" })
      const error = runErrorOf(exit.cause)
      if (!error.retryable || claim.attempt >= claim.maxAttempts) return decided({ _tag: "failed", error })
      const policy = prepared.get(claim.task)?.task.retry ?? Task.defaultRetry
      return Effect.map(Random.next, (random) =>
        Option.some({ _tag: "retrying", error, delayMs: Duration.toMillis(Task.backoffDelay(policy, claim.attempt, random)) }))
    }

    /** After an attempt's end is written: report a refused end, or let others take a handed-back run. */
    const afterFinish = (claim: Claim, outcome: Outcome, held: number | boolean | undefined) =>
      held !== true
        ? Effect.logInfo(`attempt ${claim.attempt} of ${claim.runId} lost its lease; its ${outcome._tag} was refused`)
        : outcome._tag === "released" || outcome._tag === "retrying"
        // Handed back: any worker (here or in another process) may take it now.
        // Retrying: idle workers learn when it is due (they sleep until the
        // next due run, or their poll), instead of finding it at their poll.
        ? queue.wake(claim.queue)
        : Effect.void

    const finishItem = (claim: Claim, outcome: Outcome): Write => ({
      _tag: "finish",
      item: { runId: claim.runId, attempt: claim.attempt, outcome }
    })

    /** Writes the end of an attempt again while the database is away (the lease bounds it). */
    const finishRetrying = (claim: Claim, outcome: Outcome) =>
      write.submit(finishItem(claim, outcome)).pipe(
        Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.upTo(options.lease))),
        Effect.flatMap((held) => afterFinish(claim, outcome, held)),
        Effect.catchAllCause((cause) => Effect.logWarning(`could not record the end of ${claim.runId}; its lease will expire`, cause)),
        annotateRun(claim)
      )

    /**
     * Hands the end of an attempt to the group commit without waiting for it:
     * waiting would cap a group at one run per place. The entry stays in
     * flight (its lease heartbeated, the shutdown waiting for it) until the end
     * is written, but its place in the pool is free at once: the next claim
     * does not wait for this commit (unless the writer's queue is full: see
     * `taking`). A failed write is retried in a fiber of its own.
     */
    const finish = (entry: InFlight, outcome: Outcome) =>
      Effect.suspend(() => {
        // Marked before the submission, so that its release always sees the mark.
        entry.ending = true
        endingCount++
        prefetch.ended()
        return write.submitThen(finishItem(entry.claim, outcome), (exit) =>
          Exit.isSuccess(exit)
            ? Effect.zipRight(afterFinish(entry.claim, outcome, exit.value), release(entry))
            : Effect.asVoid(FiberSet.run(ending, finishRetrying(entry.claim, outcome).pipe(Effect.ensuring(release(entry))))))
      }).pipe(Effect.zipRight(placeFreed))

    /** Frees the run's place once its attempt is over and its end written (or abandoned). */
    const release = (entry: InFlight) =>
      Effect.suspend(() => {
        // The entry may be an older attempt of a run this pool claimed again.
        if (inFlight.get(entry.claim.runId) === entry) inFlight.delete(entry.claim.runId)
        if (entry.ending) endingCount--
        else prefetch.ended()
        return placeFreed
      })

    /**
     * Pokes the claim loop when it would act on a freed place (see `claimLoop`),
     * or for the shutdown's drain. Not while it waits for work: a place freed
     * then changes nothing, and the poke would cost it a wake-up per run.
     */
    const placeFreed = Effect.suspend(() => {
      const capacity = options.concurrency + prefetch.current()
      return !accepting || woken || (!idle && capacity - taking() >= batchThreshold(capacity))
        ? Queue.offer(signal, undefined)
        : Effect.void
    })

    /**
     * Ends an attempt once: decides its outcome and hands it to the group
     * commit (which releases the entry once written), or releases the entry
     * at once when there is nothing to write; frees its place among the
     * `concurrency`. Called by the run's fiber when its body ends, or by the
     * stop's timer for a body that did not end in time after its interruption
     * (abandoned: it goes on running detached).
     */
    const conclude = (entry: InFlight, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (entry.concluded) return Effect.void
        entry.concluded = true
        // Nothing interrupts it any more; let it be collected young (the entry
        // lives on until its end is written).
        entry.fiber = undefined
        if (entry.running) {
          entry.running = false
          running--
          dispatch()
        }
        return Effect.flatMap(outcomeOf(entry.claim, exit, entry.stop), (outcome) =>
          Option.isSome(outcome) ? finish(entry, outcome.value) : release(entry))
      }).pipe(Effect.uninterruptible)

    /**
     * A run's fiber: its body (interruptible: stops interrupt this fiber), then
     * its end. A root fiber: a body abandoned after its interruption may never
     * end, and must not hold up the pool's shutdown; every body is interrupted
     * explicitly (`stopEntry`), so none outlives the pool unasked.
     */
    const runEntry = (entry: InFlight) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.withFiberRuntime<void>((fiber) => {
          // Stopped after it was given this fiber, before it began.
          if (entry.stop !== undefined) return conclude(entry, Exit.interrupt(FiberId.none))
          entry.fiber = fiber as Fiber.RuntimeFiber<unknown, unknown>
          return Effect.flatMap(Effect.exit(restore(attemptOf(entry.claim))), (exit) => conclude(entry, exit))
        })
      )

    /**
     * Gives buffered runs fibers of their own while fewer than `concurrency`
     * execute: one fiber per run, started from the task's runtime with the
     * run's log annotations, no runner fiber waiting on a queue in between.
     * Finding the buffer empty with a place free while the queue has more runs
     * is starving (see `Prefetch`).
     */
    const dispatch = (): void => {
      // A fiber starts at once, inside `runFork`: a body that ends without
      // waiting concludes there and calls `dispatch` again. That call only
      // frees its place; the loop already running takes the next run, so runs
      // start one after another instead of each inside the last (a buffer of
      // such runs would otherwise overflow the stack).
      if (dispatching) return
      dispatching = true
      try {
        while (accepting && running < options.concurrency) {
          const entry = buffer.poll()
          if (entry === undefined) {
            if (!idle) prefetch.starved()
            return
          }
          if (entry.taken) continue
          entry.taken = true
          entry.running = true
          running++
          const claim = entry.claim
          const annotations = HashMap.set(HashMap.set(baseAnnotations, "runId", claim.runId), "attempt", claim.attempt)
          Runtime.runFork(prepared.get(claim.task)?.runtime ?? unknownTaskRuntime, runEntry(entry), {
            // The refs are the new fiber's already (`runFork` forked them).
            updateRefs: (refs, fiberId) =>
              FiberRefs.updateManyAs(refs, { entries: [[FiberRef.currentLogAnnotations, [[fiberId, annotations]]]] })
          })
        }
      } finally {
        dispatching = false
      }
    }

    const wakeups = yield* queue.wakeups
    yield* Queue.take(wakeups).pipe(
      Effect.zipRight(Effect.suspend(() => {
        woken = true
        return Queue.offer(signal, undefined)
      })),
      Effect.forever,
      Effect.forkScoped
    )

    /** Until a wake-up, the next due run or the poll interval, whichever comes first. */
    const waitForWork = Effect.gen(function*() {
      const due = yield* queue.nextDue(options.queues)
      const pollMs = Duration.toMillis(options.pollInterval)
      const start = (yield* now).getTime()
      const deadline = start + Option.match(due, { onNone: () => pollMs, onSome: (date) => Math.min(pollMs, date.getTime() - start) })
      while (!woken) {
        const left = deadline - (yield* now).getTime()
        if (left <= 0) return
        yield* Queue.take(signal).pipe(Effect.timeoutOption(Duration.millis(left)))
      }
    })

    /**
     * Claims and registers a batch. Uninterruptible: a claim committed by the
     * database is always registered here, so a shutdown hands it back instead of
     * leaving it leased until its lease expires.
     */
    const claimBatch = (limit: number) =>
      Effect.gen(function*() {
        const claims = yield* queue.claim({ workerId, queues: options.queues, tasks: registry.names, limit, leaseMs })
        if (claims.length > 0) yield* outbox.written
        yield* register(claims)
        return claims
      }).pipe(Effect.uninterruptible)

    /** Makes claimed runs this pool's: counted, heartbeated, buffered, and started while places are free (all at once: claims are large). */
    const register = (claims: ReadonlyArray<Claim>) =>
      Effect.gen(function*() {
        const entries = claims.map((claim): InFlight => ({
          claim,
          taken: false,
          running: false,
          fiber: undefined,
          stop: undefined,
          concluded: false,
          ending: false
        }))
        for (const entry of entries) {
          // This pool lost the run's previous attempt (its lease lapsed) and got it back.
          const previous = inFlight.get(entry.claim.runId)
          if (previous !== undefined) yield* stopEntry(previous, "leaseLost")
          inFlight.set(entry.claim.runId, entry)
        }
        buffer.offerAll(entries)
        dispatch()
        // Handed over while the pool shuts down: straight back to the queue.
        if (!accepting) for (const entry of entries) yield* stopEntry(entry, "shutdown")
      })

    /**
     * This pool as a taker of runs started in its program (`internal/Handoff.ts`):
     * only while it is idle (its last claim found nothing more) and a place is
     * free, so a run handed over starts at once and jumps no run that was ready.
     */
    const taker: Handoff.Taker = {
      workerId,
      leaseMs,
      queues: new Set(options.queues),
      tasks: new Set(registry.names),
      tryReserve: () => {
        if (!accepting || !idle || inFlight.size + reserved >= options.concurrency) return false
        reserved++
        return true
      },
      cancel: () => {
        reserved--
      },
      take: (claim) =>
        Effect.suspend(() => {
          reserved--
          takenAtStart++
          return register([claim])
        })
    }
    yield* queue.handoff.register(taker)

    const claimLoop = Effect.gen(function*() {
      while (accepting) {
        const capacity = options.concurrency + prefetch.size(yield* Clock.currentTimeMillis)
        const free = capacity - taking()
        // While runs flow, claim when half the capacity is free: fewer, larger
        // claims. Woken (by an enqueue, or the poll): whatever is free, however little.
        if (free < batchThreshold(capacity) && !(woken && free > 0)) {
          yield* Queue.take(signal)
          continue
        }
        woken = false
        const claims = yield* claimBatch(free)
        if (claims.length < free) {
          idle = true
          yield* waitForWork.pipe(Effect.ensuring(Effect.sync(() => {
            idle = false
          })))
          // The poll claims whatever is free, as a wake-up does.
          woken = true
        }
      }
    }).pipe(
      Effect.catchAllCause((cause) => Effect.zipRight(Effect.logWarning("claim failed; retrying", cause), Effect.sleep(options.pollInterval))),
      Effect.forever
    )

    const heartbeat = Effect.gen(function*() {
      const entries = [...inFlight.values()]
      const runs = entries.map((entry) => ({ runId: entry.claim.runId, attempt: entry.claim.attempt }))
      const result = yield* queue.heartbeat({ workerId, runs, leaseMs })
      // Stop the very attempts asked about: the run may have been claimed again meanwhile.
      for (const entry of entries) {
        if (!result.held.has(entry.claim.runId)) yield* stopEntry(entry, "leaseLost")
        else if (result.cancelRequested.has(entry.claim.runId)) yield* stopEntry(entry, "cancel")
      }
    }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("heartbeat failed", cause)))

    const cancellations = yield* listener.subscribe(NotifyChannel.cancel)
    yield* Queue.take(cancellations).pipe(
      Effect.flatMap((message) =>
        message._tag === "Notification" ? stopRun(message.payload as RunId, "cancel") : heartbeat
      ),
      Effect.forever,
      annotate,
      Effect.forkScoped
    )

    yield* heartbeat.pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(leaseMs / 3))),
      annotate,
      Effect.forkScoped
    )

    yield* queue.reclaimExpired(500).pipe(
      Effect.tap((n) => n > 0 ? Effect.zipRight(outbox.written, Effect.forEach(options.queues, queue.wake)) : Effect.void),
      Effect.catchAllCause((cause) => Effect.logWarning("reclaim failed", cause)),
      Effect.repeat(Schedule.spaced(options.reclaimInterval)),
      annotate,
      Effect.forkScoped
    )

    const claimer = yield* Effect.forkScoped(annotate(claimLoop))

    const drained = Effect.gen(function*() {
      while (inFlight.size > 0) yield* Queue.take(signal)
    })

    // Added last, so it runs first when the scope closes, while the writer,
    // the heartbeat and the listener are still up.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        accepting = false
        yield* Fiber.interrupt(claimer)
        // Runs not started yet go back at once.
        for (const entry of [...inFlight.values()]) {
          if (!entry.taken) yield* stopRun(entry.claim.runId, "shutdown")
        }
        // Said at once: else a Ctrl-C is silent for up to the grace period.
        if (inFlight.size > 0) {
          yield* Effect.logInfo(
            `shutting down: waiting up to ${Duration.format(options.shutdownGrace)} for ${inFlight.size} run(s) ` +
              "in flight to finish; those still running then are handed back"
          )
        }
        // Finalizers run uninterruptibly: let the timeout interrupt the wait.
        const finished = yield* drained.pipe(Effect.interruptible, Effect.timeoutOption(options.shutdownGrace))
        if (Option.isNone(finished)) {
          yield* Effect.logInfo(`handing back ${inFlight.size} run(s) still in flight`)
          for (const runId of [...inFlight.keys()]) yield* stopRun(runId, "shutdown")
          yield* drained
        }
      })
    )

    return Workers.of({
      workerId,
      inFlight: Effect.sync(() => inFlight.size),
      takenAtStart: Effect.sync(() => takenAtStart)
    })
  })

/** Overrides of `WorkersOptions` (durations in any `DurationInput` form). */
export interface WorkersSettings {
  readonly concurrency?: number | undefined
  readonly prefetch?: number | undefined
  readonly prefetchWindow?: Duration.DurationInput | undefined
  readonly queues?: ReadonlyArray<string> | undefined
  readonly lease?: Duration.DurationInput | undefined
  readonly shutdownGrace?: Duration.DurationInput | undefined
  readonly pollInterval?: Duration.DurationInput | undefined
  readonly reclaimInterval?: Duration.DurationInput | undefined
}

const duration = (input: Duration.DurationInput | undefined, fallback: Duration.Duration) =>
  input === undefined ? fallback : Duration.decode(input)

/**
 * Workers configured from the environment (`RUNSTREAM_WORKER_*`, `RUNSTREAM_LEASE`, ...),
 * with `overrides` taking precedence.
 */
export const layer = (overrides: WorkersSettings = {}) =>
  Layer.scoped(
    Workers,
    Effect.flatMap(WorkersConfig, (config) =>
      make({
        concurrency: overrides.concurrency ?? config.concurrency,
        prefetch: overrides.prefetch ?? config.prefetch,
        prefetchWindow: duration(overrides.prefetchWindow, config.prefetchWindow),
        queues: overrides.queues ?? config.queues,
        lease: duration(overrides.lease, config.lease),
        shutdownGrace: duration(overrides.shutdownGrace, config.shutdownGrace),
        pollInterval: duration(overrides.pollInterval, config.pollInterval),
        reclaimInterval: duration(overrides.reclaimInterval, config.reclaimInterval)
      }))
  )
