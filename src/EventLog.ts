/**
 * Each run's ordered log. Seqs are assigned under the run's row lock
 * (`UPDATE runstream_runs SET last_seq = last_seq + n`), so concurrent appends
 * to one run stay contiguous and appends to different runs never wait on each
 * other. Every append writes its outbox row in the same statement.
 * @since 0.1.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Config, Context, Effect, Either, Layer } from "effect"
import { PayloadTooLarge } from "./domain/Errors.ts"
import type { RunId } from "./domain/Ids.ts"
import { makeRunEvent, type RunEvent } from "./domain/RunEvent.ts"
import { now } from "./internal/time.ts"
import * as Metrics from "./metrics/Metrics.ts"
import * as Outbox from "./Outbox.ts"

/** One event to append on behalf of `attempt` of a run. */
export interface AppendItem {
  readonly runId: RunId
  readonly attempt: number
  readonly type: string
  readonly data: unknown
}

export class EventLog extends Context.Tag("runstream/EventLog")<EventLog, {
  /**
   * Appends events, in order, in the caller's transaction if there is one.
   * Returns each item's seq, or `undefined` where the attempt no longer holds
   * the run (fencing: the run is not running under that attempt).
   */
  readonly append: (items: ReadonlyArray<AppendItem>) => Effect.Effect<ReadonlyArray<number | undefined>, SqlError.SqlError>
  /** Events with `after < seq`, in order, at most `limit`. */
  readonly read: (runId: RunId, options: { readonly after: number; readonly limit: number }) => Effect.Effect<ReadonlyArray<RunEvent>, SqlError.SqlError>
  /**
   * The run's events of some types, in order, all of them. For the few events a
   * worker reads back (a run's journal: its `step.completed` and `sleep.started` events).
   */
  readonly readOfTypes: (runId: RunId, types: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<RunEvent>, SqlError.SqlError>
  /**
   * Refuses event data (as JSON text) larger than the configured limit. An
   * `Either` (yieldable as an effect): it runs for every emit and output.
   */
  readonly checkSize: (json: string) => Either.Either<void, PayloadTooLarge>
}>() {}

/** @category config */
export const EventLogConfig = Config.all({
  maxEventBytes: Config.integer("RUNSTREAM_MAX_EVENT_BYTES").pipe(
    Config.validate({ message: "must be between 1 KiB and 64 MiB", validation: (n) => n >= 1024 && n <= 64 * 1024 * 1024 }),
    Config.withDefault(64 * 1024)
  )
})

/** An event of a page read by `read`: seq, type, data, epoch milliseconds. */
type PageEntry = readonly [number, string, unknown, number]

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const { maxEventBytes } = yield* EventLogConfig
  const metrics = yield* Metrics.option

  const append = (items: ReadonlyArray<AppendItem>) =>
    Effect.gen(function*() {
      if (items.length === 0) return []
      const at = yield* now
      const input = JSON.stringify(items.map((item, i) => ({
        i,
        run_id: item.runId,
        attempt: item.attempt,
        type: item.type,
        data: item.data ?? null
      })))
      // Lock the runs in id order first, so two batches over the same runs
      // cannot deadlock; then number each run's events after its last seq.
      const rows = yield* sql<{ i: number; seq: number }>`/* prepared */
        WITH input AS (
          SELECT * FROM jsonb_to_recordset(${input}::jsonb)
            AS t(i integer, run_id uuid, attempt integer, type text, data jsonb)
        ), counts AS (
          SELECT run_id, attempt, count(*)::integer AS n FROM input GROUP BY run_id, attempt
        ), locked AS (
          SELECT r.id FROM runstream_runs r JOIN counts c ON c.run_id = r.id AND c.attempt = r.attempt
          -- By key: the planner has no estimate for the JSON input (see RunQueue.recordEnds).
          WHERE r.id = ANY(ARRAY(SELECT run_id FROM counts)) AND r.status = 'running'
          ORDER BY r.id FOR NO KEY UPDATE OF r
        ), bumped AS (
          UPDATE runstream_runs r SET last_seq = r.last_seq + c.n
          FROM counts c, locked l WHERE r.id = c.run_id AND l.id = c.run_id AND r.id = ANY(ARRAY(SELECT id FROM locked))
          RETURNING r.id, r.task, r.last_seq - c.n AS base, c.n
        ), numbered AS (
          SELECT i.i, i.run_id, i.type, i.data,
            b.base + row_number() OVER (PARTITION BY i.run_id ORDER BY i.i) AS seq
          FROM input i JOIN bumped b ON b.id = i.run_id
        ), events AS (
          INSERT INTO runstream_events (run_id, seq, type, data, at)
          SELECT run_id, seq, type, data, ${at} FROM numbered
        ), outbox AS (
          ${Outbox.row(sql, sql`SELECT e.run_id, b.task, e.seq, e.type, e.data, ${at}::timestamptz FROM numbered e JOIN bumped b ON b.id = e.run_id`)}
        )
        SELECT i, seq::integer AS seq FROM numbered`
      const seqs: Array<number | undefined> = new Array(items.length).fill(undefined)
      for (const row of rows) seqs[row.i] = row.seq
      metrics?.eventsAppended(rows.length)
      return seqs
    }).pipe(Effect.withSpan("EventLog.append", { attributes: { count: items.length } }))

  // A page travels as one JSON text, parsed by one JSON.parse: the driver's
  // row-by-row decoding (and timestamptz parsing) cost more than everything
  // else a stream does to backfill a long log.
  const read = (runId: RunId, options: { readonly after: number; readonly limit: number }) =>
    sql<{ page: string }>`/* prepared */
      SELECT coalesce(json_agg(json_build_array(seq, type, data, floor(extract(epoch FROM at) * 1000)) ORDER BY seq), '[]')::text AS page
      FROM (
        SELECT seq, type, data, at FROM runstream_events
        WHERE run_id = ${runId} AND seq > ${options.after}
        ORDER BY seq LIMIT ${options.limit}
      ) e`.pipe(
      Effect.map(([row]) => {
        const entries = JSON.parse(row!.page) as ReadonlyArray<PageEntry>
        return entries.map(([seq, type, data, at]) => makeRunEvent(runId, seq, type, data, at))
      })
    )

  // The run's events by its key (run_id, seq), the type filtered as they are read.
  const readOfTypes = (runId: RunId, types: ReadonlyArray<string>) =>
    sql<{ page: string }>`/* prepared */
      SELECT coalesce(json_agg(json_build_array(seq, type, data, floor(extract(epoch FROM at) * 1000)) ORDER BY seq), '[]')::text AS page
      FROM runstream_events WHERE run_id = ${runId} AND type = ANY(${types})`.pipe(
      Effect.map(([row]) => {
        const entries = JSON.parse(row!.page) as ReadonlyArray<PageEntry>
        return entries.map(([seq, type, data, at]) => makeRunEvent(runId, seq, type, data, at))
      })
    )

  const checkSize = (json: string) => {
    const bytes = Buffer.byteLength(json)
    return bytes > maxEventBytes
      ? Either.left(new PayloadTooLarge({ what: "event data", bytes, limit: maxEventBytes }))
      : Either.void
  }

  return EventLog.of({ append, read, readOfTypes, checkSize })
})

export const layer = Layer.effect(EventLog, make)
