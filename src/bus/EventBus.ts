/**
 * The event bus's interface: what the outbox relay publishes and what the
 * streams of this program subscribe to. The bus is a fast path, not the
 * record: subscribers deduplicate by (run, seq) and fill gaps from the event
 * log, so a dropped or repeated message never shows in a stream; `Resync`
 * tells them to re-read.
 *
 * Drivers live in their own files (`MemoryBus`, `PostgresBus`, `NatsBus`) and
 * each provides this Tag with a layer; a program takes its bus as a layer
 * (`Runstream.layerRuntime({ bus })`), so another driver plugs in without a
 * change here. Drivers share the fan-out to local subscribers (`Fanout`).
 * @since 0.1.0
 */
import type { SqlError, Statement } from "@effect/sql"
import { Context, type Effect, type Mailbox, Schema, type Scope } from "effect"
import type { RunEvent } from "../domain/RunEvent.ts"
import type { RunId } from "../domain/Ids.ts"

/** An event with the task of its run (for the debug stream's filter). */
export interface BusEvent {
  readonly task: string
  readonly event: RunEvent
}

/**
 * `Resync` means messages may have been lost (the bus reconnected, or a run's
 * subscription stayed idle for a while): a subscriber re-reads the log from
 * its cursor.
 */
export type BusMessage =
  | { readonly _tag: "Event"; readonly task: string; readonly event: RunEvent }
  | { readonly _tag: "Resync" }

export interface SubscribeFilter {
  readonly runId?: RunId | undefined
  readonly task?: string | undefined
}

/** A batch the relay's drain statement deleted from the outbox, and the events its rows cover. */
export interface DrainedBatch {
  /** How many events the deleted rows cover (0 when nothing was pending or another relay holds the drain). */
  readonly taken: number
  /** In per-run order. */
  readonly events: ReadonlyArray<BusEvent>
}

/**
 * The relay's drain statement, handed to the driver (`EventBus.publishDrained`),
 * which decides how a drained batch is published. The outbox is always in
 * Postgres; only the publishing differs.
 */
export interface OutboxDrain {
  /**
   * Deletes a batch of outbox rows and returns their events. Run it in a
   * transaction (`sql.withTransaction`) with the publish to make the delete
   * commit only once the bus has the events.
   */
  readonly take: Effect.Effect<DrainedBatch, SqlError.SqlError>
  /**
   * The same statement with the publishing inside it, for a bus that lives in
   * the database: `publish` receives the name of a relation of the drained
   * events (columns run_id, task, seq, type, data, at; one row per event) and
   * returns a query over it (a CTE body, run for its side effects). Returns
   * how many events the batch covered.
   */
  readonly takeAndPublishInStatement: (
    publish: (events: Statement.Fragment) => Statement.Fragment
  ) => Effect.Effect<number, SqlError.SqlError>
}

/** The bus could not take a message (a broker unreachable, a connection closed). */
export class BusUnavailable extends Schema.TaggedError<BusUnavailable>()("BusUnavailable", {
  bus: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

export class EventBus extends Context.Tag("runstream/EventBus")<EventBus, {
  /** Publishes events now, outside any outbox (tools and tests; the relay uses `publishDrained`). */
  readonly publish: (events: ReadonlyArray<BusEvent>) => Effect.Effect<void, SqlError.SqlError | BusUnavailable>
  /**
   * The relay's step: drains one batch and publishes it. A driver whose
   * subscribers outlive the relay's process must not let the delete commit
   * before the bus has the events: a relay that dies then leaves the rows to be
   * published again (a duplicate, which subscribers drop), never a message
   * lost. Returns how many events the batch covered.
   */
  readonly publishDrained: (drain: OutboxDrain) => Effect.Effect<number, SqlError.SqlError | BusUnavailable>
  /** A bounded subscription, live when this returns, shut down with the scope. */
  readonly subscribe: (filter: SubscribeFilter) => Effect.Effect<Mailbox.ReadonlyMailbox<BusMessage>, never, Scope.Scope>
}>() {}
