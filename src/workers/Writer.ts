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
import { Outbox } from "../Outbox.ts"
import { type AttemptEnd, RunQueue } from "../queue/RunQueue.ts"
import * as Tracing from "../tracing/Tracing.ts"
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

/** The run every write of `batch` is for, if they are all for one. */
const sameRun = (batch: ReadonlyArray<Write>): string | undefined => {
  const runId = batch[0]?.item.runId
  for (const w of batch) if (w.item.runId !== runId) return undefined
  return runId
}

export const make = (workerId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const queue = yield* RunQueue
    const log = yield* EventLog
    const outbox = yield* Outbox
    const traced = (yield* Tracing.option) !== undefined
    const write = yield* GroupCommit.make<Write, Written, SqlError.SqlError>({
      maxBatch: writerBatch,
      write: (batch) => {
        const emits: Array<AppendItem> = []
        const ends: Array<AttemptEnd> = []
        for (const w of batch) {
          if (w._tag === "emit") emits.push(w.item)
          else ends.push(w.item)
        }
        // What the batch wrote, for its span.
        let appended = 0
        let ended = 0
        const written = Effect.gen(function*() {
          const seqs = yield* log.append(emits)
          // Those of a run whose attempt lost it get no seq: not appended.
          if (traced) for (const seq of seqs) if (seq !== undefined) appended++
          const held = yield* queue.recordEnds({ workerId }, ends)
          ended = held.size
          let e = 0
          return batch.map((w) => w._tag === "emit" ? seqs[e++] : held.has(w.item.runId))
        })
        // One statement is atomic on its own: BEGIN and COMMIT would cost two
        // more round trips (most batches of a busy pool are ends alone).
        const commit = (emits.length > 0 && ends.length > 0 ? sql.withTransaction(written) : written).pipe(
          Effect.tap(() => outbox.written)
        )
        if (!traced) return commit
        // A root span: a batch serves the attempts of up to `writerBatch` runs
        // of as many traces, so no one of them is its parent, and linking each
        // would carry every attempt's span through the writer (an allocation
        // per end, and a span of 500 links). A batch of one run names it, so a
        // search by run id finds it; larger ones say how much they wrote (a
        // list of 500 ids on every batch would cost a string per end).
        const runId = sameRun(batch)
        return commit.pipe(
          Effect.tap(() =>
            Effect.annotateCurrentSpan({ "runstream.events_appended": appended, "runstream.runs_ended": ended })
          ),
          Effect.withSpan("runstream.group_commit", {
            root: true,
            attributes: {
              "runstream.batch_size": batch.length,
              "runstream.emits": emits.length,
              "runstream.ends": ends.length,
              // As a claim's span names its runs (`runstream.run_id` is for the spans of one run's trace).
              ...(runId === undefined ? undefined : { "runstream.run_ids": runId })
            }
          })
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
