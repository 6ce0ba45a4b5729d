/**
 * The tasks of the fault suite: the demo tasks (the steady load: `demo.count`
 * emits `to` ticks, `delayMs` apart) and the poison tasks of scenario 7, each
 * hostile in one way. Every process of the suite registers all of them.
 *
 * Scenario 8's tasks (`flowControl`: limits per key, debounce, a schedule) are
 * registered only by the processes started with `FAULTS_FLOW_CONTROL=1`: a
 * worker that registers a task with limits claims through the limited claim
 * (`queue/Claiming.ts`), which would change what the other scenarios measure.
 */
import { Config, Duration, Effect, Schema } from "effect"
import { appendFileSync } from "node:fs"
import * as Demo from "../../src/demo/tasks.ts"
import * as RunSchedule from "../../src/schedules/RunSchedule.ts"
import * as Task from "../../src/Task.ts"

const poisonRetry = { maxAttempts: 2, initialDelay: "50 millis", maxDelay: "200 millis" } as const

/** Dies with a defect (a thrown error, not a typed failure) after one event. */
export const Defect = Task.make("faults.defect", {
  input: Schema.Struct({}),
  output: Schema.Null,
  retry: poisonRetry,
  run: (_, ctx) =>
    Effect.zipRight(ctx.emit("about-to-die", {}), Effect.sync((): null => {
      throw new Error("poison: the body threw")
    }))
})

/** Never finishes (interruptibly); its per-attempt timeout must end it. */
export const Hang = Task.make("faults.hang", {
  input: Schema.Struct({}),
  output: Schema.Null,
  retry: poisonRetry,
  timeout: "500 millis",
  run: (_, ctx) => Effect.zipRight(ctx.emit("hanging", {}), Effect.never)
})

/**
 * Never finishes, and its cleanup never finishes either: interrupting it
 * cannot complete. Its per-attempt timeout must still end the attempt.
 */
export const HangInCleanup = Task.make("faults.hang-in-cleanup", {
  input: Schema.Struct({}),
  output: Schema.Null,
  retry: poisonRetry,
  timeout: "500 millis",
  run: (_, ctx) =>
    Effect.zipRight(
      ctx.emit("hanging", {}),
      Effect.acquireRelease(Effect.void, () => Effect.never).pipe(Effect.zipRight(Effect.never), Effect.scoped)
    )
})

/** Returns an output that fails its own schema. */
export const BadOutput = Task.make("faults.bad-output", {
  input: Schema.Struct({}),
  output: Schema.Struct({ count: Schema.Int }),
  retry: poisonRetry,
  run: () => Effect.succeed({ count: "not a number" } as unknown as { count: number })
})

/** Emits an event over the log's size limit (64 KiB by default). */
export const HugeEvent = Task.make("faults.huge-event", {
  input: Schema.Struct({}),
  output: Schema.Null,
  retry: poisonRetry,
  run: (_, ctx) => Effect.as(ctx.emit("huge", { blob: "x".repeat(200 * 1024) }), null)
})

/**
 * Emits events that pass the size check but that Postgres cannot store in a
 * `jsonb`: a lone UTF-16 surrogate, and an array nested 20,000 deep (40 KB).
 */
export const UnstorableEvent = Task.make("faults.unstorable-event", {
  input: Schema.Struct({ kind: Schema.Literal("surrogate", "deep") }),
  output: Schema.Null,
  retry: poisonRetry,
  run: ({ kind }, ctx) =>
    Effect.as(
      ctx.emit("unstorable", kind === "surrogate" ? { text: "half a pair: \ud800" } : JSON.parse(`${"[".repeat(20_000)}${"]".repeat(20_000)}`)),
      null
    )
})

export const poison = [Defect, Hang, HangInCleanup, BadOutput, HugeEvent, UnstorableEvent] as const


/** Emits `events` events, `concurrency` at a time (a large log, fast: the worker batches concurrent emits). */
export const Burst = Task.make("faults.burst", {
  input: Schema.Struct({ events: Schema.Int, concurrency: Schema.Int, bytes: Schema.Int }),
  output: Schema.Struct({ events: Schema.Int }),
  run: ({ bytes, concurrency, events }, ctx) =>
    Effect.as(
      Effect.forEach(
        Array.from({ length: events }, (_, i) => i + 1),
        (n) => ctx.emit("chunk", { n, text: "x".repeat(bytes) }),
        { concurrency, discard: true }
      ),
      { events }
    )
})

/** What a step of `Workflow` records: a nonce drawn by its effect, and the step's number. */
const StepOutput = Schema.Struct({ nonce: Schema.String, n: Schema.Int })

/**
 * Scenario 9: `steps` journaled steps with a durable sleep after the second.
 * Each step's effect appends `<runId> <step> <nonce>` to `FAULTS_SIDE_EFFECTS`
 * (outside the database; one `appendFileSync` of a short line, atomic and in
 * order across processes), then holds for `stepMs` so that kills land between
 * an effect and its journal entry too. The nonce it returns is journaled: the
 * line whose nonce the log holds is the execution that counted, and a line of
 * the same step after it would be a step run again after it was recorded.
 */
export const Workflow = Task.make("faults.workflow", {
  input: Schema.Struct({ steps: Schema.Int, napMs: Schema.Int, stepMs: Schema.Int }),
  output: Schema.Struct({ total: Schema.Int }),
  run: ({ napMs, stepMs, steps }, ctx) =>
    Effect.gen(function*() {
      const file = yield* Effect.orDie(Config.string("FAULTS_SIDE_EFFECTS"))
      let total = 0
      for (let n = 1; n <= steps; n++) {
        const effect = Effect.sync(() => {
          const nonce = Math.random().toString(36).slice(2, 12)
          appendFileSync(file, `${ctx.runId} s${n} ${nonce}\n`)
          return { nonce, n }
        }).pipe(Effect.tap(() => Effect.sleep(Duration.millis(stepMs))))
        total += (yield* ctx.step(`s${n}`, effect, { output: StepOutput })).n
        if (n === 2) yield* ctx.sleep("nap", Duration.millis(napMs))
      }
      return { total }
    })
})

/**
 * Scenario 9: starts `children` runs of `Workflow` (journaled starts) and
 * waits for all of them with one durable wait; output the sum of their totals.
 */
export const Parent = Task.make("faults.parent", {
  input: Schema.Struct({ children: Schema.Int, napMs: Schema.Int, stepMs: Schema.Int }),
  output: Schema.Struct({ total: Schema.Int }),
  run: ({ children, napMs, stepMs }, ctx) =>
    Effect.gen(function*() {
      const started = yield* Effect.forEach(
        Array.from({ length: children }, (_, i) => i + 1),
        (i) => ctx.start(Workflow, { steps: 5, napMs, stepMs }, { name: `child-${i}`, maxAttempts: 30 })
      )
      const outputs = yield* ctx.all(started)
      return { total: outputs.reduce((sum, output) => sum + output.total, 0) }
    })
})

export const all = [...Demo.all, ...poison, Burst, Workflow, Parent] as const

/** Scenario 8: holds one of its key's 2 slots for `holdMs`. */
export const Limited = Task.make("faults.limited", {
  input: Schema.Struct({ holdMs: Schema.Int }),
  output: Schema.Null,
  concurrency: { limit: 2 },
  run: ({ holdMs }) => Effect.as(Effect.sleep(Duration.millis(holdMs)), null)
})

/** Scenario 8: as `Limited`, without limits of its own: started on the queue `faults.limited`, whose limits count it. */
export const QueueLimited = Task.make("faults.queue-limited", {
  input: Schema.Struct({ holdMs: Schema.Int }),
  output: Schema.Null,
  run: ({ holdMs }) => Effect.as(Effect.sleep(Duration.millis(holdMs)), null)
})

/** Scenario 8's limited queue: the same limit as `Limited`'s, declared on the queue. */
export const limitedQueue = "faults.limited"
export const flowControlQueues = { [limitedQueue]: { concurrency: { limit: 2 } } } as const

/** Scenario 8: at most 4 attempts of one key start in any second. */
export const Rated = Task.make("faults.rated", {
  input: Schema.Struct({}),
  output: Schema.Null,
  rateLimit: { limit: 4, period: "1 second" },
  run: () => Effect.succeed(null)
})

const DebouncedInput = Schema.Struct({ key: Schema.String, burst: Schema.Int, seq: Schema.Int })

/** Scenario 8: started in debounced bursts; answers the input it ran with. */
export const Debounced = Task.make("faults.debounced", {
  input: DebouncedInput,
  output: DebouncedInput,
  run: (input) => Effect.succeed(input)
})

/** Scenario 8: the schedule's task. */
export const Tick = Task.make("faults.tick", {
  input: Schema.Struct({}),
  output: Schema.Null,
  run: () => Effect.succeed(null)
})

/**
 * Scenario 8: declared by every process of the scenario (each restarted
 * worker declares it again). The default catch-up (`latest`): a tick more than
 * a second late would be skipped, and counted in `skipped_ticks`.
 */
export const EverySecond = RunSchedule.every("faults.every-second", "1 second", Tick, {}, { options: { maxAttempts: 20 } })

export const flowControl = [Limited, QueueLimited, Rated, Debounced, Tick] as const
export const flowControlSchedules = [EverySecond] as const
