/**
 * A workflow of five journaled steps, for test/e2e/steps.test.ts: each step's
 * side effect appends a line `<runId> step-<i> attempt-<n>` to the file
 * `STEPS_FILE` (outside the database, so a step run twice shows as two
 * lines). With `STEPS_HOLD_AT=<i>`, step i waits forever before its side
 * effect: the process holding it is killed there.
 */
import { Config, Effect, Schema } from "effect"
import { appendFileSync } from "node:fs"
import * as Task from "../../src/Task.ts"

export const Workflow5 = Task.make("test.workflow5", {
  input: Schema.Struct({ base: Schema.Int }),
  output: Schema.Struct({ total: Schema.Int }),
  retry: { maxAttempts: 3, initialDelay: "100 millis", factor: 1, maxDelay: "100 millis" },
  run: ({ base }, ctx) =>
    Effect.gen(function*() {
      const file = yield* Effect.orDie(Config.string("STEPS_FILE"))
      const holdAt = yield* Effect.orDie(Config.integer("STEPS_HOLD_AT").pipe(Config.withDefault(0)))
      let total = base
      for (let i = 1; i <= 5; i++) {
        const previous = total
        total = yield* ctx.step(
          `step-${i}`,
          Effect.gen(function*() {
            if (i === holdAt) yield* Effect.never
            appendFileSync(file, `${ctx.runId} step-${i} attempt-${ctx.attempt}\n`)
            return previous + i
          }),
          { output: Schema.Int }
        )
      }
      return { total }
    })
})
