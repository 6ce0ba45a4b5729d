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
 * row for all the runs `ranges` selects (run id, task, first seq, last seq, in
 * that order), none when it selects nothing. One row per statement, not per
 * run: a claim or a group commit of 500 runs inserts one row, and the relay
 * deletes one.
 */
export const row = (sql: SqlClient.SqlClient, ranges: Statement.Fragment): Statement.Fragment =>
  sql`INSERT INTO runstream_outbox (run_ids, tasks, seq_froms, seq_tos, events)
    SELECT array_agg(run_id), array_agg(task), array_agg(seq_from), array_agg(seq_to), sum(seq_to - seq_from + 1)
    FROM (${ranges}) AS r(run_id, task, seq_from, seq_to)
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
