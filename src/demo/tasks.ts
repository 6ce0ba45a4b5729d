/**
 * Demo tasks, registered in dev mode and used by the tests and the benchmark.
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import * as RunSchedule from "../schedules/RunSchedule.ts"
import * as Task from "../Task.ts"

/** Output = input. */
export const Echo = Task.make("demo.echo", {
  input: Schema.Unknown,
  output: Schema.Unknown,
  run: (input) => Effect.succeed(input)
})

const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())

/**
 * Emits `tick` events `{n}` for n = 1..to, `delayMs` apart; output `{count}`.
 * The ticks run in a span of the body's own (`demo.count.ticks`), a child of
 * the attempt's when spans are exported: one span for them all, not one per
 * tick (a run of a million ticks would make a million).
 */
export const Count = Task.make("demo.count", {
  input: Schema.Struct({
    to: NonNegativeInt.pipe(Schema.lessThanOrEqualTo(1_000_000)),
    delayMs: Schema.optional(NonNegativeInt.pipe(Schema.lessThanOrEqualTo(60_000)))
  }),
  output: Schema.Struct({ count: Schema.Int }),
  run: ({ delayMs, to }, ctx) =>
    Effect.gen(function*() {
      for (let n = 1; n <= to; n++) {
        if (delayMs !== undefined && delayMs > 0 && n > 1) yield* Effect.sleep(delayMs)
        yield* ctx.emit("tick", { n })
      }
      return { count: to }
    }).pipe(Effect.withSpan("demo.count.ticks", { attributes: { "demo.to": to } }))
})

/** Fails (retryably) on attempts 1..failures, then succeeds with `{attempts}`. */
export const Flaky = Task.make("demo.flaky", {
  input: Schema.Struct({ failures: NonNegativeInt.pipe(Schema.lessThanOrEqualTo(100)) }),
  output: Schema.Struct({ attempts: Schema.Int }),
  retry: { initialDelay: "10 millis", maxDelay: "1 second" },
  run: ({ failures }, ctx) =>
    ctx.attempt <= failures
      ? Effect.fail(new FlakyFailure({ attempt: ctx.attempt }))
      : Effect.succeed({ attempts: ctx.attempt })
})

export class FlakyFailure extends Schema.TaggedError<FlakyFailure>()("FlakyFailure", { attempt: Schema.Number }) {
  override get message() {
    return `attempt ${this.attempt} failed on purpose`
  }
}

/** Sleeps `ms` (interruptibly: cancellation ends it at once); output `{slept}`. */
export const Sleep = Task.make("demo.sleep", {
  input: Schema.Struct({ ms: NonNegativeInt.pipe(Schema.lessThanOrEqualTo(24 * 60 * 60 * 1000)) }),
  output: Schema.Struct({ slept: Schema.Int }),
  run: ({ ms }) => Effect.as(Effect.sleep(ms), { slept: ms })
})

/**
 * Sleeps `ms`, at most 2 runs of one `concurrencyKey` at once and 10 starts of
 * one key per second (see `queue/Limits.ts`); output `{slept}`.
 */
export const PerKey = Task.make("demo.per-key", {
  input: Schema.Struct({ ms: NonNegativeInt.pipe(Schema.lessThanOrEqualTo(60 * 60 * 1000)) }),
  output: Schema.Struct({ slept: Schema.Int }),
  concurrency: { limit: 2 },
  rateLimit: { limit: 10, period: "1 second" },
  run: ({ ms }) => Effect.as(Effect.sleep(ms), { slept: ms })
})

/** The data of `demo.approval`'s signal `approve`. */
export const Approval = Schema.Struct({
  approved: Schema.Boolean,
  by: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))
})

/**
 * A journaled workflow: a step drafts, the run waits (holding no worker) for
 * the signal `approve` `{approved, by}` for up to a day, a step publishes if
 * approved; output `{document, approved, by}` (`by` null when the wait timed out).
 */
export const ApprovalFlow = Task.make("demo.approval", {
  input: Schema.Struct({ document: Schema.String.pipe(Schema.maxLength(1000)) }),
  output: Schema.Struct({ document: Schema.String, approved: Schema.Boolean, by: Schema.NullOr(Schema.String) }),
  signals: { approve: Approval },
  run: ({ document }, ctx) =>
    Effect.gen(function*() {
      const draft = yield* ctx.step("draft", Effect.succeed(`draft of ${document}`), { output: Schema.String })
      const decision = yield* ctx.waitForSignal("approve", Approval, { timeout: "1 day" }).pipe(
        Effect.catchTag("SignalTimeout", () => Effect.succeed({ approved: false, by: null }))
      )
      if (decision.approved) yield* ctx.step("publish", Effect.succeed(draft), { output: Schema.String })
      return { document, ...decision }
    })
})

/**
 * Child runs: starts `children` runs of `demo.count` (each `to` ticks,
 * `delayMs` apart, 100 by default; the i-th fails instead when `failAt` is i), waits for all of them
 * holding no worker, and sums their counts; a failed child is a `ChildFailed`
 * the body turns into its output. Output `{total, failed}` (`failed`: the
 * failed child's name, or null).
 */
export const FanOut = Task.make("demo.fanout", {
  input: Schema.Struct({
    children: Schema.Int.pipe(Schema.between(1, 100)),
    to: Schema.Int.pipe(Schema.between(0, 100)),
    failAt: Schema.optional(Schema.Int),
    delayMs: Schema.optional(Schema.Int.pipe(Schema.between(0, 60_000)))
  }),
  output: Schema.Struct({ total: Schema.Int, failed: Schema.NullOr(Schema.String) }),
  run: ({ children, delayMs = 100, failAt, to }, ctx) =>
    Effect.gen(function*() {
      // Children of two tasks in one wait (a handle is typed by its task's output schema, which is invariant).
      const started: Array<Task.Child<any>> = []
      for (let i = 1; i <= children; i++) {
        started.push(
          i === failAt
            ? yield* ctx.start(Flaky, { failures: 100 }, { name: `child-${i}`, maxAttempts: 1 })
            : yield* ctx.start(Count, { to, delayMs }, { name: `child-${i}` })
        )
      }
      return yield* ctx.all(started).pipe(
        Effect.map((outputs) => ({ total: outputs.reduce((sum: number, output: { readonly count: number }) => sum + output.count, 0), failed: null })),
        Effect.catchTag("ChildFailed", (failure) => Effect.succeed({ total: 0, failed: failure.name }))
      )
    })
})

export const all = [Echo, Count, Flaky, Sleep, PerKey, ApprovalFlow, FanOut] as const

/** The demo schedule of `dev`: an echo every minute, its runs keyed `schedule:demo.heartbeat:<tick>`. */
export const Heartbeat = RunSchedule.every("demo.heartbeat", "1 minute", Echo, { heartbeat: true })

export const schedules = [Heartbeat] as const
