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
 * (`broken`), since `NonDeterministic` is permanent the run fails.
 * @since 0.3.0
 */
import type { SqlError } from "@effect/sql"
import { Deferred, Effect, Exit, FiberId, ParseResult, Predicate, Schema } from "effect"
import { clip, DuplicateStep, InvalidInput, NonDeterministic } from "../domain/Errors.ts"
import type { RunId } from "../domain/Ids.ts"
import type { RunEvent } from "../domain/RunEvent.ts"
import type * as Task from "../Task.ts"

/** What a `step.completed` event holds. */
export interface Entry {
  readonly name: string
  /** The step's place among the body's calls of `ctx.step`, from 0. */
  readonly position: number
  /** The step's result, encoded with its `output` schema. */
  readonly output: unknown
}

export interface Journal {
  readonly step: Task.TaskContext["step"]
  /** The mismatch this attempt found between its replay and the journal, if any. */
  readonly broken: () => NonDeterministic | undefined
}

/** An event's data as an entry; none for data `ctx.step` did not write. */
const entryOf = (data: unknown): Entry | undefined =>
  Predicate.isRecord(data) && typeof data["name"] === "string" && Number.isSafeInteger(data["position"]) &&
    "output" in data
    ? { name: data["name"], position: data["position"] as number, output: data["output"] }
    : undefined

export const make = (options: {
  readonly runId: RunId
  /** The run's `step.completed` events so far. */
  readonly load: Effect.Effect<ReadonlyArray<RunEvent>, SqlError.SqlError>
  /** Appends an entry to the run's log, fenced by the attempt's lease (as `ctx.emit`). */
  readonly record: (entry: Entry) => Effect.Effect<number, Task.EmitError>
}): Journal => {
  const { runId } = options
  const byPosition = new Map<number, Entry>()
  const byName = new Map<string, Entry>()
  // The names this attempt's body called, and the next position.
  const called = new Set<string>()
  let next = 0
  let broken: NonDeterministic | undefined
  let loaded = false
  let loading: Deferred.Deferred<void, SqlError.SqlError> | undefined

  const remember = (entry: Entry) => {
    byPosition.set(entry.position, entry)
    byName.set(entry.name, entry)
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
          const entry = entryOf(event.data)
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

  const breaks = (position: number, step: string, message: string): Effect.Effect<never, NonDeterministic> => {
    broken ??= new NonDeterministic({ runId, position, step, message: clip(message, 500) })
    return Effect.fail(broken)
  }

  const step = <A, I, E, R>(
    name: string,
    effect: Effect.Effect<A, E, R>,
    stepOptions: Task.StepOptions<A, I, E>
  ): Effect.Effect<A, E | Task.StepError, R> => {
    // Names and places are taken when the body calls `step`, not when the
    // effect runs: a step run again (`Effect.retry` around it) keeps both.
    if (called.has(name)) return Effect.fail(new DuplicateStep({ runId, step: name }))
    called.add(name)
    const position = next++
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
          const entry: Entry = { name, position, output }
          return Effect.as(Effect.tap(options.record(entry), () => remember(entry)), value)
        }
      ))
    return Effect.flatMap(load, (): Effect.Effect<A, E | Task.StepError, R> => {
      if (broken !== undefined) return Effect.fail(broken)
      const here = byPosition.get(position)
      const named = byName.get(name)
      if (here !== undefined && here.name !== name) {
        return breaks(position, name, `step ${position} is '${here.name}' in the journal, '${name}' in this replay`)
      }
      if (named !== undefined && named.position !== position) {
        return breaks(position, name, `step '${name}' is step ${named.position} in the journal, step ${position} in this replay`)
      }
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

  return { step, broken: () => broken }
}
