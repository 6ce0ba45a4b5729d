/**
 * A run's journal, as one attempt sees it: the results of the steps
 * (`ctx.step`) that its earlier attempts completed, read back from the run's
 * log (its `step.completed` events) with one query when the attempt's first
 * step runs, and those the attempt completes itself. An attempt makes one
 * only when its body calls `ctx.step`: runs of tasks without steps pay
 * nothing for it.
 *
 * Steps are matched by position (the order in which the body calls
 * `ctx.step`, which is how a deterministic body replays; calls, not
 * completions, so steps run concurrently keep their places) and by name
 * (unique per run). A replay that calls a step where the journal records
 * another one, or records it elsewhere, or whose recorded output no longer
 * decodes, breaks the journal: that step and every later one fail with
 * `NonDeterministic`, and so does the attempt, whatever the body makes of it
 * (`broken`), since `NonDeterministic` is permanent the run fails. A task
 * with `journalMatch: "name"` (`byName`) has its calls matched by name
 * alone, their kind still checked: a replay may make them in another order.
 *
 * Durable sleeps (`ctx.sleep`) are journaled the same way, in the same
 * sequence of positions and names (`sleep.started` with the wake-up time,
 * written at the first call). A sleep whose time has not come suspends the
 * attempt (`suspended`): the body is interrupted, and the attempt ends
 * `waiting` until the earliest wake-up its sleeps asked for, whatever the body
 * makes of the interruption. A replay after that time returns at once.
 *
 * A wait for a signal (`ctx.waitForSignal`) is journaled in the same
 * sequence too. It reads the run's signal of that name (one query by key,
 * when the journal has not decided the wait already): there, and sent before
 * the wait's deadline, it is journaled as received (`signal.received`, with
 * its data) and returned; else, past the deadline, the wait is journaled as
 * timed out (`signal.timedOut`) and fails with `SignalTimeout`; else the
 * first call journals the deadline (`signal.waiting`) and the attempt
 * suspends until it (for ever without one), to be woken by the signal.
 *
 * Child runs (`ctx.start`) take places and names in the same sequence
 * (`child.started` with the child's id, written once the child is created);
 * the replay gets the same child back. Awaiting children (`ctx.await`,
 * `ctx.all`) reads their results from the journal (`child.completed`, by
 * the child's name) and, for those not there, their runs (one query): a
 * result found is journaled; children still unfinished suspend the attempt
 * (`children:<name>`), and the last of them to end wakes the run.
 * @since 0.3.0
 */
import type { SqlError } from "@effect/sql"
import { Clock, Deferred, Effect, Exit, FiberId, Option, ParseResult, Predicate, Schema } from "effect"
import { ChildFailed } from "../domain/ChildFailed.ts"
import { clip, DuplicateStep, InvalidInput, NonDeterministic } from "../domain/Errors.ts"
import type { RunId } from "../domain/Ids.ts"
import type { RunError, RunStatus } from "../domain/Run.ts"
import {
  childCompletedType,
  childStartedType,
  type RunEvent,
  signalReceivedType,
  signalTimedOutType,
  signalWaitingType,
  sleepStartedType
} from "../domain/RunEvent.ts"
import { SignalTimeout } from "../domain/Signal.ts"
import type * as Task from "../Task.ts"

/** What a `step.completed` event holds. */
export interface StepEntry {
  readonly _tag: "step"
  readonly name: string
  /** The step's place among the body's calls of `ctx.step` and `ctx.sleep`, from 0. */
  readonly position: number
  /** The step's result, encoded with its `output` schema. */
  readonly output: unknown
}

/** What a `sleep.started` event holds (`until` as an ISO 8601 time in the event). */
export interface SleepEntry {
  readonly _tag: "sleep"
  readonly name: string
  readonly position: number
  /** When the sleep ends, epoch milliseconds (the program's `Clock`). */
  readonly until: number
}

/**
 * What the `signal.*` events of one wait hold, merged: `until` from its
 * `signal.waiting`, `outcome` from its `signal.received` or `signal.timedOut`.
 */
export interface SignalEntry {
  readonly _tag: "signal"
  readonly name: string
  readonly position: number
  /** The wait's deadline, epoch milliseconds; null: none; absent when the signal was there at the first call. */
  readonly until?: number | null
  /** How the wait ended, if it did: the signal's data as sent, or its timeout. */
  readonly outcome?: { readonly _tag: "received"; readonly data: unknown } | { readonly _tag: "timedOut" }
}


/** A signal of the run as the journal reads it: its data as sent, and when it came (epoch milliseconds). */
export interface SentSignal {
  readonly data: unknown
  readonly at: number
}

/** What a `child.started` event holds. */
export interface ChildEntry {
  readonly _tag: "child"
  readonly name: string
  readonly position: number
  readonly childId: RunId
  readonly task: string
}

/** What a `child.completed` event holds: the child's encoded output, or why it has none. */
export interface ChildResult {
  readonly name: string
  readonly childId: RunId
  readonly result:
    | { readonly _tag: "output"; readonly output: unknown }
    | {
      readonly _tag: "error"
      readonly status: "failed" | "cancelled"
      readonly error: { readonly tag: string; readonly message: string }
    }
}

export type Entry = StepEntry | SleepEntry | SignalEntry | ChildEntry

/** A child run as the journal reads it while awaiting it. */
export interface ChildState {
  readonly id: RunId
  readonly status: RunStatus
  readonly output: unknown
  readonly error: RunError | null
}

/** A child to start, as the journal asks for it. */
export interface ChildStart {
  readonly name: string
  readonly position: number
  readonly task: string
  /** The input, encoded with the task's input schema. */
  readonly input: unknown
  /** `<parent id>/child/<name>`. */
  readonly idempotencyKey: string
  readonly options: Omit<Task.ChildOptions, "name">
}

/** The longest name of a child (its idempotency key holds it, after the parent's id). */
export const maxChildName = 100

/**
 * The most children one wait is on (`ctx.all`): the parent's job holds the
 * unfinished ones, and each child's end rewrites that list. Await more in
 * chunks (each chunk one wait).
 */
export const maxAwaited = 1000

/** The largest epoch milliseconds a `Date` holds. */
const maxDate = 8.64e15

/** Why an attempt stops: a sleep whose time has not come, or a wait for a signal that has not. */
export interface Suspension {
  /** The earliest wake-up the attempt's sleeps and waits asked for, epoch milliseconds (`Infinity`: none). */
  readonly until: number
  /** `sleep:<name>` or `signal:<name>` of the call that asked for it; `children:<name>` of an await. */
  readonly waitingFor: string
  /** The children an await waits for, if any (`until` is then `Infinity` unless a sleep asked for a time too). */
  readonly children?: ReadonlyArray<RunId> | undefined
}

export interface Journal {
  readonly step: Task.TaskContext["step"]
  /** A durable sleep until the time `wake` gives from the time of its first call. */
  readonly sleep: (name: string, wake: (now: number) => number) => Effect.Effect<void, Task.SleepError>
  /** A durable wait for the signal `name`, failing with `SignalTimeout` `timeoutMs` after its first call (none: no timeout). */
  readonly waitForSignal: <A, I>(
    name: string,
    schema: Schema.Schema<A, I, never>,
    timeoutMs: number | undefined
  ) => Effect.Effect<A, SignalTimeout | Task.SleepError>
  /** The mismatch this attempt found between its replay and the journal, if any. */
  readonly broken: () => NonDeterministic | undefined
  /** The sleep that suspended this attempt, if any. */
  readonly suspended: () => Suspension | undefined
  /** A child run started (`ctx.start`), journaled. */
  readonly start: <T extends Task.Any>(
    task: T,
    input: Task.InputOf<T>,
    options?: Task.ChildOptions
  ) => Effect.Effect<Task.Child<Task.OutputOf<T>>, Task.ChildStartError>
  /** The results of children (`ctx.await`, `ctx.all`), in their order. */
  readonly awaitAll: <C extends ReadonlyArray<Task.Child<any>>>(
    children: C
  ) => Effect.Effect<Task.OutputsOf<C>, ChildFailed | Task.ChildAwaitError>
}

/** An event's data as an entry; none for data the journal did not write. */
const entryOf = (event: RunEvent): Entry | undefined => {
  const data = event.data
  if (!Predicate.isRecord(data) || typeof data["name"] !== "string" || !Number.isSafeInteger(data["position"])) {
    return undefined
  }
  const name = data["name"]
  const position = data["position"] as number
  switch (event.type) {
    case signalWaitingType: {
      const until = data["until"] === null ? null : typeof data["until"] === "string" ? Date.parse(data["until"]) : NaN
      return until !== null && Number.isNaN(until) ? undefined : { _tag: "signal", name, position, until }
    }
    case signalReceivedType:
      return "data" in data ? { _tag: "signal", name, position, outcome: { _tag: "received", data: data["data"] } } : undefined
    case signalTimedOutType:
      return { _tag: "signal", name, position, outcome: { _tag: "timedOut" } }
    case childStartedType:
      return typeof data["childId"] === "string" && typeof data["task"] === "string"
        ? { _tag: "child", name, position, childId: data["childId"] as RunId, task: data["task"] }
        : undefined
  }
  if (event.type === sleepStartedType) {
    const until = typeof data["until"] === "string" ? Date.parse(data["until"]) : NaN
    return Number.isNaN(until) ? undefined : { _tag: "sleep", name, position, until }
  }
  return "output" in data ? { _tag: "step", name, position, output: data["output"] } : undefined
}

/** A `child.completed` event's data as a result; none for data the journal did not write. */
const childResultOf = (event: RunEvent): ChildResult | undefined => {
  const data = event.data
  if (!Predicate.isRecord(data) || typeof data["name"] !== "string" || typeof data["childId"] !== "string") return undefined
  const base = { name: data["name"], childId: data["childId"] as RunId }
  if ("output" in data) return { ...base, result: { _tag: "output", output: data["output"] } }
  const error = data["error"]
  if (
    Predicate.isRecord(error) && typeof error["tag"] === "string" && typeof error["message"] === "string" &&
    (error["status"] === "failed" || error["status"] === "cancelled")
  ) {
    return {
      ...base,
      result: { _tag: "error", status: error["status"], error: { tag: error["tag"], message: error["message"] } }
    }
  }
  return undefined
}

export const make = (options: {
  readonly runId: RunId
  /**
   * Match the journal by name alone (the task's `journalMatch: "name"`): a
   * replay may make its calls in another order than the attempt that
   * journaled them; a name's kind (step, sleep, ...) is still checked.
   */
  readonly byName?: boolean | undefined
  /** The run's journal events (`step.completed`, `sleep.started`, `signal.*`) so far. */
  readonly load: Effect.Effect<ReadonlyArray<RunEvent>, SqlError.SqlError>
  /** The run's signal of a name, if one was sent. */
  readonly readSignal: (name: string) => Effect.Effect<Option.Option<SentSignal>, SqlError.SqlError>
  /** Appends an entry to the run's log, fenced by the attempt's lease (as `ctx.emit`). */
  readonly record: (entry: Entry) => Effect.Effect<number, Task.EmitError>
  /** Appends a child's result to the run's log (as `record`). */
  readonly recordResult: (result: ChildResult) => Effect.Effect<number, Task.EmitError>
  /** Starts a child of this run (or returns the child its key already started): its id. */
  readonly startChild: (start: ChildStart) => Effect.Effect<RunId, Task.ChildStartError>
  /** The runs of these children, as they stand (one query). */
  readonly childStates: (ids: ReadonlyArray<RunId>) => Effect.Effect<ReadonlyArray<ChildState>, SqlError.SqlError>
}): Journal => {
  const { runId } = options
  const byPosition = new Map<number, Entry>()
  const byName = new Map<string, Entry>()
  // The children's results journaled so far, by the child's name.
  const results = new Map<string, ChildResult>()
  // The names this attempt's body called, and the next position.
  const called = new Set<string>()
  let next = 0
  let broken: NonDeterministic | undefined
  let suspension: Suspension | undefined
  let loaded = false
  let loading: Deferred.Deferred<void, SqlError.SqlError> | undefined

  const remember = (entry: Entry) => {
    // A wait's outcome joins its `signal.waiting` entry (its deadline): of
    // one name, so of one position too unless the journal is matched by name.
    const before = byName.get(entry.name)
    const merged = entry._tag === "signal" && before?._tag === "signal" ? { ...before, ...entry } : entry
    byPosition.set(entry.position, merged)
    byName.set(entry.name, merged)
  }

  /**
   * The earlier attempts' entries, read once, before the first step runs.
   * Steps started together wait for the one read; a read that fails is tried
   * again by the next step. Uninterruptible: one indexed query, and a step
   * interrupted halfway must not leave the others waiting for nothing.
   */
  const load: Effect.Effect<void, SqlError.SqlError> = Effect.suspend(() => {
    if (loaded) return Effect.void
    if (loading !== undefined) return Deferred.await(loading)
    const done = Deferred.unsafeMake<void, SqlError.SqlError>(FiberId.none)
    loading = done
    return options.load.pipe(
      Effect.map((events) => {
        for (const event of events) {
          if (event.type === childCompletedType) {
            const result = childResultOf(event)
            if (result !== undefined) results.set(result.name, result)
            continue
          }
          const entry = entryOf(event)
          if (entry !== undefined) remember(entry)
        }
        loaded = true
      }),
      Effect.exit,
      Effect.flatMap((exit) => {
        if (Exit.isFailure(exit)) loading = undefined
        return Effect.zipRight(Deferred.done(done, exit), exit)
      }),
      Effect.uninterruptible
    )
  })

  const breakWith = (position: number, step: string, message: string): NonDeterministic =>
    broken ??= new NonDeterministic({ runId, position, step, message: clip(message, 500) })
  const breaks = (position: number, step: string, message: string): Effect.Effect<never, NonDeterministic> =>
    Effect.fail(breakWith(position, step, message))

  /**
   * Ends the attempt: it waits until `until` (or earlier, for another sleep of
   * the attempt). An interruption: the body's finalizers run, and concurrent
   * steps and sleeps are interrupted (a step's effect interrupted so runs
   * again after the wake-up).
   */
  const suspend = (until: number, waitingFor: string): Effect.Effect<never> => {
    if (suspension === undefined || until < suspension.until) {
      // A wait on children suspended beside it is kept: whichever comes first wakes the run.
      suspension = { until, waitingFor, children: suspension?.children }
    }
    return Effect.interrupt
  }

  /** Ends the attempt until the last of `children` ends (see `suspend`). */
  const suspendFor = (children: ReadonlyArray<Task.Child<unknown>>): Effect.Effect<never> => {
    const ids = children.map((child) => child.id)
    suspension = suspension === undefined
      ? { until: Infinity, waitingFor: `children:${children[0]!.name}`, children: ids }
      : { ...suspension, children: [...(suspension.children ?? []), ...ids] }
    return Effect.interrupt
  }

  /**
   * The entry the journal holds at `position`, if any, checked against the
   * call the replay makes there (its name and kind); a mismatch breaks the journal.
   */
  const recorded = <T extends Entry["_tag"]>(
    position: number,
    name: string,
    tag: T
  ): { readonly here: Extract<Entry, { _tag: T }> | undefined } | NonDeterministic => {
    if (broken !== undefined) return broken
    const named = byName.get(name)
    if (options.byName === true) {
      if (named !== undefined && named._tag !== tag) {
        return breakWith(position, name, `'${name}' is a ${named._tag} in the journal, a ${tag} in this replay`)
      }
      return { here: named as Extract<Entry, { _tag: T }> | undefined }
    }
    const here = byPosition.get(position)
    if (here !== undefined && here.name !== name) {
      return breakWith(position, name, `step ${position} is '${here.name}' in the journal, '${name}' in this replay`)
    }
    if (named !== undefined && named.position !== position) {
      return breakWith(position, name, `step '${name}' is step ${named.position} in the journal, step ${position} in this replay`)
    }
    if (here !== undefined && here._tag !== tag) {
      return breakWith(position, name, `'${name}' is a ${here._tag} in the journal, a ${tag} in this replay`)
    }
    return { here: here as Extract<Entry, { _tag: T }> | undefined }
  }

  /** Takes the next position for a call named `name`; fails if the name was called before. */
  const take = (name: string): number | DuplicateStep => {
    if (called.has(name)) return new DuplicateStep({ runId, step: name })
    called.add(name)
    return next++
  }

  const sleep = (name: string, wake: (now: number) => number): Effect.Effect<void, Task.SleepError> => {
    // A body that carries on after its suspension runs no more journaled calls.
    if (suspension !== undefined) return Effect.interrupt
    const position = take(name)
    if (typeof position !== "number") return Effect.fail(position)
    return Effect.flatMap(load, () => {
      const checked = recorded(position, name, "sleep")
      if (checked instanceof NonDeterministic) return Effect.fail(checked)
      const here = checked.here
      return Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<void, Task.SleepError> => {
        if (here !== undefined) return now >= here.until ? Effect.void : suspend(here.until, `sleep:${name}`)
        // The wake-up time is taken at the first call and recorded: a replay sleeps until the same time.
        const until = wake(now)
        if (!Number.isFinite(until) || Math.abs(until) > maxDate) {
          return Effect.fail(new InvalidInput({ message: `sleep '${clip(name, 100)}' has no wake-up time a date can hold` }))
        }
        const entry: SleepEntry = { _tag: "sleep", name, position, until }
        return Effect.flatMap(options.record(entry), () => {
          remember(entry)
          return now >= entry.until ? Effect.void : suspend(entry.until, `sleep:${name}`)
        })
      })
    })
  }

  const step = <A, I, E, R>(
    name: string,
    effect: Effect.Effect<A, E, R>,
    stepOptions: Task.StepOptions<A, I, E>
  ): Effect.Effect<A, E | Task.StepError, R> => {
    if (suspension !== undefined) return Effect.interrupt
    // Names and places are taken when the body calls `step`, not when the
    // effect runs: a step run again (`Effect.retry` around it) keeps both.
    const position = take(name)
    if (typeof position !== "number") return Effect.fail(position)
    const schema = stepOptions.output
    const retry = stepOptions.retry
    const tried = retry === undefined
      ? effect
      : typeof retry === "number"
      ? Effect.retry(effect, { times: retry })
      : Effect.retry(effect, retry)
    const fresh = Effect.flatMap(tried, (value) =>
      Effect.flatMap(
        Effect.mapError(Schema.encode(schema)(value), (error) => InvalidInput.fromParseError(`output of step '${name}'`, error)),
        (output) => {
          const entry: StepEntry = { _tag: "step", name, position, output }
          return Effect.as(Effect.tap(options.record(entry), () => remember(entry)), value)
        }
      ))
    return Effect.flatMap(load, (): Effect.Effect<A, E | Task.StepError, R> => {
      const checked = recorded(position, name, "step")
      if (checked instanceof NonDeterministic) return Effect.fail(checked)
      const here = checked.here
      if (here === undefined) return fresh
      return Effect.catchAll(
        Schema.decodeUnknown(schema)(here.output),
        (error) =>
          breaks(
            position,
            name,
            `the recorded output of step '${name}' does not decode with its schema: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
          )
      )
    })
  }

  /** Records a signal entry and remembers it. */
  const recordSignal = (entry: SignalEntry) => Effect.tap(options.record(entry), () => remember(entry))

  const waitForSignal = <A, I>(
    name: string,
    schema: Schema.Schema<A, I, never>,
    timeoutMs: number | undefined
  ): Effect.Effect<A, SignalTimeout | Task.SleepError> => {
    if (suspension !== undefined) return Effect.interrupt
    const position = take(name)
    if (typeof position !== "number") return Effect.fail(position)
    const timedOut = new SignalTimeout({ runId, name })
    return Effect.flatMap(load, (): Effect.Effect<A, SignalTimeout | Task.SleepError> => {
      const checked = recorded(position, name, "signal")
      if (checked instanceof NonDeterministic) return Effect.fail(checked)
      const here = checked.here
      // Decided by an earlier attempt: decided the same, whatever was sent since.
      if (here?.outcome?._tag === "received") {
        return Effect.catchAll(
          Schema.decodeUnknown(schema)(here.outcome.data),
          (error) =>
            breaks(
              position,
              name,
              `the recorded data of signal '${name}' does not decode with its schema: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
            )
        )
      }
      if (here?.outcome?._tag === "timedOut") return Effect.fail(timedOut)
      return Effect.flatMap(
        Effect.zip(Clock.currentTimeMillis, options.readSignal(name)),
        ([now, sent]): Effect.Effect<A, SignalTimeout | Task.SleepError> => {
          // The deadline is taken at the first call and recorded: every replay waits until the same time.
          const until = here?.until !== undefined ? here.until : timeoutMs === undefined ? null : now + timeoutMs
          if (until !== null && (!Number.isFinite(until) || Math.abs(until) > maxDate)) {
            return Effect.fail(new InvalidInput({ message: `the timeout of signal '${clip(name, 100)}' gives no date` }))
          }
          // A signal sent before the deadline counts even if this replay comes later; one sent after never does.
          if (Option.isSome(sent) && (until === null || sent.value.at <= until)) {
            const data = sent.value.data
            // Data that does not decode is not journaled: a fix of the schema may still read it.
            return Effect.flatMap(
              Effect.mapError(Schema.decodeUnknown(schema)(data), (error) =>
                InvalidInput.fromParseError(`the data of signal '${clip(name, 100)}'`, error)),
              (value) => Effect.as(recordSignal({ _tag: "signal", name, position, outcome: { _tag: "received", data } }), value)
            )
          }
          if (until !== null && now >= until) {
            return Effect.zipRight(recordSignal({ _tag: "signal", name, position, outcome: { _tag: "timedOut" } }), Effect.fail(timedOut))
          }
          const waiting = here === undefined ? recordSignal({ _tag: "signal", name, position, until }) : Effect.void
          return Effect.zipRight(waiting, suspend(until ?? Infinity, `signal:${name}`))
        }
      )
    })
  }


  const start = <T extends Task.Any>(
    task: T,
    input: Task.InputOf<T>,
    startOptions?: Task.ChildOptions
  ): Effect.Effect<Task.Child<Task.OutputOf<T>>, Task.ChildStartError> => {
    if (suspension !== undefined) return Effect.interrupt
    const { name: given, ...childOptions } = startOptions ?? {}
    if (given !== undefined && (given.length === 0 || given.length > maxChildName)) {
      return Effect.fail(new InvalidInput({ message: `a child's name is 1-${maxChildName} characters: '${clip(given, 100)}'` }))
    }
    // Unnamed children are named by their place (a name the body is unlikely
    // to take: a step named so collides, as any two calls of one name do).
    const name = given ?? `#${next}`
    const position = take(name)
    if (typeof position !== "number") return Effect.fail(position)
    const handle = (childId: RunId): Task.Child<Task.OutputOf<T>> => ({ id: childId, name, task: task.name, output: task.output })
    const fresh = Effect.flatMap(
      Effect.mapError(
        Schema.encode(task.input as Schema.Schema<Task.InputOf<T>, unknown>)(input),
        (error) => InvalidInput.fromParseError(`input of child '${name}'`, error)
      ),
      (encoded) =>
        options.startChild({
          name,
          position,
          task: task.name,
          input: encoded,
          idempotencyKey: `${runId}/child/${name}`,
          options: childOptions
        })
    ).pipe(
      Effect.flatMap((childId) => {
        const entry: ChildEntry = { _tag: "child", name, position, childId, task: task.name }
        return Effect.as(Effect.tap(options.record(entry), () => remember(entry)), handle(childId))
      })
    )
    return Effect.flatMap(load, (): Effect.Effect<Task.Child<Task.OutputOf<T>>, Task.ChildStartError> => {
      const checked = recorded(position, name, "child")
      if (checked instanceof NonDeterministic) return Effect.fail(checked)
      const here = checked.here
      if (here === undefined) return fresh
      if (here.task !== task.name) {
        return breaks(position, name, `child '${name}' is a run of '${here.task}' in the journal, of '${task.name}' in this replay`)
      }
      return Effect.succeed(handle(here.childId))
    })
  }

  /** A child's journaled result as the body sees it: its decoded output, or `ChildFailed`. */
  const outcomeOf = <O>(child: Task.Child<O>, result: ChildResult): Effect.Effect<O, ChildFailed | NonDeterministic> => {
    const outcome = result.result
    if (outcome._tag === "error") {
      return Effect.fail(
        new ChildFailed({ childId: child.id, name: child.name, task: child.task, status: outcome.status, error: outcome.error })
      )
    }
    return Effect.catchAll(Schema.decodeUnknown(child.output)(outcome.output), (error) =>
      breaks(
        byName.get(child.name)?.position ?? -1,
        child.name,
        `the output of child '${child.name}' does not decode with its task's schema: ${
          ParseResult.TreeFormatter.formatErrorSync(error)
        }`
      ))
  }

  /** A finished child's run as a journal result. */
  const resultOf = (child: Task.Child<unknown>, state: ChildState): ChildResult => ({
    name: child.name,
    childId: child.id,
    result: state.status === "succeeded"
      ? { _tag: "output", output: state.output ?? null }
      : {
        _tag: "error",
        status: state.status === "cancelled" ? "cancelled" : "failed",
        error: state.status === "cancelled"
          ? { tag: "Cancelled", message: "the child run was cancelled" }
          : { tag: state.error?.tag ?? "Error", message: state.error?.message ?? "the child run failed" }
      }
  })

  const isDone = (state: ChildState | undefined) =>
    state !== undefined && (state.status === "succeeded" || state.status === "failed" || state.status === "cancelled")

  const awaitAll = <C extends ReadonlyArray<Task.Child<any>>>(
    children: C
  ): Effect.Effect<Task.OutputsOf<C>, ChildFailed | Task.ChildAwaitError> => {
    if (suspension !== undefined) return Effect.interrupt
    if (children.length > maxAwaited) {
      return Effect.fail(
        new InvalidInput({ message: `one wait is on at most ${maxAwaited} children (${children.length} given): await them in chunks` })
      )
    }
    return Effect.gen(function*() {
      yield* load
      if (broken !== undefined) return yield* Effect.fail(broken)
      const missing = children.filter((child) => !results.has(child.name))
      if (missing.length > 0) {
        const states = new Map(
          (yield* options.childStates(missing.map((child) => child.id))).map((state) => [state.id, state])
        )
        // Journaled together: the log's writer takes them as one batch.
        yield* Effect.forEach(missing.filter((child) => isDone(states.get(child.id))), (child) => {
          const result = resultOf(child, states.get(child.id)!)
          return Effect.tap(options.recordResult(result), () => results.set(child.name, result))
        }, { concurrency: "unbounded", discard: true })
        const gone = missing.find((child) => !states.has(child.id))
        if (gone !== undefined) {
          // Deleted (by retention) before its result was journaled: no wait would end.
          return yield* breaks(-1, gone.name, `child '${gone.name}' (run ${gone.id}) no longer exists and its result was never journaled`)
        }
        const pending = missing.filter((child) => !results.has(child.name))
        if (pending.length > 0) return yield* suspendFor(pending)
      }
      const outputs: Array<unknown> = []
      for (const child of children) outputs.push(yield* outcomeOf(child, results.get(child.name)!))
      return outputs as unknown as Task.OutputsOf<C>
    })
  }

  return { step, sleep, waitForSignal, start, awaitAll, broken: () => broken, suspended: () => suspension }
}
