/**
 * Signals sent to runs (`Runs.signal`, issue 20): checked against the schema
 * the run's task declares for the name, then kept in `runstream_signals` (the
 * first of a name; later ones are no-ops) and, if the run waits for it, its
 * job made due at once. The run's journal reads them (`read`) when its body
 * calls `ctx.waitForSignal`. Part of `Runs` (its `signal`).
 *
 * The race with an attempt about to end waiting for the signal is closed on
 * the job row, which both take: the signal first locks it (waiting, if the
 * attempt's end holds it, until that end commits), then, in a second
 * statement whose snapshot sees what committed before, inserts the signal
 * and either wakes the waiting job (it is no longer held and its log says it
 * waits for this name) or, when an attempt holds the run, sets the job's
 * `signalled`, which the waiting end reads in the row it updates and then
 * makes the job due at once instead of at its deadline.
 * @since 0.5.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
import { InvalidInput, PayloadTooLarge, RunAlreadyFinished, RunNotFound, UnknownTask } from "../domain/Errors.ts"
import type { RunId } from "../domain/Ids.ts"
import { isFinished, type RunStatus } from "../domain/Run.ts"
import { signalWaitingType } from "../domain/RunEvent.ts"
import { SignalName, type SignalSent } from "../domain/Signal.ts"
import { EventLog } from "../EventLog.ts"
import { now } from "../internal/time.ts"
import { storableJson } from "../internal/jsonb.ts"
import { RunQueue } from "../queue/RunQueue.ts"
import * as Task from "../Task.ts"
import type { SentSignal } from "../workers/Journal.ts"

export type SignalError =
  | RunNotFound
  | RunAlreadyFinished
  | UnknownTask
  | InvalidInput
  | PayloadTooLarge
  | SqlError.SqlError

const validateName = Schema.validate(SignalName)

/** The run's signal of `name`, if one was sent: what a wait reads. */
export const read = (sql: SqlClient.SqlClient, runId: RunId, name: string) =>
  Effect.map(
    sql<{ data: unknown; at: Date }>`SELECT data, at FROM runstream_signals WHERE run_id = ${runId} AND name = ${name}`,
    (rows): Option.Option<SentSignal> =>
      rows.length === 0 ? Option.none() : Option.some({ data: rows[0]!.data, at: rows[0]!.at.getTime() })
  )

/**
 * The largest `position` a journal entry can hold: the size check of a
 * signal's data counts the `signal.received` entry it becomes with it.
 */
const widestPosition = 2 ** 31 - 1

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const registry = yield* Task.TaskRegistry
  const queue = yield* RunQueue
  const log = yield* EventLog

  /**
   * The data as it is kept: valid for the schema the run's task declares for
   * `name`, encoded, storable, and small enough for the `signal.received`
   * event it becomes in the run's log (`RUNSTREAM_MAX_EVENT_BYTES`).
   */
  const checked = (task: string, name: string, data: unknown) =>
    Effect.gen(function*() {
      const registered = yield* Option.match(registry.get(task), {
        onNone: () => Effect.fail(new UnknownTask({ task })),
        onSome: Effect.succeed
      })
      const schema = Task.signalSchema(registered.task, name)
      if (schema === undefined) {
        return yield* new InvalidInput({ message: `task '${task}' declares no signal '${name}'` })
      }
      const encoded = yield* Schema.decodeUnknown(schema, { errors: "all" })(data).pipe(
        Effect.flatMap(Schema.encode(schema)),
        Effect.mapError((error) => InvalidInput.fromParseError(`the data of signal '${name}'`, error))
      )
      const json = yield* storableJson(`the data of signal '${name}'`, encoded)
      const entry = yield* storableJson("event data", { name, position: widestPosition, data: encoded })
      yield* Effect.mapError(
        log.checkSize(entry),
        (error) => new PayloadTooLarge({ what: `the data of signal '${name}'`, bytes: error.bytes, limit: error.limit })
      )
      return json
    })

  const statusOf = (runId: RunId) =>
    Effect.flatMap(
      sql<{ task: string; status: RunStatus }>`SELECT task, status FROM runstream_runs WHERE id = ${runId}`,
      (rows) => rows.length === 0 ? Effect.fail(new RunNotFound({ runId })) : Effect.succeed(rows[0]!)
    )

  const signal = (runId: RunId, name: string, data: unknown): Effect.Effect<SignalSent, SignalError> =>
    Effect.gen(function*() {
      yield* Effect.mapError(validateName(name), (error) => InvalidInput.fromParseError("the signal's name", error))
      const run = yield* statusOf(runId)
      if (isFinished(run.status)) return yield* new RunAlreadyFinished({ runId, status: run.status })
      const json = yield* checked(run.task, name, data)
      const at = yield* now
      const sent = yield* Effect.gen(function*() {
        // Jobs before runs, as everywhere. A run has its job until it finishes (the same
        // statement deletes the one and finishes the other): none here, it finished.
        const [job] = yield* sql<{ queue: string }>`
          SELECT queue FROM runstream_jobs WHERE run_id = ${runId} FOR UPDATE`
        if (job === undefined) {
          const ended = yield* statusOf(runId)
          return yield* new RunAlreadyFinished({ runId, status: ended.status })
        }
        // A new statement, so a new snapshot: it sees the journal entries and the
        // end of an attempt that committed while this transaction waited for the lock.
        const [row] = yield* sql<{ created: boolean; woken: boolean }>`
          WITH inserted AS (
            INSERT INTO runstream_signals (run_id, name, data, at)
            VALUES (${runId}, ${name}, ${json}::jsonb, ${at})
            ON CONFLICT (run_id, name) DO NOTHING
            RETURNING run_id
          ), marked AS (
            UPDATE runstream_jobs j SET
              -- An attempt holds the run: its end, if waiting, wakes it at once.
              signalled = j.locked_until IS NOT NULL,
              -- A waiting run whose log says it waits for this signal is due now.
              run_at = CASE WHEN j.locked_until IS NULL THEN ${at} ELSE j.run_at END
            FROM inserted
            WHERE j.run_id = inserted.run_id AND (j.locked_until IS NOT NULL OR (
              j.waiting_for IS NOT NULL AND j.run_at > ${at} AND EXISTS (
                SELECT 1 FROM runstream_events e
                WHERE e.run_id = j.run_id AND e.type = ${signalWaitingType} AND e.data->>'name' = ${name})))
            RETURNING j.locked_until IS NULL AS woken
          )
          SELECT EXISTS (SELECT 1 FROM inserted) AS created, coalesce((SELECT woken FROM marked), false) AS woken`
        return { created: row!.created, woken: row!.woken, queue: job.queue }
      }).pipe(sql.withTransaction)
      // Idle workers read the next due time again.
      if (sent.woken) yield* queue.wake(sent.queue)
      return { runId, name, created: sent.created }
    }).pipe(Effect.withSpan("Runs.signal"))

  return { signal }
})
