/**
 * Drains the outbox onto the event bus, in per-run order, in batches. One relay
 * drains at a time per database (a transaction-level advisory lock), so relays
 * in several processes never publish the same rows concurrently; a relay that
 * dies after publishing but before its delete commits leaves the rows to be
 * published again, and subscribers drop what they already have. How a drained
 * batch is published is the bus driver's step (`EventBus.publishDrained`): the
 * relay hands it the drain statement and knows no driver.
 * @since 0.1.0
 */
import { SqlClient, type Statement } from "@effect/sql"
import { Config, Duration, Effect, Layer, Queue } from "effect"
import type { RunId } from "./domain/Ids.ts"
import { makeRunEvent } from "./domain/RunEvent.ts"
import { type BusEvent, EventBus, type OutboxDrain } from "./bus/EventBus.ts"
import * as Metrics from "./metrics/Metrics.ts"
import { Outbox } from "./Outbox.ts"
import * as Tracing from "./tracing/Tracing.ts"

/** @category config */
export const RelayConfig = Config.all({
  batchSize: Config.integer("RUNSTREAM_RELAY_BATCH").pipe(Config.withDefault(2000)),
  pollInterval: Config.duration("RUNSTREAM_RELAY_POLL").pipe(Config.withDefault(Duration.millis(500)))
})

/** An event as the drain statement returns it: run, task, seq, type, data, epoch milliseconds. */
type Entry = readonly [RunId, string, number, string, unknown, number]

/**
 * The drain statement of one batch: whole outbox rows in order, up to about
 * `batchSize` events (at least one row, however many it covers), as the
 * `OutboxDrain` a bus driver publishes with.
 */
export const makeDrain = (sql: SqlClient.SqlClient, batchSize: number): OutboxDrain => {
  // One statement takes the drain lock, deletes a batch and reads its events.
  // The lock (transaction-level) is a one-time filter evaluated before the
  // delete: without it the statement deletes nothing. Losing its commit in a
  // crash only publishes the rows again, and subscribers drop what they
  // already have: no need to wait for the disk.
  const drain = <A extends object>(finish: Statement.Fragment) =>
    sql<A>`/* prepared */
    WITH lock AS MATERIALIZED (
      SELECT pg_try_advisory_xact_lock(hashtext('runstream.relay')) AS locked,
        set_config('synchronous_commit', 'off', true) AS relaxed
    ), batch AS (
      -- By key: "id IN (subquery)" may hash-join a scan of every dead row.
      -- Every row covers at least one event: the first batchSize rows hold enough.
      DELETE FROM runstream_outbox WHERE (SELECT locked FROM lock) AND id = ANY(ARRAY(
        SELECT id FROM (
          SELECT id, sum(events) OVER (ORDER BY id) - events AS before
          FROM (SELECT id, events FROM runstream_outbox ORDER BY id LIMIT ${batchSize}) head
        ) counted WHERE before < ${batchSize}
      )) RETURNING id, run_ids, tasks, seq_froms, seq_tos, events, entries
    ), ranges AS (
      -- Rows written before outbox rows carried their events (0006): read from the log.
      SELECT r.* FROM batch, unnest(run_ids, tasks, seq_froms, seq_tos) AS r(run_id, task, seq_from, seq_to)
      WHERE entries IS NULL
    ), logged AS (
      SELECT e.run_id, r.task, e.seq, e.type, e.data, e.at FROM ranges r
      JOIN runstream_events e ON e.run_id = r.run_id AND e.seq BETWEEN r.seq_from AND r.seq_to
    ), drained AS (
      SELECT * FROM logged
      UNION ALL
      SELECT (e->>0)::uuid, e->>1, (e->>2)::integer, e->>3, (e->4)::jsonb, to_timestamp((e->>5)::float8 / 1000)
      FROM batch, json_array_elements(('[' || entries || ']')::json) AS e WHERE entries IS NOT NULL
    )${finish}`

  const taken = sql`(SELECT coalesce(sum(events), 0)::integer FROM batch)`
  return {
    // The events come as one JSON text, parsed by one JSON.parse (as pages of
    // the log do, see `EventLog.read`): cheaper than the driver's row decoding.
    // The rows' entries as they were written, in row order (each run's events
    // in seq order: a run's rows are written under its lock, in order), after
    // those of older rows read from the log.
    take: Effect.map(
      drain<{ taken: number; events: string }>(sql`
      SELECT ${taken} AS taken, '[' || concat_ws(',',
        (SELECT string_agg(json_build_array(run_id, task, seq, type, data, floor(extract(epoch FROM at) * 1000))::text, ','
          ORDER BY run_id, seq) FROM logged),
        (SELECT string_agg(entries, ',' ORDER BY id) FROM batch WHERE entries IS NOT NULL)
      ) || ']' AS events`),
      ([row]) => ({
        taken: row!.taken,
        events: (JSON.parse(row!.events) as ReadonlyArray<Entry>).map(([runId, task, seq, type, data, at]): BusEvent => ({
          task,
          event: makeRunEvent(runId, seq, type, data, at)
        }))
      })
    ),
    takeAndPublishInStatement: (publish) =>
      Effect.map(
        drain<{ taken: number }>(sql`, published AS (${publish(sql`drained`)})
      SELECT ${taken} AS taken, (SELECT count(*) FROM published) AS published`),
        ([row]) => row!.taken
      )
  }
}

/**
 * Publishes one batch, as the bus driver does it (`EventBus.publishDrained`).
 * Returns how many events the rows it took cover (0 when another relay holds
 * the drain lock or nothing is pending): fewer than `batchSize` means it took
 * every pending row.
 */
export const drainOnce = (batchSize: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const bus = yield* EventBus
    return yield* bus.publishDrained(makeDrain(sql, batchSize))
  })

/** A relay fiber in the layer's scope: woken by local commits, polling as a fallback. */
export const layer = Layer.scopedDiscard(Effect.gen(function*() {
  const outbox = yield* Outbox
  const config = yield* RelayConfig
  const metrics = yield* Metrics.option
  const hints = yield* outbox.hints
  // Built once: the driver's step is an effect run for each batch.
  const published = (yield* EventBus).publishDrained(makeDrain(yield* SqlClient.SqlClient, config.batchSize))
  // A span per batch only when spans are exported (a batch per commit when the relay keeps up).
  // A root: a batch publishes the events of many runs, of as many traces.
  const drain = (yield* Tracing.option) === undefined ? published : published.pipe(
    Effect.tap((taken) => Effect.annotateCurrentSpan("runstream.events_published", taken)),
    Effect.withSpan("runstream.relay_drain", { root: true, attributes: { "runstream.batch_limit": config.batchSize } })
  )
  // The poll is a hint too, sent on a timer: the loop then waits on one queue
  // (a timeout on each wait races two fibers, which delays every wake-up).
  yield* Effect.forkScoped(Effect.forever(Effect.delay(outbox.written, config.pollInterval)))
  const loop = Effect.gen(function*() {
    const taken = yield* drain
    metrics?.eventsRelayed(taken)
    if (taken < config.batchSize) yield* Queue.take(hints)
  }).pipe(
    Effect.catchAllCause((cause) =>
      Effect.zipRight(Effect.logWarning("outbox relay failed; retrying", cause), Effect.sleep(config.pollInterval))
    ),
    Effect.forever
  )
  yield* loop.pipe(Effect.annotateLogs("component", "OutboxRelay"), Effect.forkScoped)
}))
