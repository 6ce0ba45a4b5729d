/**
 * The ticker: one fiber per program that starts the runs of due schedule
 * ticks, safe with any number of programs on the database.
 *
 * A pass, in one transaction: claim the due schedules of this program's
 * tasks (`FOR UPDATE SKIP LOCKED`: a schedule another program is ticking is
 * skipped), start each one's due ticks through `Runs.startMany` (every rule of
 * a start applies), then move its `next_tick_at` past them and record the
 * runs, and commit. Each tick's run has the idempotency key
 * `schedule:<name>:<tick>`.
 *
 * Exactly one run per tick:
 * - at most one: the key is unique. Two programs cannot hold the row at once;
 *   and when the ticker that started a tick dies (or its commit fails)
 *   before moving `next_tick_at`, the next claim finds the same tick due and
 *   its start answers the existing run (recorded, not started again).
 * - at least one: `next_tick_at` moves only in the transaction that comes
 *   after the tick's start committed. A crash releases the row lock at once
 *   (the connection closes), and the other programs retry a due row they
 *   found locked within `lockedRetry`.
 *
 * The start runs on its own connection, not in the claim's transaction: a run
 * created there could be handed to an idle worker of this program
 * (`queue/Claiming.ts`) before it is committed.
 *
 * Between passes the fiber sleeps until the earliest next tick, at most
 * `RUNSTREAM_SCHEDULE_POLL` (default 5 seconds: it sees schedules changed by
 * other programs), and wakes at once when this program changes one.
 * @since 0.4.0
 */
import { SqlClient } from "@effect/sql"
import { Config, Context, Duration, Effect, Either, Queue } from "effect"
import type { RunId } from "../domain/Ids.ts"
import { now } from "../internal/time.ts"
import type { Runs } from "../Runs.ts"
import type { ScheduleRow, ScheduleStore } from "./ScheduleStore.ts"
import * as Timing from "./Timing.ts"

/** @category config */
export const TickerConfig = Config.all({
  poll: Config.duration("RUNSTREAM_SCHEDULE_POLL").pipe(Config.withDefault(Duration.seconds(5)))
})

/** How soon a due schedule found locked (another program is ticking it, or died doing so) is tried again. */
export const lockedRetry = Duration.millis(250)

/** The most schedules one transaction claims. */
const batchSize = 50

/** The claim's transaction stays open while the start runs: the start must not join it. */
const outsideTransaction = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapInputContext(effect, (context: Context.Context<R>) => Context.omit(SqlClient.TransactionConnection)(context) as Context.Context<R>)

export interface Ticker {
  /** Looks for due ticks now (after this program changed a schedule). */
  readonly wake: Effect.Effect<void>
  /** One pass now: the due ticks started; what the fiber waits for next. */
  readonly tickNow: Effect.Effect<Duration.Duration>
}

export const make = (options: {
  readonly store: ScheduleStore
  readonly runs: Runs["Type"]
  readonly tasks: ReadonlyArray<string>
  readonly poll: Duration.Duration
}) =>
  Effect.gen(function*() {
    const { runs, store, tasks } = options
    const signal = yield* Queue.sliding<void>(1)

    /** Starts a schedule's due ticks and records them; within the claim's transaction. */
    const tickOne = (row: ScheduleRow, at: Date) =>
      Effect.gen(function*() {
        const parsed = Timing.parse(row.name, {
          cron: row.cron,
          every: row.every,
          timezone: row.timezone
        }, at)
        if (Either.isLeft(parsed)) {
          return yield* Effect.zipRight(
            store.disable(row.name, parsed.left.message),
            Effect.logWarning(`schedule '${row.name}' paused: ${parsed.left.message}`)
          )
        }
        const due = Timing.due(parsed.right, row.next_tick_at, at, row.catch_up)
        const started: Array<{ tick: Date; runId: RunId }> = []
        const request = (tick: Date) => ({
          task: row.task,
          input: row.input,
          options: { ...row.options, idempotencyKey: Timing.idempotencyKey(row.name, tick) }
        })
        if (due.start.length > 0) {
          const all = yield* outsideTransaction(runs.startMany(due.start.map(request))).pipe(
            Effect.catchTag("IdempotencyConflict", () => Effect.succeed(null))
          )
          if (all !== null) {
            all.forEach(({ run }, i) => started.push({ tick: due.start[i]!, runId: run.id }))
          } else {
            // A tick started before the schedule's input was changed (its ticker died
            // before recording it): its run holds the key; it is that tick's run.
            for (const tick of due.start) {
              const runId = yield* outsideTransaction(runs.startMany([request(tick)])).pipe(
                Effect.map((created) => created[0]!.run.id),
                Effect.catchTag("IdempotencyConflict", () => store.runOfKey(Timing.idempotencyKey(row.name, tick)))
              )
              if (runId !== null) started.push({ tick, runId })
            }
          }
        }
        return yield* store.recordTicks(row.name, {
          next: due.next,
          skipped: due.skipped + due.start.length - started.length,
          started,
          error: null
        })
      }).pipe(
        // A start refused (the input no longer fits the task's schema, a bad option):
        // the ticks are skipped and the reason kept on the schedule.
        Effect.catchTags({
          InvalidInput: (e) => refused(row, at, e.message),
          PayloadTooLarge: (e) => refused(row, at, e.message),
          UnknownTask: (e) => refused(row, at, e.message)
        })
      )

    const refused = (row: ScheduleRow, at: Date, message: string) =>
      Effect.gen(function*() {
        const parsed = Timing.parse(row.name, { cron: row.cron, every: row.every, timezone: row.timezone }, at)
        if (Either.isLeft(parsed)) return yield* store.disable(row.name, parsed.left.message)
        const due = Timing.due(parsed.right, row.next_tick_at, at, row.catch_up)
        yield* Effect.logWarning(`schedule '${row.name}': ticks skipped, the start was refused: ${message}`)
        return yield* store.recordTicks(row.name, {
          next: due.next,
          skipped: due.skipped + due.start.length,
          started: [],
          error: message
        })
      })

    /** One transaction: the claimed schedules' due ticks started and recorded. */
    const claimBatch = Effect.gen(function*() {
      const at = yield* now
      const rows = yield* store.claimDue({ at, tasks, limit: batchSize })
      for (const row of rows) yield* tickOne(row, at)
      return rows.length
    }).pipe(store.withTransaction)

    const tickNow: Effect.Effect<Duration.Duration> = Effect.gen(function*() {
      if (tasks.length === 0) return options.poll
      while ((yield* claimBatch) === batchSize) {
        // More due: the next batch.
      }
      const earliest = yield* store.earliest(tasks)
      if (earliest === null) return options.poll
      const wait = earliest.getTime() - (yield* now).getTime()
      // Still due: another program holds it (or died holding it: its lock goes with its connection).
      if (wait <= 0) return lockedRetry
      return Duration.min(Duration.millis(wait), options.poll)
    }).pipe(
      Effect.catchAllCause((cause) => Effect.as(Effect.logWarning("schedule tick failed", cause), options.poll)),
      Effect.withSpan("Ticker.tick")
    )

    yield* Effect.gen(function*() {
      while (true) {
        const wait = yield* tickNow
        yield* Effect.raceFirst(Effect.sleep(wait), Queue.take(signal))
      }
    }).pipe(
      Effect.annotateLogs({ component: "Ticker" }),
      Effect.interruptible,
      Effect.forkScoped
    )

    return { wake: Effect.asVoid(Queue.offer(signal, undefined)), tickNow } satisfies Ticker
  })
