/**
 * Where a run becomes claimed: leased to one worker for one attempt, `running`,
 * its `run.started` logged. It happens two ways, both written here:
 *
 * - **the claim** (`claim`): a worker takes a batch of waiting runs with one
 *   statement (`FOR UPDATE SKIP LOCKED`, a lease per run);
 * - **the handoff** (`makeHandoff`): a run started in a program whose pool has
 *   a free runner and found nothing ready at its last claim is created
 *   already claimed by that pool (`claimedAtCreate`: the columns the creating
 *   statement, `RunStore.create`, writes) and handed to it after the commit
 *   (`claimOf`): one statement from start to body instead of a start, a
 *   wake-up and a claim.
 *
 * Both give the worker the same `Claim` and leave the same rows (tested in
 * test/queue/claiming.test.ts). A rule on which runs may be claimed goes
 * here, into both: the claim's `picked`, and the handoff's `reserve`.
 *
 * Limits per key (`Limits.ts`) hold by taking their runs off the handoff:
 * a run with limits (its task's or its queue's) is never created claimed
 * (`reserve` skips it), and only the claim's limited part (`claimLimited`)
 * takes it, under its key's row lock. So the limit needs no condition on
 * the creating statement.
 *
 * A debounced run (`RunStore.create`) is due `delayMs` after its last start,
 * so the handoff never takes it; the claim clears its key.
 *
 * Fairness of the handoff: such a worker's last claim found no ready run of
 * its queues, so a run handed over skips only runs enqueued elsewhere since then.
 * @since 0.2.0
 */
import { SqlClient } from "@effect/sql"
import { DateTime, Effect, type Scope, type Tracer } from "effect"
import type { RunId } from "../domain/Ids.ts"
import type { Run } from "../domain/Run.ts"
import { now, plusMillis } from "../internal/time.ts"
import type * as Metrics from "../metrics/Metrics.ts"
import * as Outbox from "../Outbox.ts"

/** A run claimed by a worker for one attempt. */
export interface Claim {
  readonly runId: RunId
  readonly task: string
  readonly queue: string
  readonly input: unknown
  readonly attempt: number
  readonly maxAttempts: number
  readonly timeoutMs: number | null
  readonly priority: number
  readonly runAt: Date
  /**
   * When the run's first attempt began (epoch ms, the row's `started_at` as
   * the claim leaves it): its own duration, first start to finish, is
   * measured from it (`Metrics.attemptEnded`).
   */
  readonly firstStartedAt: number
  /** A run of a task with limits: its end gives its key's slot back (`RunQueue.recordEnds`). */
  readonly limited: boolean
  /**
   * Only when the claim was `traced`: the W3C traceparent stored with the run
   * (the span that started it), and the claim's own span, which the
   * attempt's span links to (`tracing/Tracing.ts`).
   */
  readonly traceparent?: string | undefined
  readonly claimSpan?: Tracer.AnySpan | undefined
  /** A child run's parent (`ctx.start`): its end may wake the parent (`RunQueue.recordEnds`). */
  readonly parentId?: RunId | undefined
}

/** Who holds a claim, and for how long without a heartbeat. */
export interface Claimant {
  readonly workerId: string
  readonly leaseMs: number
}

export interface ClaimOptions extends Claimant {
  readonly queues: ReadonlyArray<string>
  readonly tasks?: ReadonlyArray<string> | undefined
  readonly limit: number
  /**
   * The limits' scopes this worker serves (`Limits.taskScope` of its limited
   * tasks, `Limits.queueScope` of its limited queues): when there are any,
   * the claim also serves their keys (`claimLimited`), runs of `tasks` only.
   */
  readonly limitScopes?: ReadonlyArray<string> | undefined
  /**
   * Tracing is on: the statement also returns each run's stored traceparent
   * (one statement, no lookup after it), and the claim's span is annotated
   * with the batch (its queues, size and run ids). Off, the statement is the
   * plain one.
   */
  readonly traced?: boolean | undefined
}

/**
 * A claimed run as the claim returns it: id, task, queue, input, attempt, max
 * attempts, timeout, priority, runAt and first start (epoch ms), limited; its
 * traceparent when traced; its parent, for a child run.
 */
type ClaimEntry = readonly [RunId, string, string, unknown, number, number, number | null, number, number, number, boolean?, (string | null)?, RunId?]

/**
 * Claims up to `limit` due runs of `queues`, highest priority first, with a
 * lease; only runs of `tasks` when given (a worker takes only what it can run,
 * so a rolling deploy does not fail runs of tasks that older workers lack).
 */
export const claim = (sql: SqlClient.SqlClient, options: ClaimOptions, metrics?: Metrics.Metrics | undefined) =>
  options.limitScopes !== undefined && options.limitScopes.length > 0
    ? claimLimited(sql, options, options.limitScopes, metrics)
    : claimPlain(sql, options, metrics)

const fromEntry = (
  [runId, task, queue, input, attempt, maxAttempts, timeoutMs, priority, runAt, firstStartedAt, limited, , parentId]: ClaimEntry
): Claim => ({
  runId,
  task,
  queue,
  input,
  attempt,
  maxAttempts,
  timeoutMs,
  priority,
  runAt: new Date(runAt),
  firstStartedAt,
  limited: limited === true,
  ...(parentId === undefined || parentId === null ? {} : { parentId })
})

const toClaims = (claims: string) => (JSON.parse(claims) as ReadonlyArray<ClaimEntry>).map(fromEntry)

/**
 * A traced claim's runs, each with its traceparent and the claim's span; the
 * span says what the batch was, so that its runs' attempts can be found from
 * it (by run id: each attempt's span carries its run's).
 */
const toTracedClaims = (claims: string, options: ClaimOptions) =>
  Effect.map(Effect.currentSpan.pipe(Effect.orElseSucceed(() => undefined)), (span) => {
    const entries = JSON.parse(claims) as ReadonlyArray<ClaimEntry>
    if (span !== undefined) {
      // Lists as comma-separated strings: `@effect/opentelemetry` writes other
      // values as JSON text, and a text search (`=~`) finds an id in either.
      span.attribute("runstream.queues", options.queues.join(","))
      span.attribute("runstream.batch_limit", options.limit)
      span.attribute("runstream.batch_size", entries.length)
      span.attribute("runstream.run_ids", entries.map((entry) => entry[0]).join(","))
    }
    return entries.map((entry): Claim => ({ ...fromEntry(entry), traceparent: entry[11] ?? undefined, claimSpan: span }))
  })

/**
 * What a claim's statement returns of each run (`ClaimEntry`): whether it is
 * limited from the limited claim, its traceparent too when traced, and a
 * child run's parent.
 */
const claimedColumns = (sql: SqlClient.SqlClient, traced: boolean, limited: "limited" | undefined) => {
  const base = `id, task, queue, input, attempt, max_attempts, timeout_ms, priority,
        floor(extract(epoch FROM run_at) * 1000), floor(extract(epoch FROM started_at) * 1000)`
  const plain = `${base}${limited !== undefined ? `, ${limited}` : traced ? ", false" : ""}${traced ? ", traceparent" : ""}`
  // A child run's entry names its parent too; the others' stay as short as they were.
  const child = `${base}, ${limited ?? "false"}, ${traced ? "traceparent" : "NULL"}, parent_id`
  return sql.literal(
    `coalesce(json_agg(CASE WHEN parent_id IS NULL THEN json_build_array(${plain}) ELSE json_build_array(${child}) END
        ORDER BY priority DESC, run_at, id), '[]')::text AS claims`
  )
}

/** The columns the claim's `started` returns beyond the plain ones when traced. */
const tracedReturning = (sql: SqlClient.SqlClient, traced: boolean) => sql.literal(traced ? ", r.traceparent" : "")

/**
 * Ready runs without a concurrency key, locked, in the claim's order (both
 * claims pick them so). One index walk per queue, in the ready index's order:
 * with "queue = ANY(...)" Postgres would fetch and sort every ready job.
 */
const readyWithoutKey = (sql: SqlClient.SqlClient, options: ClaimOptions, at: Date) =>
  sql`
        SELECT j.run_id, j.priority, j.run_at FROM unnest(${options.queues}::text[]) AS q(name)
        CROSS JOIN LATERAL (
          SELECT run_id, priority, run_at FROM runstream_jobs
          WHERE queue = q.name AND locked_until IS NULL AND concurrency_key IS NULL AND run_at <= ${at}
            AND (${options.tasks === undefined}::boolean OR task = ANY(${options.tasks ?? []}::text[]))
          ORDER BY priority DESC, run_at, run_id
          LIMIT ${options.limit} FOR UPDATE SKIP LOCKED
        ) j
        ORDER BY j.priority DESC, j.run_at, j.run_id
        LIMIT ${options.limit}`

/** The claim of a worker that serves no limits: runs without a key only (the ready index holds no others). */
const claimPlain = (sql: SqlClient.SqlClient, options: ClaimOptions, metrics: Metrics.Metrics | undefined) =>
  Effect.gen(function*() {
    const traced = options.traced === true
    const at = yield* now
    // The claims come as one JSON text, parsed by one JSON.parse: cheaper than
    // the driver's row decoding (its timestamptz parsing above all).
    const [row] = yield* sql<{ claims: string }>`/* prepared */
      WITH picked AS (${readyWithoutKey(sql, options, at)}
      ), leased AS (
        -- By key, here and below: joined, the planner hashes a scan of the
        -- whole table (it cannot tell how few rows a claim holds).
        -- A debounced run's key is cleared: the next start with it begins a new run.
        UPDATE runstream_jobs j SET locked_by = ${options.workerId},
          locked_until = ${plusMillis(at, options.leaseMs)}, attempt = j.attempt + 1, debounce_key = NULL
        WHERE j.run_id = ANY(ARRAY(SELECT run_id FROM picked))
        RETURNING j.run_id, j.attempt
      ), started AS (
        UPDATE runstream_runs r SET status = 'running', attempt = leased.attempt,
          started_at = coalesce(r.started_at, ${at}), last_seq = r.last_seq + 1
        FROM leased WHERE r.id = leased.run_id AND r.id = ANY(ARRAY(SELECT run_id FROM leased))
        RETURNING r.id, r.task, r.queue, r.input, r.attempt, r.max_attempts, r.timeout_ms, r.last_seq,
          r.priority, r.run_at, r.started_at, r.parent_id${tracedReturning(sql, traced)}
      ), events AS (
        INSERT INTO runstream_events (run_id, seq, type, data, at)
        SELECT id, last_seq, 'run.started', jsonb_build_object('attempt', attempt), ${at} FROM started
      ), outbox AS (
        ${Outbox.row(sql, sql`SELECT id, task, last_seq, 'run.started', jsonb_build_object('attempt', attempt), ${at}::timestamptz FROM started`)}
      )
      SELECT ${claimedColumns(sql, traced, undefined)}
      FROM started`
    const claims = traced ? yield* toTracedClaims(row!.claims, options) : toClaims(row!.claims)
    // A `run.started` per claim.
    metrics?.eventsAppended(claims.length)
    return claims
  }).pipe(Effect.withSpan("RunQueue.claim"))

/** A time as the API writes every time: ISO 8601 in UTC, milliseconds, a Z. */
const isoTime = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`

/**
 * Runs `statement` on a connection taken before it reads the time: the
 * limited claim's time stamps the starts its keys' rate windows count, and a
 * time read before a wait for a connection (a busy pool) is stale by the
 * wait. Then a key could start more than its limit within a period of the
 * database's clock (the fault suite's scenario 8: 6-8 starts in one second
 * with a limit of 4, stamps stale by up to 349 ms under load).
 */
const onHeldConnection = <A, E, R>(sql: SqlClient.SqlClient, statement: Effect.Effect<A, E, R>) =>
  Effect.scoped(Effect.flatMap(sql.reserve, (connection) =>
    // The statements of `statement` run on it, as they would in a transaction (none is opened).
    Effect.provideService(statement, SqlClient.TransactionConnection, [connection, 0])))

/**
 * The claim of a worker that runs tasks with limits: the plain claim's runs,
 * and runs of the keys of the limits it serves (`limitScopes`), in one statement.
 *
 * Keys are served least recently served first (`served`): one key's long
 * backlog does not hold back a key with one run. Each key served gives up to
 * its free slots (and its rate's free starts) of runs, in its own order
 * (priority, run_at, id); the batch takes each key's first run, then each
 * key's second, and so on, interleaved one for one with runs without limits.
 * The key's row is locked for the statement (`SKIP LOCKED`: a key another
 * claim holds is that claim's), so its counts cannot be read twice.
 *
 * A key over its rate: the runs it would start wait, each until a start of
 * the window leaves it (`run_at`, on the job and the run), logged
 * `run.throttled` the first time.
 */
const claimLimited = (
  sql: SqlClient.SqlClient,
  options: ClaimOptions,
  limitScopes: ReadonlyArray<string>,
  metrics: Metrics.Metrics | undefined
) =>
  onHeldConnection(sql, Effect.gen(function*() {
    const traced = options.traced === true
    const at = yield* now
    const [row] = yield* sql<{ claims: string; throttled: number }>`/* prepared */
      WITH keys AS (
        -- Re-read under the lock: a row another claim updated meanwhile is checked again.
        SELECT scope, key, running, max_running, rate_limit, rate_period_ms, starts, served
        FROM runstream_limits
        WHERE waiting > 0 AND (max_running IS NULL OR running < max_running)
          AND scope = ANY(${limitScopes}::text[])
        ORDER BY served, scope, key
        LIMIT ${options.limit} FOR UPDATE SKIP LOCKED
      ), windows AS (
        -- The starts within the rate's period, oldest first.
        SELECT *, CASE WHEN rate_limit IS NOT NULL THEN ARRAY(
          SELECT s FROM unnest(starts) s WHERE s > ${at}::timestamptz - rate_period_ms * interval '1 millisecond' ORDER BY s
        ) END AS recent
        FROM keys
      ), slots AS (
        SELECT scope, key, served, rate_limit, rate_period_ms, recent,
          least(coalesce(max_running - running, ${options.limit}), ${options.limit}, coalesce(rate_limit, ${options.limit})) AS take,
          CASE WHEN rate_limit IS NULL THEN ${options.limit} ELSE greatest(rate_limit - cardinality(recent), 0) END AS tokens,
          -- Starts beyond the limit (it was lowered): they leave the window first.
          CASE WHEN rate_limit IS NULL THEN 0 ELSE greatest(cardinality(recent) - rate_limit, 0) END AS over
        FROM windows
      ), candidates AS (
        -- Each key's first runs, in its order: the first \`tokens\` may start now, the others wait. A
        -- key with none ready gives one row without a run (it goes to the back of the round).
        SELECT c.run_id, c.priority, c.run_at, c.throttled, k.scope, k.key, k.served, k.tokens, k.over, k.recent,
          k.rate_period_ms, row_number() OVER (PARTITION BY k.scope, k.key ORDER BY c.priority DESC, c.run_at, c.run_id) AS rank
        FROM slots k LEFT JOIN LATERAL (
          SELECT run_id, priority, run_at, throttled FROM runstream_jobs
          WHERE limit_scope = k.scope AND concurrency_key = k.key AND locked_until IS NULL AND run_at <= ${at}
            AND queue = ANY(${options.queues}::text[])
            AND (${options.tasks === undefined}::boolean OR task = ANY(${options.tasks ?? []}::text[]))
          ORDER BY priority DESC, run_at, run_id
          LIMIT k.take FOR UPDATE SKIP LOCKED
        ) c ON true
      ), plain AS (${readyWithoutKey(sql, options, at)}
      ), picked AS (
        SELECT run_id FROM (
          SELECT run_id, row_number() OVER (ORDER BY priority DESC, run_at, run_id) AS turn, 1 AS class FROM plain
          UNION ALL
          SELECT run_id, row_number() OVER (ORDER BY rank, served, scope, key), 0 FROM candidates
          WHERE run_id IS NOT NULL AND rank <= tokens
        ) c
        ORDER BY turn, class
        LIMIT ${options.limit}
      ), leased AS (
        UPDATE runstream_jobs j SET locked_by = ${options.workerId},
          locked_until = ${plusMillis(at, options.leaseMs)}, attempt = j.attempt + 1, debounce_key = NULL
        WHERE j.run_id = ANY(ARRAY(SELECT run_id FROM picked))
        RETURNING j.run_id, j.attempt, j.limit_scope, j.concurrency_key
      ), counted AS (
        -- By key, from the runs leased (the key rows are this statement's: locked above).
        UPDATE runstream_limits l SET running = l.running + n.claimed, waiting = l.waiting - n.claimed,
          served = ${at}::timestamptz,
          starts = CASE WHEN l.rate_limit IS NULL THEN '{}' ELSE ARRAY(
            SELECT s FROM unnest(l.starts) s WHERE s > ${at}::timestamptz - l.rate_period_ms * interval '1 millisecond' ORDER BY s
          ) || array_fill(${at}::timestamptz, ARRAY[n.claimed]) END
        FROM (SELECT limit_scope, concurrency_key, count(*)::integer AS claimed FROM leased GROUP BY limit_scope, concurrency_key) n
        WHERE l.scope = n.limit_scope AND l.key = n.concurrency_key
      ), passed AS (
        -- A key with nothing to start now goes to the back of the round. (One that offered runs
        -- and got none claimed, the batch being full, keeps its turn.)
        UPDATE runstream_limits l SET served = ${at}::timestamptz
        FROM (SELECT DISTINCT scope, key FROM candidates WHERE run_id IS NULL OR tokens = 0) i
        WHERE l.scope = i.scope AND l.key = i.key
      ), pushed AS (
        UPDATE runstream_jobs j SET run_at = c.until, throttled = true
        FROM (
          SELECT run_id, throttled,
            coalesce(recent[over + rank - tokens], ${at}::timestamptz) + rate_period_ms * interval '1 millisecond' AS until
          FROM candidates WHERE run_id IS NOT NULL AND rank > tokens
        ) c
        WHERE j.run_id = c.run_id AND j.run_id = ANY(ARRAY(SELECT run_id FROM candidates WHERE run_id IS NOT NULL AND rank > tokens))
        RETURNING j.run_id, j.run_at AS until, c.throttled AS was_throttled
      ), throttled AS (
        UPDATE runstream_runs r SET run_at = p.until,
          last_seq = r.last_seq + CASE WHEN p.was_throttled THEN 0 ELSE 1 END
        FROM pushed p WHERE r.id = p.run_id AND r.id = ANY(ARRAY(SELECT run_id FROM pushed))
        RETURNING r.id, r.task, r.last_seq, p.until, p.was_throttled
      ), started AS (
        UPDATE runstream_runs r SET status = 'running', attempt = leased.attempt,
          started_at = coalesce(r.started_at, ${at}), last_seq = r.last_seq + 1
        FROM leased WHERE r.id = leased.run_id AND r.id = ANY(ARRAY(SELECT run_id FROM leased))
        RETURNING r.id, r.task, r.queue, r.input, r.attempt, r.max_attempts, r.timeout_ms, r.last_seq,
          r.priority, r.run_at, r.started_at, leased.concurrency_key IS NOT NULL AS limited, r.parent_id${tracedReturning(sql, traced)}
      ), logged AS (
        SELECT id, task, last_seq, 'run.started' AS type, jsonb_build_object('attempt', attempt) AS data FROM started
        UNION ALL
        SELECT id, task, last_seq, 'run.throttled', jsonb_build_object('until', ${sql.literal(isoTime("until"))})
        FROM throttled WHERE NOT was_throttled
      ), events AS (
        INSERT INTO runstream_events (run_id, seq, type, data, at)
        SELECT id, last_seq, type, data, ${at} FROM logged
      ), outbox AS (
        ${Outbox.row(sql, sql`SELECT id, task, last_seq, type, data, ${at}::timestamptz FROM logged`)}
      )
      SELECT ${claimedColumns(sql, traced, "limited")},
        (SELECT count(*) FROM throttled WHERE NOT was_throttled)::integer AS throttled
      FROM started`
    const claims = traced ? yield* toTracedClaims(row!.claims, options) : toClaims(row!.claims)
    // A `run.started` per claim, and the `run.throttled` of the runs first pushed back.
    metrics?.eventsAppended(claims.length + row!.throttled)
    return claims
  })).pipe(Effect.withSpan("RunQueue.claimLimited"))

/**
 * A new run's state columns as the creating statement writes them: waiting,
 * or, for a run claimed at its creation, as a claim would leave it: running,
 * attempt 1, `run.started` after `run.queued` (so `last_seq` 2), its job
 * leased to the claimant.
 */
export const waitingAtCreate = {
  status: "queued",
  attempt: 0,
  last_seq: 1,
  started_at: null,
  worker: null,
  locked_until: null
} as const

export const claimedAtCreate = (claimant: Claimant, at: Date) => ({
  status: "running",
  attempt: 1,
  last_seq: 2,
  started_at: at,
  worker: claimant.workerId,
  locked_until: plusMillis(at, claimant.leaseMs)
})

/**
 * The claim of a run as its row stands once claimed (by the claim or at its
 * creation); with the traceparent it was created with, when traced.
 */
export const claimOf = (run: Run, traceparent?: string | undefined): Claim => ({
  runId: run.id,
  task: run.task,
  queue: run.queue,
  input: run.input,
  attempt: run.attempt,
  maxAttempts: run.maxAttempts,
  timeoutMs: run.timeoutMs,
  priority: run.priority,
  runAt: DateTime.toDate(run.runAt),
  firstStartedAt: run.startedAt === null ? Date.now() : DateTime.toEpochMillis(run.startedAt),
  // Runs with limits are never created claimed (see the header).
  limited: false,
  ...(traceparent === undefined ? undefined : { traceparent }),
  ...(run.parentId === undefined ? {} : { parentId: run.parentId })
})

/** A pool that takes runs at their start. */
export interface Taker extends Claimant {
  readonly queues: ReadonlySet<string>
  readonly tasks: ReadonlySet<string>
  /** Reserves a runner for a run starting now; false when none is idle. */
  readonly tryReserve: () => boolean
  /** Gives a reservation back: its run was not created (an error, a repeated idempotency key). */
  readonly cancel: () => void
  /** Hands over a run created claimed by this taker, once its statement committed. */
  readonly take: (claim: Claim) => Effect.Effect<void>
}

/** A run about to be created, as the handoff sees it. */
export interface Placing {
  readonly task: string
  readonly queue: string
  /** null: due at once. */
  readonly runAt: Date | null
  /** Its limits (`Limits.RunLimits`), if it has any: then only the claim takes it. */
  readonly limits?: unknown
  /** The traceparent it is created with (tracing on), for the attempt's span of a run handed over. */
  readonly traceparent?: string | undefined
}

/** The runs to create, each marked `claimedBy` the taker that reserved a runner for it, if any. */
export interface Reservation<R extends Placing> {
  readonly runs: ReadonlyArray<R & { readonly claimedBy?: Claimant | undefined }>
  /** The statement failed (or was interrupted): every reservation is given back. */
  readonly cancel: Effect.Effect<void>
  /**
   * After the commit, with the statement's result (in the order of `runs`):
   * each run created claimed to its taker; a reservation of a run not created
   * (a repeated idempotency key) given back; the queues of runs created
   * waiting woken. In that order: the fibers woken run in the order they were
   * woken, and a body should not wait behind a wake-up.
   */
  readonly handOver: (created: ReadonlyArray<{ readonly run: Run; readonly created: boolean }>) => Effect.Effect<void>
}

export interface Handoff {
  /** Offers `taker` runs as they start, until the scope closes. */
  readonly register: (taker: Taker) => Effect.Effect<void, never, Scope.Scope>
  /** Reserves a runner of an idle taker for each run due now whose queue and task it serves. */
  readonly reserve: <R extends Placing>(runs: ReadonlyArray<R>) => Reservation<R>
}

/** This program's takers; `wake` tells the workers of a queue that runs were enqueued. */
export const makeHandoff = (wake: (queue: string) => Effect.Effect<void>): Effect.Effect<Handoff> =>
  Effect.sync(() => {
    const takers = new Set<Taker>()
    const takerOf = (queue: string, task: string) => {
      for (const taker of takers) {
        if (taker.queues.has(queue) && taker.tasks.has(task) && taker.tryReserve()) return taker
      }
      return undefined
    }
    const reserve = <R extends Placing>(placing: ReadonlyArray<R>): Reservation<R> => {
      const reserved = placing.map((run) =>
        run.runAt === null && run.limits === undefined && takers.size > 0 ? takerOf(run.queue, run.task) : undefined
      )
      const runs = placing.map((run, i) => {
        const taker = reserved[i]
        return taker === undefined ? run : { ...run, claimedBy: { workerId: taker.workerId, leaseMs: taker.leaseMs } }
      })
      return {
        runs,
        cancel: Effect.sync(() => reserved.forEach((taker) => taker?.cancel())),
        handOver: (created) =>
          Effect.gen(function*() {
            const toWake = new Set<string>()
            for (let i = 0; i < runs.length; i++) {
              const taker = reserved[i]
              const { created: isNew, run } = created[i]!
              if (taker === undefined) {
                if (isNew) toWake.add(run.queue)
              } else if (!isNew) {
                // A repeated idempotency key: the existing run was returned, nothing to hand over.
                taker.cancel()
              } else {
                yield* taker.take(claimOf(run, runs[i]!.traceparent))
              }
            }
            for (const queue of toWake) yield* wake(queue)
          })
      }
    }
    return {
      register: (taker) =>
        Effect.acquireRelease(
          Effect.sync(() => void takers.add(taker)),
          () => Effect.sync(() => void takers.delete(taker))
        ),
      reserve
    }
  })
