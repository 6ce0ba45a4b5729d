/**
 * The outbox: every statement that appends events also inserts one outbox row
 * naming the runs and the seq range it appended to each (`row` below), and the
 * relay deletes rows as it publishes their events. This service is the
 * in-process hint that rows were committed, so the program's relay drains them
 * at once instead of waiting for its poll; nothing is lost if a hint is, the
 * rows stay in the table.
 * @since 0.1.0
 */
import type { SqlClient, Statement } from "@effect/sql"
import { Context, Effect, Layer, PubSub, type Queue, type Scope } from "effect"

export class Outbox extends Context.Tag("runstream/Outbox")<Outbox, {
  /** Call after a commit that wrote outbox rows. */
  readonly written: Effect.Effect<void>
  /** A subscription to `written` hints (for relays). */
  readonly hints: Effect.Effect<Queue.Dequeue<void>, never, Scope.Scope>
}>() {}

/**
 * A data-modifying CTE body that inserts the outbox row of a statement: one
 * row for all the events `events` selects (run id, task, seq, type, data, at,
 * in that order: the events the statement appends), none when it selects
 * nothing. One row per statement, not per run: a claim or a group commit of
 * 500 runs inserts one row, and the relay deletes one.
 *
 * The row names each run's seq range and carries the events themselves as
 * `entries`: JSON arrays `[run id, task, seq, type, data, at in epoch ms]`
 * separated by commas (each run's in seq order), which the relay publishes
 * as they are instead of reading every event back from the log by key.
 */
export const row = (sql: SqlClient.SqlClient, events: Statement.Fragment): Statement.Fragment =>
  sql`INSERT INTO runstream_outbox (run_ids, tasks, seq_froms, seq_tos, events, entries)
    SELECT array_agg(run_id), array_agg(task), array_agg(seq_from), array_agg(seq_to), sum(n), string_agg(entries, ',')
    FROM (
      SELECT run_id, task, min(seq) AS seq_from, max(seq) AS seq_to, count(*) AS n,
        string_agg(json_build_array(run_id, task, seq, type, data, floor(extract(epoch FROM at) * 1000))::text, ','
          ORDER BY seq) AS entries
      FROM (${events}) AS e(run_id, task, seq, type, data, at)
      GROUP BY run_id, task
    ) r
    HAVING count(*) > 0`

export const layer = Layer.effect(
  Outbox,
  Effect.gen(function*() {
    const hub = yield* PubSub.sliding<void>(1)
    return Outbox.of({
      written: Effect.asVoid(PubSub.publish(hub, undefined)),
      // A sliding hub of one: a burst of hints is one wake-up per relay.
      hints: PubSub.subscribe(hub)
    })
  })
)
