/**
 * The durable queue of runs: a hot table (`runstream_jobs`) of runs waiting or
 * running. Runs are enqueued by the statement that creates them
 * (`RunStore.create`); claimed by `Claiming` (the claim, and the handoff at
 * their start); their leases extended by `heartbeat`; the ends of their
 * attempts recorded in batches (`recordEnds`); expired leases ended by
 * `reclaimExpired` (run by `LeaseReclaim`). Every transition a run goes
 * through here appends its system event and outbox row in the same
 * statement. Locks are always taken jobs first, then runs.
 * @since 0.1.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Context, Effect, Layer, Option, PubSub, Queue, type Scope } from "effect"
import type { RunId } from "../domain/Ids.ts"
import type { RunError } from "../domain/Run.ts"
import { now, plusMillis } from "../internal/time.ts"
import * as Metrics from "../metrics/Metrics.ts"
import * as Outbox from "../Outbox.ts"
import { NotifyChannel, PgListener } from "../PgListener.ts"
import * as Claiming from "./Claiming.ts"

export type { Claim, ClaimOptions } from "./Claiming.ts"

/**
 * How an attempt ended. `released` hands the run back without using up the
 * attempt; so does `waiting` (the body suspended: a durable sleep, a wait
 * for a signal), which leaves the run `waiting` until `until`, when the claim
 * takes it again (`null`: no time, a signal wakes it; see `runs/Signal.ts`).
 */
export type Outcome =
  | { readonly _tag: "succeeded"; readonly output: unknown }
  | { readonly _tag: "failed"; readonly error: RunError }
  | { readonly _tag: "retrying"; readonly error: RunError; readonly delayMs: number }
  | { readonly _tag: "cancelled" }
  | { readonly _tag: "released"; readonly reason: string }
  | {
    readonly _tag: "waiting"
    /** When the claim takes it again; null for a wait without a time (a signal without a timeout, children): what it waits for wakes it. */
    readonly until: Date | null
    readonly waitingFor: string
    /**
     * The child runs it waits for (`ctx.await`, `ctx.all`): the last of them
     * to end wakes it (see `recordEnds`), or its own end does when none is
     * left unfinished by then.
     */
    readonly children?: ReadonlyArray<RunId> | undefined
  }

const isFinishing = (outcome: Outcome) =>
  outcome._tag === "succeeded" || outcome._tag === "failed" || outcome._tag === "cancelled"

/** The end of one attempt, to record. */
export interface AttemptEnd {
  readonly runId: RunId
  readonly attempt: number
  readonly outcome: Outcome
  /** A run of a task with limits (`Claim.limited`): its end gives its key's slot back. */
  readonly limited?: boolean | undefined
  /** A child run's parent (`Claim.parentId`): the child's end may wake it. */
  readonly parentId?: RunId | undefined
}

/** Who may end an attempt: the worker that holds its lease, or anyone once it expired. */
export type Holder = { readonly workerId: string } | { readonly expiredBefore: Date }

export class RunQueue extends Context.Tag("runstream/RunQueue")<RunQueue, {
  /** This program's idle workers, offered runs as they start (see `Claiming`). */
  readonly handoff: Claiming.Handoff
  /** Claims waiting runs (see `Claiming.claim`). */
  readonly claim: (options: Claiming.ClaimOptions) => Effect.Effect<ReadonlyArray<Claiming.Claim>, SqlError.SqlError>
  /**
   * Extends the leases the worker still holds. Returns the runs whose lease it
   * still holds and, among them, those whose cancellation was requested.
   */
  readonly heartbeat: (options: {
    readonly workerId: string
    readonly runs: ReadonlyArray<{ readonly runId: RunId; readonly attempt: number }>
    readonly leaseMs: number
  }) => Effect.Effect<{ readonly held: ReadonlySet<RunId>; readonly cancelRequested: ReadonlySet<RunId> }, SqlError.SqlError>
  /** Records ends of attempts; returns the runs whose attempt was still held (the others are refused). */
  readonly recordEnds: (holder: Holder, items: ReadonlyArray<AttemptEnd>) => Effect.Effect<ReadonlySet<RunId>, SqlError.SqlError>
  /**
   * Ends attempts whose lease expired: retry, fail when out of attempts, or
   * cancel when asked. Returns the queues of the runs it ended.
   */
  readonly reclaimExpired: (limit: number) => Effect.Effect<ReadonlySet<string>, SqlError.SqlError>
  /**
   * When the next waiting run of `queues` becomes due, if any: runs without
   * limits, and those of `limitScopes` whose key has a slot free.
   */
  readonly nextDue: (
    queues: ReadonlyArray<string>,
    limitScopes?: ReadonlyArray<string>
  ) => Effect.Effect<Option.Option<Date>, SqlError.SqlError>
  /**
   * Those of `scopes` (`queue/Limits.ts`) with runs waiting under a key: a
   * pool serves their keys even when its own definitions declare no limits
   * there (they were removed by a deploy, or another program declares
   * them), so that those runs are not left behind.
   */
  readonly scopesWaiting: (scopes: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, SqlError.SqlError>
  /** After a commit that enqueued runs: wake workers here and, coalesced, in other processes. */
  readonly wake: (queue: string) => Effect.Effect<void>
  /** Wake-ups for claimers: queue names, or `*` after the listener reconnected. */
  readonly wakeups: Effect.Effect<Queue.Dequeue<string>, never, Scope.Scope>
}>() {}

const eventData = (finish: AttemptEnd, retryAt: Date | null): unknown => {
  const outcome = finish.outcome
  switch (outcome._tag) {
    case "succeeded":
      return { attempt: finish.attempt, output: outcome.output }
    case "failed":
      return { attempt: finish.attempt, error: outcome.error }
    case "retrying":
      return { attempt: finish.attempt, error: outcome.error, retryAt: retryAt?.toISOString() }
    case "cancelled":
      return { attempt: finish.attempt }
    case "released":
      return { attempt: finish.attempt, reason: outcome.reason }
    case "waiting":
      return { attempt: finish.attempt, until: outcome.until?.toISOString() ?? null, waitingFor: outcome.waitingFor }
  }
}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const listener = yield* PgListener
  const metrics = yield* Metrics.option
  const local = yield* PubSub.sliding<string>(64)

  // One NOTIFY at a time; requests arriving meanwhile collapse into the next one.
  // NOTIFY takes a database-wide lock at commit, so it never goes in the enqueue
  // transaction itself.
  const pendingNotify = yield* Queue.sliding<string>(1)
  yield* Queue.take(pendingNotify).pipe(
    Effect.flatMap((queue) => sql`SELECT pg_notify(${NotifyChannel.queue}, ${queue})`),
    Effect.catchAllCause((cause) => Effect.logDebug("queue wake-up NOTIFY failed (workers poll)", cause)),
    Effect.forever,
    Effect.forkScoped
  )

  const remote = yield* listener.subscribe(NotifyChannel.queue)
  yield* Queue.take(remote).pipe(
    Effect.flatMap((message) => PubSub.publish(local, message._tag === "Notification" ? message.payload : "*")),
    Effect.forever,
    Effect.forkScoped
  )

  const heartbeat = Effect.fn("RunQueue.heartbeat")(function*(options: {
    readonly workerId: string
    readonly runs: ReadonlyArray<{ readonly runId: RunId; readonly attempt: number }>
    readonly leaseMs: number
  }) {
    if (options.runs.length === 0) return { held: new Set<RunId>(), cancelRequested: new Set<RunId>() }
    const at = yield* now
    const rows = yield* sql<{ run_id: RunId; cancel_requested: boolean }>`/* prepared */
      WITH input AS (
        SELECT * FROM jsonb_to_recordset(${
      JSON.stringify(options.runs.map((r) => ({ run_id: r.runId, attempt: r.attempt })))
    }::jsonb) AS t(run_id uuid, attempt integer)
      ), extended AS (
        UPDATE runstream_jobs j SET locked_until = ${plusMillis(at, options.leaseMs)}
        FROM input i WHERE j.run_id = i.run_id AND j.attempt = i.attempt AND j.locked_by = ${options.workerId}
          AND j.run_id = ANY(ARRAY(SELECT run_id FROM input))
        RETURNING j.run_id
      )
      SELECT e.run_id, r.cancel_requested FROM extended e JOIN runstream_runs r ON r.id = e.run_id`
    return {
      held: new Set(rows.map((r) => r.run_id)),
      cancelRequested: new Set(rows.filter((r) => r.cancel_requested).map((r) => r.run_id))
    }
  })

  // The ends of attempts of limited runs give their keys' slots back (and a
  // run handed back or retrying waits for its key again). Key rows are taken
  // in key order after the jobs, as the cancel does; the claim never waits
  // for either (SKIP LOCKED), so no two statements wait on each other.
  const noLimits = sql.literal("")
  const heldKeys = sql.literal(", j.limit_scope, j.queue AS job_queue, j.concurrency_key")
  const releaseSlots = sql.literal(`keys AS (
          SELECT l.scope, l.key, c.ended, c.requeued,
            -- Nothing left running or waiting, and no rate window to keep.
            l.running = c.ended AND l.waiting + c.requeued = 0 AND l.rate_limit IS NULL AS idle
          FROM (
            SELECT limit_scope, concurrency_key, count(*)::integer AS ended,
              (count(*) FILTER (WHERE kind IN ('retrying', 'released', 'waiting')))::integer AS requeued
            FROM held WHERE concurrency_key IS NOT NULL GROUP BY limit_scope, concurrency_key
          ) c JOIN runstream_limits l ON l.scope = c.limit_scope AND l.key = c.concurrency_key
          ORDER BY l.scope, l.key FOR UPDATE OF l
        ), released AS (
          UPDATE runstream_limits l SET running = l.running - k.ended, waiting = l.waiting + k.requeued
          FROM keys k WHERE l.scope = k.scope AND l.key = k.key AND NOT k.idle
        ), emptied AS (
          -- An idle key's row goes (keys are as many as tenants or users, say): the
          -- next start of the key makes it again. Claims take only keys with runs waiting.
          DELETE FROM runstream_limits l USING keys k WHERE l.scope = k.scope AND l.key = k.key AND k.idle
        ),`)
  const wakeQueues = sql.literal(
    ", (SELECT array_agg(DISTINCT job_queue) FROM held WHERE concurrency_key IS NOT NULL) AS wake"
  )

  // Child runs (issue 20). A batch that ends child runs takes their parents'
  // jobs too, with its own, in one pass in id order (`ordered`), before any
  // run row: two such batches never wait on each other, and a parent's
  // waiting end (which takes its job first, then reads its children: below)
  // never waits for a child's end that waits for it. Each child's end then
  // takes itself off its parent's `waiting_on`, read under that lock (the
  // newest row, whatever the statement's snapshot), and the last one wakes
  // the parent: one wake-up for a fan-out of 100. A parent whose own end is
  // in the batch is left to that end.
  const finished = "('succeeded', 'failed', 'cancelled')"
  const orderedLocks = sql.literal(`ordered AS (
          SELECT run_id, locked_until, waiting_on FROM runstream_jobs
          WHERE run_id = ANY(ARRAY(
            SELECT run_id FROM input
            UNION SELECT parent_id FROM input WHERE parent_id IS NOT NULL AND kind IN ${finished}))
          ORDER BY run_id FOR UPDATE
        ), `)
  const heldFromInput = sql.literal("input")
  const heldFromOrdered = sql.literal("ordered")
  const parentsWoken = (at: Date) => sql`, woken AS (
          UPDATE runstream_jobs p SET
            waiting_on = nullif(ARRAY(SELECT unnest(o.waiting_on) EXCEPT SELECT unnest(f.ids)), '{}'),
            run_at = CASE WHEN o.locked_until IS NULL AND o.waiting_on <@ f.ids THEN ${at}::timestamptz ELSE p.run_at END
          FROM (
            SELECT h.parent_id, array_agg(h.run_id) AS ids FROM held h
            WHERE h.parent_id IS NOT NULL AND h.kind IN ${sql.literal(finished)} AND h.run_id = ANY(ARRAY(SELECT id FROM ended))
            GROUP BY h.parent_id
          ) f JOIN ordered o ON o.run_id = f.parent_id
          WHERE p.run_id = f.parent_id AND o.waiting_on && f.ids
            AND p.run_id <> ALL(ARRAY(SELECT run_id FROM held))
          RETURNING p.queue, o.locked_until IS NULL AND o.waiting_on <@ f.ids AS woke
        )`
  const parentQueues = sql.literal(", (SELECT array_agg(DISTINCT queue) FROM woken WHERE woke) AS woke")
  // A parent's waiting end on children: which of them are unfinished, read
  // with a share lock (the newest rows: a child whose end committed after
  // this statement began counts as finished; one whose end is under way is
  // waited for, and that end waits for nothing this statement holds, since
  // it took this parent's job first). None left: the parent is due at once,
  // instead of at its wait's time.
  const awaitedChildren = sql.literal(`, awaited AS (
          SELECT c.id, c.status FROM runstream_runs c
          WHERE c.id = ANY(ARRAY(SELECT unnest(children) FROM held WHERE kind = 'waiting' AND children IS NOT NULL))
          FOR SHARE OF c
        ), pending AS (
          -- Unfinished: all but those read finished, and those this batch ends. (A row
          -- this statement updates, a child's end in this batch, is not returned by the
          -- share lock: absent, it counts as unfinished unless its end finishes it.)
          -- Set differences (hashed), not a test per pair: a wait is on up to 1,000 children.
          SELECT h.run_id, ARRAY(
            SELECT unnest(h.children)
            EXCEPT SELECT a.id FROM awaited a WHERE a.status IN ${finished}
            EXCEPT SELECT run_id FROM held WHERE kind IN ${finished}
          ) AS ids
          FROM held h WHERE h.kind = 'waiting' AND h.children IS NOT NULL
        )`)
  const awaitedDone = (at: Date) => sql`
                          WHEN cardinality(pd.ids) = 0 THEN ${at}::timestamptz`
  const requeuedPlain = sql.literal("FROM held h")
  const requeuedAwaiting = sql.literal("FROM held h LEFT JOIN pending pd ON pd.run_id = h.run_id")
  const noChildren = sql.literal("")

  const recordEnds = (holder: Holder, items: ReadonlyArray<AttemptEnd>) =>
    Effect.gen(function*() {
      if (items.length === 0) return new Set<RunId>()
      const at = yield* now
      const workerId = "workerId" in holder ? holder.workerId : null
      const expiredBefore = "expiredBefore" in holder ? holder.expiredBefore : null
      const input = JSON.stringify(items.map((item) => {
        // The backoff counts from the moment the failure is recorded.
        // A waiting run is due at its wake-up time (`retry_at` holds it too;
        // none for a wait on children alone: see `requeued`).
        const retryAt = item.outcome._tag === "retrying"
          ? plusMillis(at, item.outcome.delayMs)
          : item.outcome._tag === "waiting"
          ? item.outcome.until
          : null
        const row = {
          run_id: item.runId,
          attempt: item.attempt,
          kind: item.outcome._tag,
          output: item.outcome._tag === "succeeded" ? item.outcome.output ?? null : null,
          error: "error" in item.outcome ? item.outcome.error : null,
          retry_at: retryAt,
          data: eventData(item, retryAt)
        }
        // Only waiting ends carry the key (absent reads as null): the other ends' JSON stays as it was.
        // So do the children a wait is on, and the parent of a child run.
        const children = item.outcome._tag === "waiting" ? item.outcome.children : undefined
        const waiting = item.outcome._tag === "waiting"
          ? { ...row, waiting_for: item.outcome.waitingFor, ...(children === undefined ? {} : { children }) }
          : row
        return item.parentId === undefined ? waiting : { ...waiting, parent_id: item.parentId }
      }))
      // Batches without runs that have limits (most) run the statement without the slots' release.
      const limited = items.some((item) => item.limited === true)
      // And those that end no child run and wait for none (all but workflows'), without their parts.
      const childEnds = items.some((item) => item.parentId !== undefined && isFinishing(item.outcome))
      const awaiting = items.some((item) => item.outcome._tag === "waiting" && item.outcome.children !== undefined)
      const rows = yield* sql<
        { id: RunId; wake?: ReadonlyArray<string> | null; woke?: ReadonlyArray<string> | null }
      >`/* prepared */
        WITH input AS (
          SELECT * FROM jsonb_to_recordset(${input}::jsonb)
            AS t(run_id uuid, attempt integer, kind text, output jsonb, error jsonb, retry_at timestamptz, data jsonb,
              waiting_for text, children uuid[], parent_id uuid)
        ), ${childEnds ? orderedLocks : noChildren}held AS (
          -- The attempts still held, with their input: later steps read this
          -- (a handful of rows, by key), never the JSON again.
          SELECT i.*${limited ? heldKeys : noLimits} FROM runstream_jobs j JOIN input i ON i.run_id = j.run_id AND i.attempt = j.attempt
          -- Look rows up by key: the planner has no estimate for the JSON input
          -- and, without fresh statistics, would scan the whole table instead.
          WHERE j.run_id = ANY(ARRAY(SELECT run_id FROM ${childEnds ? heldFromOrdered : heldFromInput}))
            AND j.locked_until IS NOT NULL
            AND (${workerId}::text IS NULL OR j.locked_by = ${workerId}::text)
            AND (${expiredBefore}::timestamptz IS NULL OR j.locked_until < ${expiredBefore}::timestamptz)
          ORDER BY j.run_id FOR UPDATE OF j
        )${awaiting ? awaitedChildren : noChildren}, ${limited ? releaseSlots : noLimits} deleted AS (
          DELETE FROM runstream_jobs
          WHERE run_id = ANY(ARRAY(SELECT run_id FROM held WHERE kind IN ('succeeded', 'failed', 'cancelled')))
        ), requeued AS (
          UPDATE runstream_jobs j SET locked_by = NULL, locked_until = NULL,
            -- A signal came while the attempt held the run (signalled, read here in the row
            -- as it is after any lock this waited for): a wait wakes at once; so does a wait on
            -- children none of which is unfinished by now. A wait without a time waits for what
            -- it waits for alone.
            run_at = CASE WHEN h.kind <> 'waiting' THEN coalesce(h.retry_at, ${at})
                          WHEN j.signalled THEN ${at}${awaiting ? awaitedDone(at) : noChildren}
                          ELSE coalesce(h.retry_at, 'infinity') END,
            signalled = false,
            -- A wait is no failure: like a hand-back, it gives the attempt back.
            attempt = CASE WHEN h.kind IN ('released', 'waiting') THEN j.attempt - 1 ELSE j.attempt END,
            waiting_for = h.waiting_for,
            -- The children a parent still waits for; none after any other end.
            waiting_on = ${awaiting ? sql`nullif(pd.ids, '{}')` : sql`NULL`}
          ${awaiting ? requeuedAwaiting : requeuedPlain}
          -- The held runs drive key lookups (as in ended, below).
          WHERE j.run_id = h.run_id AND h.kind IN ('retrying', 'released', 'waiting')
        ), ended AS (
          UPDATE runstream_runs r SET
            status = CASE WHEN i.kind IN ('retrying', 'released') THEN 'queued' ELSE i.kind END,
            output = CASE WHEN i.kind = 'succeeded' THEN i.output ELSE r.output END,
            error = CASE WHEN i.kind IN ('failed', 'retrying') THEN i.error
                         WHEN i.kind = 'succeeded' THEN NULL ELSE r.error END,
            finished_at = CASE WHEN i.kind IN ('succeeded', 'failed', 'cancelled') THEN ${at}::timestamptz END,
            run_at = CASE WHEN i.kind IN ('retrying', 'released', 'waiting') THEN coalesce(i.retry_at, ${at}) ELSE r.run_at END,
            attempt = CASE WHEN i.kind IN ('released', 'waiting') THEN r.attempt - 1 ELSE r.attempt END,
            last_seq = r.last_seq + 1
          FROM held i
          -- Each held run looked up by key. (The status test was written so
          -- that a status index could not serve it; migration 0005 dropped
          -- that index, so that a run's updates are heap-only.)
          WHERE r.id = i.run_id AND (r.status = 'running') IS TRUE AND r.attempt = i.attempt
          RETURNING r.id, r.task, r.last_seq, i.kind, i.data
        ), events AS (
          INSERT INTO runstream_events (run_id, seq, type, data, at)
          SELECT id, last_seq, 'run.' || kind, data, ${at} FROM ended
        ), outbox AS (
          ${Outbox.row(sql, sql`SELECT id, task, last_seq, 'run.' || kind, data, ${at}::timestamptz FROM ended`)}
        )${childEnds ? parentsWoken(at) : noChildren}
        SELECT id${limited ? wakeQueues : noLimits}${childEnds ? parentQueues : noChildren} FROM ended`
      // A slot freed: workers here and elsewhere may take the key's next run now.
      // A parent woken by its last child: the same.
      // Each run ended got its end's event.
      metrics?.eventsAppended(rows.length)
      const toWake = new Set(rows.flatMap((row) => [...(row.wake ?? []), ...(row.woke ?? [])]))
      for (const queue of toWake) yield* wake(queue)
      return new Set(rows.map((row) => row.id))
    }).pipe(Effect.withSpan("RunQueue.recordEnds", { attributes: { count: items.length } }))

  const reclaimExpired = (limit: number) =>
    Effect.gen(function*() {
      const at = yield* now
      const expired = yield* sql<
        {
          run_id: RunId
          queue: string
          attempt: number
          max_attempts: number
          cancel_requested: boolean
          limited: boolean
          parent_id: RunId | null
          task: string
          started_at: Date | null
        }
      >`
        SELECT j.run_id, j.queue, j.attempt, r.max_attempts, r.cancel_requested, j.concurrency_key IS NOT NULL AS limited,
          r.parent_id, r.task, r.started_at
        FROM runstream_jobs j JOIN runstream_runs r ON r.id = j.run_id
        WHERE j.locked_until < ${at}
        ORDER BY j.locked_until LIMIT ${limit}`
      if (expired.length === 0) return new Set<string>()
      const error: RunError = { tag: "LeaseExpired", message: "the worker stopped renewing its lease", retryable: true }
      const items = expired.map((row): AttemptEnd => ({
        runId: row.run_id,
        attempt: row.attempt,
        // A dead worker's run holds its key's slot until this end gives it back.
        limited: row.limited,
        // A child's end may wake its parent.
        ...(row.parent_id === null ? {} : { parentId: row.parent_id }),
        outcome: row.cancel_requested
          ? { _tag: "cancelled" }
          : row.attempt >= row.max_attempts
          ? { _tag: "failed", error }
          : { _tag: "retrying", error, delayMs: 0 }
      }))
      // `recordEnds` re-checks expiry under the row locks: a lease renewed in
      // the meantime is left alone.
      const ended = yield* recordEnds({ expiredBefore: at }, items)
      if (ended.size > 0) {
        yield* Effect.logInfo(`reclaimed ${ended.size} expired lease(s)`)
        // A worker that died never counts the runs its lost attempts finish: the reclaim does.
        if (metrics !== undefined) {
          for (let i = 0; i < expired.length; i++) {
            const row = expired[i]!
            if (!ended.has(row.run_id)) continue
            metrics.runFinished(row.task, items[i]!.outcome._tag, row.started_at === null ? undefined : (at.getTime() - new Date(row.started_at).getTime()) / 1000)
          }
        }
      }
      return new Set(expired.filter((row) => ended.has(row.run_id)).map((row) => row.queue))
    }).pipe(Effect.withSpan("RunQueue.reclaimExpired"))

  const nextDue = (queues: ReadonlyArray<string>, limitScopes: ReadonlyArray<string> = []) =>
    (limitScopes.length === 0
      ? sql<{ next: Date | null }>`
      SELECT min(run_at) AS next FROM runstream_jobs
      WHERE queue = ANY(${queues}) AND locked_until IS NULL AND concurrency_key IS NULL`
      // A key at its limit is left out: its runs wait for a slot (its release wakes the workers), not for a time.
      : sql<{ next: Date | null }>`
      SELECT least(
        (SELECT min(run_at) FROM runstream_jobs
         WHERE queue = ANY(${queues}) AND locked_until IS NULL AND concurrency_key IS NULL),
        (SELECT min(j.run_at) FROM runstream_limits l CROSS JOIN LATERAL (
           SELECT run_at FROM runstream_jobs
           WHERE limit_scope = l.scope AND concurrency_key = l.key AND locked_until IS NULL AND queue = ANY(${queues})
           ORDER BY run_at LIMIT 1
         ) j
         WHERE l.waiting > 0 AND (l.max_running IS NULL OR l.running < l.max_running) AND l.scope = ANY(${limitScopes}))
      ) AS next`).pipe(
        // A wait for a signal alone is due at 'infinity' (which pg reads as the number Infinity): never.
        Effect.map((rows) => Option.filter(Option.fromNullable(rows[0]?.next ?? null), (next) => next instanceof Date))
      )

  const scopesWaiting = (scopes: ReadonlyArray<string>) =>
    Effect.map(
      sql<{ scope: string }>`SELECT DISTINCT scope FROM runstream_limits WHERE waiting > 0 AND scope = ANY(${scopes})`,
      (rows) => rows.map((row) => row.scope)
    )

  const wake = (queue: string) =>
    Effect.zipRight(PubSub.publish(local, queue), Queue.offer(pendingNotify, queue)).pipe(Effect.asVoid)

  return RunQueue.of({
    handoff: yield* Claiming.makeHandoff(wake),
    claim: (options) => Claiming.claim(sql, options, metrics),
    heartbeat,
    recordEnds,
    reclaimExpired,
    nextDue,
    scopesWaiting,
    wake,
    wakeups: PubSub.subscribe(local)
  })
})

export const layer = Layer.scoped(RunQueue, make)
