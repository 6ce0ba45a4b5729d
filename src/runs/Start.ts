/**
 * Starting runs: a request checked (its task registered, its options valid,
 * its input encoded and storable), then created by one statement
 * (`RunStore.create`), claimed at once by an idle worker of this program when
 * one serves it (`queue/Claiming.ts`'s handoff), else enqueued and its queue
 * woken. Part of `Runs` (its `start` and `startMany`).
 * @since 0.2.0
 */
import type { SqlError } from "@effect/sql"
import { Clock, DateTime, Duration, Effect, Option, Schema } from "effect"
import { type IdempotencyConflict, InvalidInput, PayloadTooLarge, UnknownTask } from "../domain/Errors.ts"
import { makeRunId, type RunId } from "../domain/Ids.ts"
import type { Run } from "../domain/Run.ts"
import { StartOptions } from "../domain/StartOptions.ts"
import * as Metrics from "../metrics/Metrics.ts"
import { Outbox } from "../Outbox.ts"
import * as Limits from "../queue/Limits.ts"
import { QueueLimits } from "../queue/QueueLimits.ts"
import { RunQueue } from "../queue/RunQueue.ts"
import { type Created, type NewRun, RunStore } from "../RunStore.ts"
import * as Task from "../Task.ts"
import * as Tracing from "../tracing/Tracing.ts"
import * as TaskInput from "./TaskInput.ts"

/** One run to start by task name, as the API receives it. */
export interface StartRequest {
  readonly task: string
  readonly input: unknown
  readonly options?: StartOptions | undefined
  /** The run this one replays (`Runs.replay`). */
  readonly replayOf?: RunId | undefined
  /** The run whose body starts this one (`ctx.start`): it is that run's child. */
  readonly parentId?: RunId | undefined
}

export type StartError = UnknownTask | InvalidInput | PayloadTooLarge | IdempotencyConflict | SqlError.SqlError

const allErrors = { errors: "all" } as const

// Built once: `Schema.validate(schema)` derives the type schema and its parser on each call.
const validateOptions = Schema.validate(StartOptions, allErrors)

export const make = (config: { readonly maxInputBytes: number }) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const outbox = yield* Outbox
    const queue = yield* RunQueue
    const registry = yield* Task.TaskRegistry
    const queueLimits = yield* QueueLimits
    const metrics = yield* Metrics.option
    // With tracing on, each run keeps the span that started it (see `tracing/Tracing.ts`).
    const tracing = (yield* Tracing.option) !== undefined
    const count = (created: ReadonlyArray<Created>) => {
      if (metrics === undefined) return
      for (const { created: isNew, run } of created) if (isNew) metrics.runsStarted(run.task, 1)
    }

    /** The run a request describes, checked; refused with the request's first fault. */
    const prepare = (request: StartRequest, typed: boolean) =>
      Effect.gen(function*() {
        const registered = yield* Option.match(registry.get(request.task), {
          onNone: () => Effect.fail(new UnknownTask({ task: request.task })),
          onSome: Effect.succeed
        })
        const task = registered.task
        // Typed callers cannot pass bad options, but JSON and RPC callers can.
        const options = request.options === undefined ? {} : yield* validateOptions(request.options).pipe(
          Effect.mapError((error) => InvalidInput.fromParseError("options", error))
        )
        const input = yield* TaskInput.encode(task, request.input, typed, config.maxInputBytes)
        const queue = options.queue ?? "default"
        // A task's own limits, else its queue's (`queue/QueueLimits.ts`). For a task's, a
        // start's own key wins, else the field they name; a queue's count by the start's key.
        const limits = Limits.isLimited(task.limits)
          ? Limits.ofRun(
            Limits.taskScope(task.name),
            task.limits,
            options.concurrencyKey ?? (yield* TaskInput.limitKey(task, input))
          )
          : Limits.ofRun(Limits.queueScope(queue), queueLimits.of(queue), options.concurrencyKey)
        // A debounced run is due `delayMs` after its start (so never handed
        // over at its creation); a start folded into it moves it the same way.
        const debounce = options.debounce
        const runAt = debounce !== undefined
          ? new Date((yield* Clock.currentTimeMillis) + debounce.delayMs)
          : options.runAt === undefined
          ? null
          : DateTime.toDate(options.runAt)
        return {
          id: yield* makeRunId,
          task: task.name,
          queue,
          input,
          maxAttempts: options.maxAttempts ?? task.retry.maxAttempts,
          priority: options.priority ?? 0,
          timeoutMs: options.timeoutMs ?? Option.getOrNull(Option.map(task.timeout, Duration.toMillis)),
          idempotencyKey: options.idempotencyKey ?? null,
          runAt,
          replayOf: request.replayOf,
          parentId: request.parentId,
          debounce: debounce === undefined ? undefined : { key: debounce.key, mode: debounce.mode ?? "trailing" },
          limits,
          traceparent: tracing ? yield* Tracing.currentTraceparent : undefined
        } satisfies NewRun
      })

    /**
     * Creates the runs; a run due now whose task an idle worker of this
     * program runs is created claimed by it and handed over after the commit
     * (see `queue/Claiming.ts`), the others' queues are woken, then the
     * relay's hint. The statement stays interruptible (its reservations are
     * then given back; should it have committed, the run's lease expires and
     * it is retried); what follows it is not, so a run created claimed
     * reaches its worker.
     */
    const insert = (requests: ReadonlyArray<StartRequest>, typed: boolean) =>
      Effect.gen(function*() {
        const prepared = yield* Effect.forEach(requests, (request) => prepare(request, typed))
        return yield* Effect.uninterruptibleMask((restore) => {
          const reservation = queue.handoff.reserve(prepared)
          return restore(store.create(reservation.runs)).pipe(
            Effect.onError(() => reservation.cancel),
            Effect.tap((created) => {
              count(created)
              return Effect.zipRight(reservation.handOver(created), outbox.written)
            })
          )
        })
      })

    const start = <T extends Task.Any>(task: T, input: Task.InputOf<T>, options?: StartOptions): Effect.Effect<Run, StartError> =>
      Effect.map(insert([{ task: task.name, input, options }], true), (created) => created[0]!.run)

    const startMany = (requests: ReadonlyArray<StartRequest>): Effect.Effect<ReadonlyArray<Created>, StartError> =>
      insert(requests, false)

    return { start, startMany }
  })
