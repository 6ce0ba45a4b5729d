/**
 * What a task body's fiber carries: the run's log annotations on top of the
 * pool's, and the services its task was registered with on top of the
 * program's. The pool sets both on the attempt's fiber directly
 * (`Workers.attemptOf`), so nothing but these tests says they are there.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger, Option, Schema } from "effect"
import { Runs } from "../../src/Runs.ts"
import * as Runstream from "../../src/Runstream.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest, TestDatabase } from "../../src/testing/index.ts"
import { Workers } from "../../src/Workers.ts"
import { fastWorkers, patience } from "./support.ts"

interface Line {
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

/** Replaces the default logger with one that records every line (its text and annotations) in `lines`. */
const capture = (lines: Array<Line>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ annotations, message }) => {
      lines.push({
        message: Array.isArray(message) ? message.map(String).join(" ") : String(message),
        annotations: Object.fromEntries(annotations)
      })
    })
  )

class Boom extends Schema.TaggedError<Boom>()("Boom", { attempt: Schema.Number }) {}

/** Logs one line per attempt (naming its run and attempt in the text), fails on attempts 1..failures. */
const Chatty = Task.make("test.chatty", {
  input: Schema.Struct({ failures: Schema.Int }),
  output: Schema.Struct({ attempts: Schema.Int }),
  retry: { maxAttempts: 3, initialDelay: "50 millis", factor: 1, maxDelay: "50 millis" },
  run: ({ failures }, ctx) =>
    Effect.gen(function*() {
      yield* Effect.log(`chatty ${ctx.runId} attempt ${ctx.attempt}`)
      if (ctx.attempt <= failures) return yield* new Boom({ attempt: ctx.attempt })
      return { attempts: ctx.attempt }
    })
})

/** The lines the body of `runId` logged, in order. */
const bodyLines = (lines: ReadonlyArray<Line>, runId: string) =>
  lines.filter((line) => line.message.startsWith(`chatty ${runId} attempt `))

/**
 * Starts a run of `Chatty` that fails `failures` times, waits for it to
 * succeed, and returns the lines its body logged, with the pool's id.
 */
const runLogging = (failures: number) => {
  const lines: Array<Line> = []
  return Effect.gen(function*() {
    const runs = yield* Runs
    const { workerId } = yield* Workers
    const run = yield* runs.start(Chatty, { failures })
    const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
    expect(done.status).toBe("succeeded")
    expect(done.output).toEqual({ attempts: failures + 1 })
    return { runId: run.id, workerId, logged: bodyLines(lines, run.id) }
  }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Chatty], workers: fastWorkers }).pipe(Layer.provide(capture(lines)))))
}

describe.concurrent("a task body's log annotations", () => {
  it.live("carry the run's id and attempt, and the pool's own annotations", () =>
    Effect.gen(function*() {
      const { logged, runId, workerId } = yield* runLogging(0)
      expect(logged.map((line) => line.message)).toEqual([`chatty ${runId} attempt 1`])
      expect(logged[0]!.annotations).toEqual({ component: "Workers", workerId, runId, attempt: 1 })
    }))

  it.live("name the attempt that logged: a retried run's second attempt logs with attempt 2", () =>
    Effect.gen(function*() {
      const { logged, runId, workerId } = yield* runLogging(1)
      expect(logged.map((line) => line.message)).toEqual([`chatty ${runId} attempt 1`, `chatty ${runId} attempt 2`])
      expect(logged.map((line) => line.annotations)).toEqual([
        { component: "Workers", workerId, runId, attempt: 1 },
        { component: "Workers", workerId, runId, attempt: 2 }
      ])
    }))
})

/** Provided to the task registry alone: the program itself does not have it. */
class Greeting extends Context.Tag("test/task-context/Greeting")<Greeting, string>() {}

/** Provided to the program (its runtime and workers), not to the registry. */
class ProgramName extends Context.Tag("test/task-context/ProgramName")<ProgramName, string>() {}

/**
 * Requires `Greeting`, which its registry provides. The program's own services
 * are looked up without being declared: declared, the registry would have to
 * provide them, and it is built below the runtime that makes `Runs`.
 */
const Greet = Task.make("test.greet", {
  input: Schema.Struct({ name: Schema.String }),
  output: Schema.Struct({ greeting: Schema.String, program: Schema.String, status: Schema.String }),
  run: ({ name }, ctx) =>
    Effect.gen(function*() {
      const greeting = yield* Greeting
      const program = yield* Effect.serviceOption(ProgramName)
      const runs = yield* Effect.serviceOption(Runs)
      const status = Option.isSome(runs) ? (yield* runs.value.get(ctx.runId)).status : "no Runs"
      return { greeting: `${greeting}, ${name}`, program: Option.getOrElse(program, () => "no ProgramName"), status }
    })
})

/** A program whose registry alone is given `Greeting`, and whose runtime alone is given `ProgramName`. */
const greetingProgram = (greeting: string) =>
  Runstream.layerWithWorkers({ workers: fastWorkers }).pipe(
    Layer.provideMerge(Layer.succeed(ProgramName, "the program")),
    Layer.provideMerge(Task.layerRegistry(Greet).pipe(Layer.provide(Layer.succeed(Greeting, greeting)))),
    Layer.provideMerge(TestDatabase.layer())
  )

describe.concurrent("a task body's services", () => {
  it.live("are those its registry was built with, on top of the program's own", () =>
    Effect.gen(function*() {
      // Only the registry has it: the body can get it from nowhere else.
      expect(Option.isNone(yield* Effect.serviceOption(Greeting))).toBe(true)
      const runs = yield* Runs
      const run = yield* runs.start(Greet, { name: "world" })
      const done = yield* RunstreamTest.waitForRunCompletion(run.id, patience)
      expect(done.error).toBeNull()
      expect(done.status).toBe("succeeded")
      expect(done.output).toEqual({ greeting: "hello from the registry, world", program: "the program", status: "running" })
    }).pipe(Effect.provide(greetingProgram("hello from the registry"))))
})
