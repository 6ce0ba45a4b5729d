/**
 * A pool's writer: the events its attempts emit and the ends of its attempts
 * go through one group commit, in submission order: a run's last emit always
 * commits before its end, and an attempt handed back at shutdown commits
 * after everything its body wrote.
 * @since 0.2.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Effect, type Exit } from "effect"
import { type AppendItem, EventLog } from "../EventLog.ts"
import * as Metrics from "../metrics/Metrics.ts"
import { Outbox } from "../Outbox.ts"
import { type AttemptEnd, RunQueue } from "../queue/RunQueue.ts"
import * as GroupCommit from "./GroupCommit.ts"

/** The most items (emits, ends) one group commit writes. */
export const writerBatch = 500
/**
 * The ends waiting for the group commit that take no place in the pool: a few
 * batches. Beyond, the pool claims no more until the writer catches up (see
 * `placesTaken`).
 */
export const writerCapacity = writerBatch * 4

type Write =
  | { readonly _tag: "emit"; readonly item: AppendItem }
  | { readonly _tag: "end"; readonly item: AttemptEnd }

/** What a write returns: an emit's seq (none when the attempt no longer holds its run), an end's "still held". */
type Written = number | boolean | undefined

export interface Writer {
  /** Appends an event; its seq, or none when the attempt lost its run. */
  readonly emit: (item: AppendItem) => Effect.Effect<number | undefined, SqlError.SqlError>
  /** Records an end and waits: whether the attempt still held its run. */
  readonly record: (end: AttemptEnd) => Effect.Effect<boolean, SqlError.SqlError>
  /**
   * Records an end without waiting: `done` is told, once its batch is written,
   * whether the attempt still held its run (in the writer's fiber; what it
   * returns runs after the batch). Synchronous.
   */
  readonly recordThen: (
    end: AttemptEnd,
    done: (exit: Exit.Exit<boolean, SqlError.SqlError>) => Effect.Effect<void> | void
  ) => void
}

export const make = (workerId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const queue = yield* RunQueue
    const log = yield* EventLog
    const outbox = yield* Outbox
    const metrics = yield* Metrics.option
    const write = yield* GroupCommit.make<Write, Written, SqlError.SqlError>({
      maxBatch: writerBatch,
      write: (batch) => {
        const emits: Array<AppendItem> = []
        const ends: Array<AttemptEnd> = []
        for (const w of batch) {
          if (w._tag === "emit") emits.push(w.item)
          else ends.push(w.item)
        }
        const written = Effect.gen(function*() {
          const seqs = yield* log.append(emits)
          if (metrics !== undefined && emits.length > 0) {
            // Those of a run whose attempt lost it get no seq: not appended.
            metrics.eventsAppended(seqs.reduce((n: number, seq) => seq === undefined ? n : n + 1, 0))
          }
          const held = yield* queue.recordEnds({ workerId }, ends)
          let e = 0
          return batch.map((w) => w._tag === "emit" ? seqs[e++] : held.has(w.item.runId))
        })
        // One statement is atomic on its own: BEGIN and COMMIT would cost two
        // more round trips (most batches of a busy pool are ends alone).
        return (emits.length > 0 && ends.length > 0 ? sql.withTransaction(written) : written).pipe(
          Effect.tap(() => outbox.written)
        )
      }
    })
    return {
      emit: (item) => write.submit({ _tag: "emit", item }) as Effect.Effect<number | undefined, SqlError.SqlError>,
      record: (end) => write.submit({ _tag: "end", item: end }) as Effect.Effect<boolean, SqlError.SqlError>,
      recordThen: (end, done) =>
        write.submitThen({ _tag: "end", item: end }, done as (exit: Exit.Exit<Written, SqlError.SqlError>) => Effect.Effect<void> | void)
    } satisfies Writer
  })
