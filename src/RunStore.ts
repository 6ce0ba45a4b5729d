/**
 * Runs as rows: create (idempotent; inserted, enqueued (its `runstream_jobs`
 * row) and logged by one statement, claimed at once when a local worker takes
 * it: see `queue/Claiming.ts`), get, list with a cursor, and cancellation.
 * @since 0.1.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Context, DateTime, Effect, Layer, Option, Predicate, Schema } from "effect"
import { IdempotencyConflict, InvalidCursor, RunAlreadyFinished, RunNotFound } from "./domain/Errors.ts"
import { paddedId, RunId, timeDigits } from "./domain/Ids.ts"
import { isFinished, maxListedChildren, Run, type RunChild, type RunError, type RunStatus } from "./domain/Run.ts"
import type { RunFilter } from "./domain/RunFilter.ts"
import { now } from "./internal/time.ts"
import * as Metrics from "./metrics/Metrics.ts"
import * as Outbox from "./Outbox.ts"
import { NotifyChannel } from "./PgListener.ts"
import * as Claiming from "./queue/Claiming.ts"
import type * as Limits from "./queue/Limits.ts"

/** A run to create; `id` is fresh, `runAt` resolved. */
export interface NewRun {
  readonly id: RunId
  readonly task: string
  readonly queue: string
  readonly input: unknown
  readonly maxAttempts: number
  readonly priority: number
  readonly timeoutMs: number | null
  readonly idempotencyKey: string | null
  readonly runAt: Date | null
  /**
   * An idle local worker that takes the run at once: it is created claimed by
   * it (see `queue/Claiming.ts`).
   */
  readonly claimedBy?: Claiming.Claimant | undefined
  /** The run this one replays. */
  readonly replayOf?: RunId | undefined
  /**
   * Fold this start into the waiting run of its task and key, if there is
   * one; `runAt` is then that run's new start, and `trailing` gives it this
   * start's input. (`runAt` is set: a debounced run is never claimed at its creation.)
   */
  readonly debounce?: { readonly key: string; readonly mode: "trailing" | "leading" } | undefined
  /** Its limits (its task's or its queue's) and its key, if it has any (see `queue/Limits.ts`); never with `claimedBy`. */
  readonly limits?: Limits.RunLimits | undefined
  /** The W3C traceparent of the span that started it, when tracing is on (`tracing/Tracing.ts`). */
  readonly traceparent?: string | undefined
  /** The run whose body started it (`ctx.start`): it is that run's child. */
  readonly parentId?: RunId | undefined
}

export interface ListOptions extends RunFilter {
  readonly limit: number
  readonly cursor?: string | undefined
}

export interface Created {
  readonly run: Run
  /** false when an existing run was returned: a repeated idempotency key, or a debounced start folded into its key's run. */
  readonly created: boolean
  /** true when a debounced start was folded into the waiting run of its key (returned, as it stands now). */
  readonly folded?: boolean | undefined
}

export class RunStore extends Context.Tag("runstream/RunStore")<RunStore, {
  /**
   * Creates runs, or returns the existing runs of repeated idempotency keys.
   * One statement (one round trip, atomic on its own); joins the caller's
   * transaction if there is one. A key already used with another task or
   * input fails with `IdempotencyConflict`, and nothing is created.
   */
  readonly create: (
    runs: ReadonlyArray<NewRun>
  ) => Effect.Effect<ReadonlyArray<Created>, IdempotencyConflict | SqlError.SqlError>
  readonly get: (runId: RunId) => Effect.Effect<Run, RunNotFound | SqlError.SqlError>
  /**
   * `get`, with the run's children (`ctx.start`): its oldest
   * `maxListedChildren`, and whether it has more (`GET /v1/runs/:id`).
   */
  readonly getWithChildren: (runId: RunId) => Effect.Effect<Run, RunNotFound | SqlError.SqlError>
  /** Newest first. `nextCursor` is set when there may be more. */
  readonly list: (options: ListOptions) => Effect.Effect<
    { readonly runs: ReadonlyArray<Run>; readonly nextCursor: string | null },
    InvalidCursor | SqlError.SqlError
  >
  /**
   * Cancels a run and its unfinished descendants: those waiting are
   * cancelled at once; those running are asked to stop (their workers are
   * notified and write `run.cancelled`). `ended` names the task of each run
   * this cancel finished (no worker will count them).
   */
  readonly cancel: (runId: RunId) => Effect.Effect<
    { readonly run: Run; readonly ended: ReadonlyArray<string> },
    RunNotFound | RunAlreadyFinished | SqlError.SqlError
  >
}>() {}

export interface RunRow {
  readonly id: RunId
  readonly task: string
  readonly queue: string
  readonly status: RunStatus
  readonly input: unknown
  readonly output: unknown
  readonly error: RunError | null
  readonly attempt: number
  readonly max_attempts: number
  readonly priority: number
  readonly timeout_ms: number | null
  readonly idempotency_key: string | null
  readonly created_at: Date
  readonly run_at: Date
  readonly started_at: Date | null
  readonly finished_at: Date | null
  readonly last_seq: number
  readonly replay_of: RunId | null
  readonly concurrency_key: string | null
  readonly parent_id: RunId | null
}

const utc = (date: Date) => DateTime.unsafeMake(date)

export const toRun = (row: RunRow): Run =>
  new Run({
    id: row.id,
    task: row.task,
    queue: row.queue,
    status: row.status,
    input: row.input ?? null,
    output: row.output ?? null,
    error: row.error,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    priority: row.priority,
    timeoutMs: row.timeout_ms,
    idempotencyKey: row.idempotency_key,
    createdAt: utc(row.created_at),
    runAt: utc(row.run_at),
    startedAt: row.started_at === null ? null : utc(row.started_at),
    finishedAt: row.finished_at === null ? null : utc(row.finished_at),
    lastSeq: row.last_seq,
    ...(row.replay_of === null ? {} : { replayOf: row.replay_of }),
    ...(row.concurrency_key === null ? {} : { concurrencyKey: row.concurrency_key }),
    ...(row.parent_id === null || row.parent_id === undefined ? {} : { parentId: row.parent_id })
  }, true)

export const runColumns = `id, task, queue, status, input, output, error, attempt, max_attempts, priority, timeout_ms,
  idempotency_key, created_at, run_at, started_at, finished_at, last_seq, replay_of, concurrency_key, parent_id`

/**
 * How long before its row's `created_at` a run's id may have been made (its
 * start is checked between the two): a run created at or after a time has an
 * id from no earlier than this before it.
 */
const idBeforeCreation = 60_000

/**
 * The ids a filter can match, from its prefix and times: ids are UUIDv7, so
 * their first 12 digits are the creation time in milliseconds (the id is made
 * just before the row's `created_at`, on the same clock).
 */
export const idRange = (filter: RunFilter): { readonly from: string; readonly to: string } => {
  const prefix = (filter.q ?? "").replaceAll("-", "")
  let from = paddedId(prefix, "0")
  let to = paddedId(prefix, "f")
  if (filter.createdAfter !== undefined) {
    const bound = paddedId(timeDigits(DateTime.toEpochMillis(filter.createdAfter) - idBeforeCreation), "0")
    if (bound > from) from = bound
  }
  if (filter.createdBefore !== undefined) {
    // Made before the row's creation, so before this bound: at most the last id of the millisecond before.
    const bound = paddedId(timeDigits(DateTime.toEpochMillis(filter.createdBefore) - 1), "f")
    if (bound < to) to = bound
  }
  return { from, to }
}

/** Cursors are opaque to clients: the base64url of the last run id of a page. */
export const encodeCursor = (runId: RunId): string => Buffer.from(runId).toString("base64url")

export const decodeCursor = (cursor: string): Effect.Effect<RunId, InvalidCursor> =>
  Option.match(Schema.decodeUnknownOption(RunId)(Buffer.from(cursor, "base64url").toString()), {
    onNone: () => Effect.fail(new InvalidCursor({ cursor: cursor.slice(0, 100) })),
    onSome: Effect.succeed
  })

/**
 * What a keyed run was started with, hashed by Postgres from the stored `jsonb`
 * (its text has one spelling whatever the key order or spacing of the request)
 * and only for keyed runs: unkeyed starts pay nothing.
 */
const requestHash = (task: string, input: string) =>
  `CASE WHEN idempotency_key IS NULL THEN NULL
    ELSE sha256(convert_to(${task} || chr(10) || coalesce(${input}, 'null'::jsonb)::text, 'UTF8')) END`

/** The unique index of waiting debounced runs (migration 0010). */
const debounceIndex = "runstream_jobs_debounce"

/** The insert lost the race for a debounce key to a start that committed first. */
const isDebounceRace = (error: SqlError.SqlError) =>
  Predicate.hasProperty(error.cause, "code") && error.cause.code === "23505" &&
  Predicate.hasProperty(error.cause, "constraint") && error.cause.constraint === debounceIndex

/**
 * How many times a debounced start tries to fold or insert: it tries again
 * only when another start of its key won the insert, and then folds into that
 * run, unless it was claimed in between.
 */
const debounceTries = 8

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const metrics = yield* Metrics.option
  const columns = sql.literal(runColumns)
  const keyedHash = sql.literal(requestHash("task", "input"))
  const noHash = sql.literal("NULL::bytea")
  // A key used before (or twice in this batch) with another task or input: nothing is inserted.
  const conflictCte = sql.literal(`conflict AS (
          SELECT 1 FROM input i JOIN runstream_runs r ON r.idempotency_key = i.idempotency_key
          WHERE i.idempotency_key IS NOT NULL AND r.request_hash <> i.request_hash
          UNION ALL
          SELECT 1 FROM input a JOIN input b ON a.idempotency_key = b.idempotency_key AND a.i < b.i
          WHERE a.request_hash <> b.request_hash
          LIMIT 1
        ),`)
  const conflictGuard = sql.literal("WHERE NOT EXISTS (SELECT 1 FROM conflict)")
  const noConflictCte = sql.literal("")
  const noConflictGuard = sql.literal("")

  // A batch with runs that have limits: each job carries its key, and each
  // key's row counts its waiting runs (created here, with the limits of this
  // program's definition, which then hold for the key). Key rows are taken in
  // key order, so two such starts never deadlock.
  const limitColumns = (limits: Limits.RunLimits | undefined) => ({
    limit_scope: limits?.scope ?? null,
    concurrency_key: limits?.key ?? null,
    max_running: limits?.maxRunning ?? null,
    rate_limit: limits?.rateLimit ?? null,
    rate_period_ms: limits?.ratePeriodMs ?? null
  })
  const noLimits = sql.literal("")
  const limitTypes = sql.literal(
    ", limit_scope text, concurrency_key text, max_running integer, rate_limit integer, rate_period_ms integer"
  )
  const placedLimits = sql.literal(", i.limit_scope, i.concurrency_key, i.max_running, i.rate_limit, i.rate_period_ms")
  const runKeyColumn = sql.literal(", concurrency_key")
  const jobKeyColumns = sql.literal(", limit_scope, concurrency_key")
  const traceparentType = sql.literal(", traceparent text")
  const traceparentColumn = sql.literal(", traceparent")
  const parentType = sql.literal(", parent_id uuid")
  const parentColumn = sql.literal(", parent_id")
  // The run keeps the key it was started with ('' on the job: none given).
  const runKey = sql.literal(", nullif(concurrency_key, '')")
  const countLimits = sql.literal(`counted AS (
          INSERT INTO runstream_limits AS l (scope, key, waiting, max_running, rate_limit, rate_period_ms, served)
          SELECT limit_scope, concurrency_key, count(*), max(max_running), max(rate_limit), max(rate_period_ms), min(run_at)
          FROM placed WHERE concurrency_key IS NOT NULL
          GROUP BY limit_scope, concurrency_key ORDER BY limit_scope, concurrency_key
          ON CONFLICT (scope, key) DO UPDATE SET waiting = l.waiting + EXCLUDED.waiting,
            max_running = EXCLUDED.max_running, rate_limit = EXCLUDED.rate_limit,
            rate_period_ms = EXCLUDED.rate_period_ms
        ),`)

  const insert = (runs: ReadonlyArray<NewRun>) =>
    Effect.gen(function*() {
      if (runs.length === 0) return []
      const at = yield* now
      // Batches without keys (most) run the statement without the conflict check.
      const keyed = runs.some((run) => run.idempotencyKey !== null)
      // And those without runs that have limits (most), without the limits' counts.
      const limited = runs.some((run) => run.limits !== undefined)
      // And those started outside a traced span (all, with tracing off), without the traceparent.
      const traced = runs.some((run) => run.traceparent !== undefined)
      // And those not started by a run's body (all but child runs), without the parent.
      const children = runs.some((run) => run.parentId !== undefined)
      const input = JSON.stringify(runs.map((run, i) => ({
        i,
        id: run.id,
        task: run.task,
        queue: run.queue,
        input: run.input ?? null,
        max_attempts: run.maxAttempts,
        priority: run.priority,
        timeout_ms: run.timeoutMs,
        idempotency_key: run.idempotencyKey,
        run_at: run.runAt ?? at,
        replay_of: run.replayOf ?? null,
        ...(run.debounce === undefined ? {} : { debounce_key: run.debounce.key }),
        ...(limited ? limitColumns(run.limits) : undefined),
        ...(traced ? { traceparent: run.traceparent ?? null } : undefined),
        ...(children ? { parent_id: run.parentId ?? null } : undefined),
        ...(run.claimedBy === undefined ? Claiming.waitingAtCreate : Claiming.claimedAtCreate(run.claimedBy, at))
      })))
      const inserted = yield* sql<RunRow>`/* prepared */
        WITH input AS (
          SELECT *, ${keyed ? keyedHash : noHash} AS request_hash
          FROM jsonb_to_recordset(${input}::jsonb) AS t(i integer, id uuid, task text, queue text,
            input jsonb, max_attempts integer, priority integer, timeout_ms integer, idempotency_key text,
            run_at timestamptz, status text, attempt integer, last_seq integer, started_at timestamptz,
            worker text, locked_until timestamptz, replay_of uuid, debounce_key text${limited ? limitTypes : noLimits}${
        traced ? traceparentType : noLimits
      }${children ? parentType : noLimits})
        ), ${keyed ? conflictCte : noConflictCte} inserted AS (
          INSERT INTO runstream_runs (id, task, queue, status, input, max_attempts, priority, timeout_ms,
            idempotency_key, request_hash, created_at, run_at, last_seq, attempt, started_at, replay_of${
        limited ? runKeyColumn : noLimits
      }${traced ? traceparentColumn : noLimits}${children ? parentColumn : noLimits})
          SELECT id, task, queue, status, input, max_attempts, priority, timeout_ms, idempotency_key, request_hash,
            ${at}, run_at, last_seq, attempt, started_at, replay_of${limited ? runKey : noLimits}${
        traced ? traceparentColumn : noLimits
      }${children ? parentColumn : noLimits}
          FROM input ${keyed ? conflictGuard : noConflictGuard} ORDER BY i
          -- The key's unique index is partial (keyed runs only): the conflict names its predicate.
          ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
          RETURNING ${columns}
        ), placed AS (
          SELECT r.id, r.task, r.queue, r.priority, r.run_at, r.attempt, i.worker, i.locked_until, i.debounce_key${limited ? placedLimits : noLimits}
          FROM inserted r JOIN input i ON i.id = r.id
        ), ${limited ? countLimits : noLimits} created AS (
          -- runAt as every other time of the API: ISO 8601 in UTC, milliseconds, a Z (not jsonb's +00:00).
          SELECT id, task, 1 AS seq, 'run.queued' AS type, jsonb_build_object('task', task, 'queue', queue,
            'runAt', to_char(run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) AS data, ${at}::timestamptz AS at
          FROM inserted
          UNION ALL
          SELECT id, task, 2, 'run.started', jsonb_build_object('attempt', attempt), ${at}::timestamptz
          FROM inserted WHERE status = 'running'
        ), events AS (
          INSERT INTO runstream_events (run_id, seq, type, data, at) SELECT id, seq, type, data, at FROM created
        ), outbox AS (
          ${Outbox.row(sql, sql`SELECT * FROM created`)}
        ), enqueued AS (
          INSERT INTO runstream_jobs (run_id, task, queue, priority, run_at, locked_by, locked_until, attempt, debounce_key${
        limited ? jobKeyColumns : noLimits
      })
          SELECT id, task, queue, priority, run_at, worker, locked_until, attempt, debounce_key${limited ? jobKeyColumns : noLimits} FROM placed
        )
        SELECT * FROM inserted`
      if (metrics !== undefined) {
        // `run.queued`, and `run.started` for a run created claimed.
        let events = 0
        for (const row of inserted) events += row.status === "running" ? 2 : 1
        metrics.eventsAppended(events)
      }
      const byId = new Map(inserted.map((row) => [row.id, row]))
      if (byId.size === runs.length) return runs.map((run): Created => ({ run: toRun(byId.get(run.id)!), created: true }))
      const missingKeys = runs.filter((run) => !byId.has(run.id) && run.idempotencyKey !== null)
        .map((run) => run.idempotencyKey!)
      // Read after the insert committed: a run of the same key committed
      // during the insert (which made it skip ours) is visible now. (Should it
      // conflict, the batch's other runs, created by then, stay: a race of two
      // different requests on one key, which the caller sees as the conflict.)
      const existing = yield* sql<RunRow & { readonly conflict: boolean }>`
        WITH input AS (
          SELECT idempotency_key, ${keyedHash} AS request_hash
          FROM jsonb_to_recordset(${input}::jsonb) AS t(task text, input jsonb, idempotency_key text)
          WHERE idempotency_key = ANY(${missingKeys})
        )
        SELECT ${columns}, (r.request_hash <> i.request_hash) IS TRUE AS conflict
        FROM runstream_runs r JOIN input i USING (idempotency_key)`
      const conflicting = existing.find((row) => row.conflict)
      if (conflicting !== undefined) {
        return yield* new IdempotencyConflict({ idempotencyKey: conflicting.idempotency_key!, runId: conflicting.id })
      }
      const byKey = new Map(existing.map((row) => [row.idempotency_key, row]))
      // Nothing inserted and no run to answer with: one key twice in this batch, with different requests.
      const unanswered = runs.filter((run) => !byId.has(run.id) && !byKey.has(run.idempotencyKey))
      if (unanswered.length > 0) {
        const key = unanswered.find((run) => run.idempotencyKey !== null)?.idempotencyKey ?? ""
        return yield* new IdempotencyConflict({ idempotencyKey: key, runId: undefined })
      }
      return runs.map((run): Created => {
        const row = byId.get(run.id)
        return row !== undefined
          ? { run: toRun(row), created: true }
          : { run: toRun(byKey.get(run.idempotencyKey)!), created: false }
      })
    })

  /**
   * A debounced start folded into the waiting run of its task and key: the
   * run's start moved to this one's `runAt` and, trailing, its input
   * replaced. None when the key has no waiting run (never started, or
   * claimed: the claim clears the key, under the job's row lock, so a fold
   * and a claim of one run are ordered).
   */
  const fold = (run: NewRun & { readonly debounce: NonNullable<NewRun["debounce"]> }) =>
    (run.debounce.mode === "trailing" && run.limits !== undefined
      ? foldTrailingWithLimits(run, run.limits)
      : sql<RunRow>`
      WITH job AS (
        UPDATE runstream_jobs SET run_at = ${run.runAt}
        WHERE task = ${run.task} AND debounce_key = ${run.debounce.key}
        RETURNING run_id
      )
      UPDATE runstream_runs r SET run_at = ${run.runAt},
        input = CASE WHEN ${run.debounce.mode === "trailing"} THEN ${JSON.stringify(run.input ?? null)}::jsonb ELSE r.input END
      WHERE r.id = ANY(ARRAY(SELECT run_id FROM job))
      RETURNING ${columns}`).pipe(Effect.map((rows) => Option.fromNullable(rows[0])))

  /**
   * A trailing fold of a run with limits: the run takes the last start's key
   * with its input (a key taken from an input field follows the input), and
   * the two keys' waiting counts move with it: both rows taken in key order,
   * after the job's, as everywhere. (The old key's row may stay, idle, until
   * its next run ends.) A run of another scope (started on another queue)
   * keeps its key.
   */
  const foldTrailingWithLimits = (run: NewRun, limits: Limits.RunLimits) =>
    sql<RunRow>`
      WITH job AS (
        SELECT run_id, concurrency_key AS old_key, limit_scope = ${limits.scope} AS same_scope FROM runstream_jobs
        WHERE task = ${run.task} AND debounce_key = ${run.debounce!.key}
        FOR UPDATE
      ), moved AS (
        UPDATE runstream_jobs j SET run_at = ${run.runAt},
          concurrency_key = CASE WHEN job.same_scope THEN ${limits.key} ELSE j.concurrency_key END
        FROM job WHERE j.run_id = job.run_id
        RETURNING j.run_id, job.old_key, j.concurrency_key AS new_key, job.same_scope
      ), recounted AS (
        INSERT INTO runstream_limits AS l (scope, key, waiting, max_running, rate_limit, rate_period_ms, served)
        SELECT ${limits.scope}, k.key, (k.key = moved.new_key)::integer, ${limits.maxRunning}::integer,
          ${limits.rateLimit}::integer, ${limits.ratePeriodMs}::integer, ${run.runAt}::timestamptz
        FROM moved CROSS JOIN LATERAL (VALUES (moved.old_key), (moved.new_key)) AS k(key)
        WHERE moved.same_scope AND moved.old_key <> moved.new_key
        ORDER BY k.key
        ON CONFLICT (scope, key) DO UPDATE SET waiting = l.waiting + CASE WHEN EXCLUDED.waiting = 1 THEN 1 ELSE -1 END
      )
      UPDATE runstream_runs r SET run_at = ${run.runAt}, input = ${JSON.stringify(run.input ?? null)}::jsonb,
        concurrency_key = nullif((SELECT new_key FROM moved), '')
      WHERE r.id = ANY(ARRAY(SELECT run_id FROM moved))
      RETURNING ${columns}`

  /** The run of an idempotency key, or `IdempotencyConflict` when it was started with another task or input. */
  const ofIdempotencyKey = (run: NewRun) =>
    Effect.gen(function*() {
      const rows = yield* sql<RunRow & { readonly conflict: boolean }>`
        SELECT ${columns}, (request_hash <> sha256(convert_to(${run.task} || chr(10) ||
          ${JSON.stringify(run.input ?? null)}::jsonb::text, 'UTF8'))) IS TRUE AS conflict
        FROM runstream_runs WHERE idempotency_key = ${run.idempotencyKey}`
      const row = rows[0]
      if (row === undefined) return Option.none()
      if (row.conflict) return yield* new IdempotencyConflict({ idempotencyKey: row.idempotency_key!, runId: row.id })
      return Option.some(toRun(row))
    })

  /** Joins the caller's transaction through a savepoint, so that a lost race can be tried again inside it. */
  const savepoint = <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.flatMap(
      Effect.serviceOption(SqlClient.TransactionConnection),
      (transaction) => Option.isSome(transaction) ? sql.withTransaction(self) : self
    )

  /**
   * One debounced start: its idempotency key first (a start repeated with
   * one returns its run, folded or not), then a fold into its key's waiting
   * run, else a new run holding the key. Two starts that both find no run
   * both insert: the unique index lets one in, and the other folds into it.
   */
  const createDebounced = (run: NewRun & { readonly debounce: NonNullable<NewRun["debounce"]> }) =>
    Effect.gen(function*() {
      if (run.idempotencyKey !== null) {
        const existing = yield* ofIdempotencyKey(run)
        if (Option.isSome(existing)) return { run: existing.value, created: false } satisfies Created
      }
      for (let tries = 1;; tries++) {
        const folded = yield* fold(run)
        if (Option.isSome(folded)) return { run: toRun(folded.value), created: false, folded: true } satisfies Created
        const inserted = yield* savepoint(insert([run])).pipe(
          Effect.map(Option.some),
          Effect.catchTag("SqlError", (error) =>
            isDebounceRace(error) && tries < debounceTries ? Effect.succeedNone : Effect.fail(error))
        )
        if (Option.isSome(inserted)) return inserted.value[0]!
      }
    })

  const isDebounced = (run: NewRun): run is NewRun & { readonly debounce: NonNullable<NewRun["debounce"]> } =>
    run.debounce !== undefined

  const create = (runs: ReadonlyArray<NewRun>) => {
    // Starts without a debounce (most) take the one statement as they did.
    if (!runs.some(isDebounced)) {
      return insert(runs).pipe(Effect.withSpan("RunStore.create", { attributes: { count: runs.length } }))
    }
    if (runs.length === 1) {
      return createDebounced(runs[0] as NewRun & { readonly debounce: NonNullable<NewRun["debounce"]> }).pipe(
        Effect.map((created) => [created]),
        Effect.withSpan("RunStore.create", { attributes: { count: 1, debounced: 1 } })
      )
    }
    // A batch with debounced starts: one transaction (all or none), the plain
    // runs by one statement, the debounced ones one by one in the order of
    // their keys (two such batches take the keys' locks in one order).
    return Effect.gen(function*() {
      const results: Array<Created | undefined> = runs.map(() => undefined)
      const plain = runs.flatMap((run, i) => isDebounced(run) ? [] : [i])
      const created = yield* insert(plain.map((i) => runs[i]!))
      plain.forEach((i, n) => results[i] = created[n])
      const debounced = runs.flatMap((run, i) => isDebounced(run) ? [i] : [])
      const key = (i: number) => `${runs[i]!.task}\n${runs[i]!.debounce!.key}`
      debounced.sort((a, b) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : a - b)
      for (const i of debounced) {
        results[i] = yield* createDebounced(runs[i] as NewRun & { readonly debounce: NonNullable<NewRun["debounce"]> })
      }
      return results.map((result) => result!)
    }).pipe(sql.withTransaction, Effect.withSpan("RunStore.create", { attributes: { count: runs.length } }))
  }

  const get = (runId: RunId) =>
    sql<RunRow>`/* prepared */ SELECT ${columns} FROM runstream_runs WHERE id = ${runId}`.pipe(
      Effect.flatMap((rows) =>
        rows.length === 0 ? Effect.fail(new RunNotFound({ runId })) : Effect.succeed(toRun(rows[0]!))
      )
    )

  // One statement: the run and, by the parent index, one more child than listed (to tell there are more).
  const getWithChildren = (runId: RunId) =>
    sql<RunRow & { readonly children: string }>`
      SELECT ${columns}, (
        SELECT coalesce(json_agg(json_build_array(c.id, c.task, c.status) ORDER BY c.id), '[]')::text FROM (
          SELECT id, task, status FROM runstream_runs WHERE parent_id = ${runId} ORDER BY id LIMIT ${maxListedChildren + 1}
        ) c
      ) AS children
      FROM runstream_runs WHERE id = ${runId}`.pipe(
      Effect.flatMap((rows) => {
        const row = rows[0]
        if (row === undefined) return Effect.fail(new RunNotFound({ runId }))
        const run = toRun(row)
        const children = (JSON.parse(row.children) as ReadonlyArray<readonly [RunId, string, RunStatus]>)
          .map(([id, task, status]): RunChild => ({ id, task, status }))
        if (children.length === 0) return Effect.succeed(run)
        return Effect.succeed(
          new Run({
            ...run,
            children: children.slice(0, maxListedChildren),
            moreChildren: children.length > maxListedChildren
          }, true)
        )
      })
    )

  const list = (options: ListOptions) =>
    Effect.gen(function*() {
      const before = options.cursor === undefined ? null : yield* decodeCursor(options.cursor)
      const ids = idRange(options)
      const createdAfter = options.createdAfter === undefined ? null : DateTime.toDate(options.createdAfter)
      const createdBefore = options.createdBefore === undefined ? null : DateTime.toDate(options.createdBefore)
      // The id bounds let the primary key's scan start and stop where the
      // prefix and the times allow; the other filters are tested on its rows
      // (the key's filter by its unique index).
      const rows = yield* sql<RunRow>`
        SELECT ${columns} FROM runstream_runs
        WHERE (${options.status ?? null}::text IS NULL OR status = ${options.status ?? null})
          AND (${options.task ?? null}::text IS NULL OR task = ${options.task ?? null})
          AND (${options.queue ?? null}::text IS NULL OR queue = ${options.queue ?? null})
          AND (${options.idempotencyKey ?? null}::text IS NULL OR idempotency_key = ${options.idempotencyKey ?? null})
          AND (${options.parentId ?? null}::uuid IS NULL OR parent_id = ${options.parentId ?? null}::uuid)
          AND (${createdAfter}::timestamptz IS NULL OR created_at >= ${createdAfter})
          AND (${createdBefore}::timestamptz IS NULL OR created_at < ${createdBefore})
          AND id >= ${ids.from}::uuid AND id <= ${ids.to}::uuid
          AND (${before}::uuid IS NULL OR id < ${before}::uuid)
        ORDER BY id DESC LIMIT ${options.limit + 1}`
      const page = rows.slice(0, options.limit)
      return {
        runs: page.map(toRun),
        nextCursor: rows.length > options.limit ? encodeCursor(page[page.length - 1]!.id) : null
      }
    })

  /**
   * The jobs a cancel may write, taken first, in one pass in id order, as
   * `RunQueue.recordEnds` takes its own and its children's parents': the
   * run's, its descendants' (the cancel reaches them all) and its parent's
   * (the cancel may wake it). Returns the run's parent, if any, and its
   * descendants (its children, theirs, ...), found by `parent_id` once here.
   */
  const lockTree = (runId: RunId) =>
    Effect.map(
      sql<{ parent_id: RunId | null; descendants: string }>`
        WITH RECURSIVE tree AS (
          SELECT id FROM runstream_runs WHERE parent_id = ${runId}
          UNION ALL
          SELECT r.id FROM runstream_runs r JOIN tree t ON r.parent_id = t.id
        ), root AS (
          SELECT parent_id FROM runstream_runs WHERE id = ${runId}
        ), locked AS (
          SELECT run_id FROM runstream_jobs
          WHERE run_id = ANY(ARRAY(
            SELECT id FROM tree UNION SELECT ${runId}::uuid UNION SELECT parent_id FROM root WHERE parent_id IS NOT NULL))
          ORDER BY run_id FOR UPDATE
        )
        SELECT parent_id, (SELECT count(*) FROM locked) AS locked,
          (SELECT coalesce(json_agg(id), '[]')::text FROM tree) AS descendants
        FROM root`,
      (rows) => ({
        parentId: rows[0]?.parent_id ?? null,
        descendants: rows[0] === undefined ? [] : JSON.parse(rows[0].descendants) as ReadonlyArray<RunId>
      })
    )

  /**
   * Cancels the unfinished runs of `ids` (a run and its descendants, whose
   * jobs `lockTree` took): those waiting (queued, or a workflow's wait) at
   * once, their `run.cancelled` written here; those running are asked to
   * stop (their workers write it). Returns the rows of both, each with `how`.
   * The run itself (`runId`) is asked again when it already was (its worker
   * may have missed the notification); its descendants are not.
   */
  const cancelRuns = (runId: RunId, ids: ReadonlyArray<RunId>, at: Date) =>
    sql<RunRow & { readonly how: "ended" | "requested" }>`
      WITH job AS (
        DELETE FROM runstream_jobs WHERE run_id = ANY(${ids}::uuid[]) AND locked_until IS NULL
        RETURNING run_id, limit_scope, concurrency_key
      ), keys AS (
        -- A waiting run with limits no longer waits for its key. Key rows in key order, as everywhere.
        SELECT l.scope, l.key, c.n FROM (
          SELECT limit_scope, concurrency_key, count(*)::integer AS n FROM job
          WHERE concurrency_key IS NOT NULL GROUP BY limit_scope, concurrency_key
        ) c JOIN runstream_limits l ON l.scope = c.limit_scope AND l.key = c.concurrency_key
        ORDER BY l.scope, l.key FOR UPDATE OF l
      ), uncounted AS (
        UPDATE runstream_limits l SET waiting = l.waiting - k.n FROM keys k WHERE l.scope = k.scope AND l.key = k.key
      ), ended AS (
        UPDATE runstream_runs r SET status = 'cancelled', finished_at = ${at}, last_seq = r.last_seq + 1
        -- A waiting run (a durable sleep) holds no worker: cancelled at once, as a queued one.
        FROM job WHERE r.id = job.run_id AND r.status IN ('queued', 'waiting')
        RETURNING ${sql.literal(runColumns.split(",").map((c) => `r.${c.trim()}`).join(", "))}
      ), events AS (
        INSERT INTO runstream_events (run_id, seq, type, data, at)
        SELECT id, last_seq, 'run.cancelled', jsonb_build_object('attempt', attempt), ${at} FROM ended
      ), outbox AS (
        ${Outbox.row(sql, sql`SELECT id, task, last_seq, 'run.cancelled', jsonb_build_object('attempt', attempt), ${at}::timestamptz FROM ended`)}
      ), requested AS (
        UPDATE runstream_runs SET cancel_requested = true
        WHERE id = ANY(${ids}::uuid[]) AND status = 'running' AND (NOT cancel_requested OR id = ${runId})
        RETURNING ${columns}
      ), notified AS (
        -- Delivered at commit; the workers holding them interrupt their bodies.
        SELECT count(pg_notify(${NotifyChannel.cancel}, id::text)) AS n FROM requested
      )
      SELECT 'ended' AS how, * FROM ended
      UNION ALL
      SELECT 'requested' AS how, * FROM requested WHERE (SELECT n FROM notified) >= 0`

  /**
   * A child cancelled while it waited: its parent, if waiting for it, no
   * longer does, and is woken if it was the last (as a child's end does in
   * `RunQueue.recordEnds`; the parent's job was taken by `lockTree`).
   */
  const wakeParent = (runId: RunId, parentId: RunId, at: Date) =>
    sql`
      WITH woken AS (
        UPDATE runstream_jobs p SET
          waiting_on = nullif(array_remove(p.waiting_on, ${runId}::uuid), '{}'),
          run_at = CASE WHEN p.locked_until IS NULL AND p.waiting_on <@ ARRAY[${runId}::uuid] THEN ${at} ELSE p.run_at END
        WHERE p.run_id = ${parentId} AND ${runId}::uuid = ANY(p.waiting_on)
        RETURNING p.queue, p.waiting_on IS NULL AND p.locked_until IS NULL AS woke
      )
      SELECT pg_notify(${NotifyChannel.queue}, queue) FROM woken WHERE woke`

  const cancel = (runId: RunId) =>
    Effect.gen(function*() {
      const at = yield* now
      const { descendants, parentId } = yield* lockTree(runId)
      const rows = yield* cancelRuns(runId, [runId, ...descendants], at)
      const ended = rows.flatMap((row) => row.how === "ended" ? [row.task] : [])
      // Each one ended here got its `run.cancelled`.
      metrics?.eventsAppended(ended.length)
      const own = rows.find((row) => row.id === runId)
      if (own !== undefined) {
        if (own.how === "ended" && parentId !== null) yield* wakeParent(runId, parentId, at)
        return { run: toRun(own), ended }
      }
      // Its descendants' cancels are rolled back with the transaction.
      const run = yield* get(runId)
      return yield* Effect.fail(
        isFinished(run.status)
          ? new RunAlreadyFinished({ runId, status: run.status })
          : new RunAlreadyFinished({ runId, status: `${run.status} (changed during the cancel; try again)` })
      )
    }).pipe(sql.withTransaction, Effect.withSpan("RunStore.cancel"))

  return RunStore.of({ create, get, getWithChildren, list, cancel })
})

export const layer = Layer.effect(RunStore, make)
