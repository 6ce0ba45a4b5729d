/**
 * `runstream runs ...`: list, get, start, tail, cancel, signal and replay runs,
 * through the typed RPC client (`RunstreamClient`): its errors are the
 * domain's, with their messages, and its event stream resumes from a seq.
 * @since 0.1.0
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { DateTime, Duration, Effect, Option, ParseResult, Schema } from "effect"
import { Run, RunStatus } from "../domain/Run.ts"
import { maxDebounceDelayMs, StartOptions } from "../domain/StartOptions.ts"
import { RunstreamClient } from "../rpc/RunstreamClient.ts"
import { Started } from "../rpc/RunstreamRpcs.ts"
import { InvalidArgument } from "./CliError.ts"
import { tail } from "./Follow.ts"
import * as Format from "./Format.ts"
import { Output, statusAnsi } from "./Output.ts"

const json = Options.boolean("json").pipe(Options.withDescription("Print JSON (one document, or one line per event)."))
const runId = Args.text({ name: "id" }).pipe(Args.withDescription("The run's id."))

const encodeRun = Schema.encodeSync(Run)
const encodeStarted = Schema.encodeSync(Started)

/** Inputs larger than this are refused before reading (the server's own limit is smaller by default). */
const maxInputFileBytes = 16 * 1024 * 1024

const list = Command.make("list", {
  status: Options.choice("status", RunStatus.literals).pipe(Options.optional),
  task: Options.text("task").pipe(Options.optional),
  queue: Options.text("queue").pipe(Options.optional),
  parent: Options.text("parent").pipe(Options.withDescription("A run's id: list its children."), Options.optional),
  limit: Options.integer("limit").pipe(Options.withDescription("How many runs, newest first (default 50)."), Options.optional),
  cursor: Options.text("cursor").pipe(Options.withDescription("The next page's cursor, as the previous page gave it."), Options.optional),
  json
}, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const output = yield* Output
    const page = yield* client.list({
      status: Option.getOrUndefined(options.status),
      task: Option.getOrUndefined(options.task),
      queue: Option.getOrUndefined(options.queue),
      parentId: Option.getOrUndefined(options.parent),
      limit: Option.getOrElse(options.limit, () => 50),
      cursor: Option.getOrUndefined(options.cursor)
    })
    if (options.json) {
      return yield* output.json({ runs: page.runs.map((run) => encodeRun(run)), nextCursor: page.nextCursor })
    }
    const now = yield* DateTime.now
    yield* output.table(Format.listColumns, page.runs.map((run) => Format.listRow(run, now)))
    if (page.nextCursor !== null) yield* output.line(`more: --cursor ${page.nextCursor}`)
  })).pipe(Command.withDescription("List runs, newest first."))

const get = Command.make("get", { runId, json }, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const output = yield* Output
    const run = yield* client.get(options.runId)
    if (options.json) return yield* output.json(encodeRun(run))
    yield* output.table([{ header: "" }, { header: "" }], Format.fields(run, yield* DateTime.now))
  })).pipe(Command.withDescription("Show a run."))

/** The input of `start`: `--input` JSON, the JSON in `--input-file`, or none. */
const readInput = (text: Option.Option<string>, file: Option.Option<string>) =>
  Effect.gen(function*() {
    if (Option.isSome(text) && Option.isSome(file)) {
      return yield* new InvalidArgument({ message: "give --input or --input-file, not both" })
    }
    if (Option.isSome(file)) {
      const fs = yield* FileSystem.FileSystem
      const fail = (error: { readonly message: string }) =>
        new InvalidArgument({ message: `--input-file ${file.value}: ${error.message}` })
      const info = yield* Effect.mapError(fs.stat(file.value), fail)
      if (Number(info.size) > maxInputFileBytes) {
        return yield* fail({ message: `${info.size} bytes, over the limit of ${maxInputFileBytes}` })
      }
      return yield* parseJson(`--input-file ${file.value}`, yield* Effect.mapError(fs.readFileString(file.value), fail))
    }
    if (Option.isSome(text)) return yield* parseJson("--input", text.value)
    return undefined
  })

const parseJson = (what: string, text: string) =>
  Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (error) => new InvalidArgument({ message: `${what} is not JSON: ${(error as Error).message}` })
  })

/** The option of a field of `debounce` (`debounce.delayMs` is `--debounce-delay`). */
const debounceOptions: Record<string, string> = { key: "debounce-key", delayMs: "debounce-delay", mode: "debounce-mode" }

/** The first issue of the start options, named as the option the user gave (`--run-at: must be ...`). */
const optionError = (error: ParseResult.ParseError) => {
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
  const [field, inner] = issue?.path ?? []
  const name = field === "debounce" && inner !== undefined && debounceOptions[String(inner)] !== undefined
    ? debounceOptions[String(inner)]!
    : String(field ?? "options").replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
  return new InvalidArgument({ message: `--${name}: ${issue?.message ?? "is invalid"}` })
}

/** `250ms`, `2s`, `1.5m`, `1h`: the short forms a person types for a delay. */
const shortDuration = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/
const shortUnits = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const

/**
 * `--debounce-delay` in milliseconds: a short form (`2s`) or Effect's
 * (`"2 seconds"`), a whole number of milliseconds from 1 ms to a day.
 */
const debounceDelayMs = (text: string) =>
  Effect.gen(function*() {
    const short = shortDuration.exec(text.trim())
    const ms = short !== null
      ? Number(short[1]) * shortUnits[short[2] as keyof typeof shortUnits]
      : Option.match(Duration.decodeUnknown(text), {
        onNone: () => Number.NaN,
        onSome: (d) => Duration.isFinite(d) ? Duration.toMillis(d) : Number.POSITIVE_INFINITY
      })
    if (Number.isNaN(ms)) {
      return yield* new InvalidArgument({ message: `--debounce-delay: '${text}' is not a duration, e.g. 2s, 500ms, 5m or "2 seconds"` })
    }
    if (!Number.isInteger(ms) || ms < 1 || ms > maxDebounceDelayMs) {
      return yield* new InvalidArgument({ message: `--debounce-delay: must be a whole number of milliseconds from 1ms to 1 day (got ${text})` })
    }
    return ms
  })

/**
 * `debounce` of a start from `--debounce-key`, `--debounce-delay` and
 * `--debounce-mode`: the key and the delay together or none, and not with `--run-at`.
 */
const debounceOf = (given: {
  readonly debounceKey: Option.Option<string>
  readonly debounceDelay: Option.Option<string>
  readonly debounceMode: Option.Option<"trailing" | "leading">
  readonly runAt: Option.Option<string>
}) =>
  Effect.gen(function*() {
    const { debounceDelay, debounceKey, debounceMode } = given
    if (Option.isNone(debounceKey)) {
      if (Option.isSome(debounceDelay) || Option.isSome(debounceMode)) {
        const named = Option.isSome(debounceDelay) ? "--debounce-delay" : "--debounce-mode"
        return yield* new InvalidArgument({ message: `${named} needs --debounce-key` })
      }
      return undefined
    }
    if (Option.isNone(debounceDelay)) {
      return yield* new InvalidArgument({ message: "--debounce-key needs --debounce-delay (how long after the last start the run starts, e.g. 2s)" })
    }
    if (Option.isSome(given.runAt)) {
      return yield* new InvalidArgument({ message: "give --run-at or --debounce-key, not both: a debounced run starts its delay after the last start" })
    }
    return {
      key: debounceKey.value,
      delayMs: yield* debounceDelayMs(debounceDelay.value),
      ...(Option.isSome(debounceMode) ? { mode: debounceMode.value } : {})
    }
  })

/** The options of a start that `replay` may override too. */
const overrides = {
  queue: Options.text("queue").pipe(Options.optional),
  priority: Options.integer("priority").pipe(Options.optional),
  maxAttempts: Options.integer("max-attempts").pipe(Options.optional),
  timeoutMs: Options.integer("timeout-ms").pipe(Options.optional),
  concurrencyKey: Options.text("concurrency-key").pipe(
    Options.withDescription("The key the task's concurrency and rate limits count by (a tenant, a user)."),
    Options.optional
  )
}

const follow = Options.boolean("follow").pipe(
  Options.withDescription("Then print its events to its end, as `runs tail` does (same exit codes).")
)

type Given = { readonly [K in keyof typeof overrides]: Option.Option<number | string> } & {
  readonly idempotencyKey?: Option.Option<string>
  readonly runAt?: Option.Option<string>
  readonly debounce?: typeof StartOptions.Encoded["debounce"]
}

/** The options given, checked here with the schema the server uses, so that a bad one names itself. */
const startOptions = (given: Given) =>
  Schema.decodeUnknown(StartOptions)({
    idempotencyKey: given.idempotencyKey === undefined ? undefined : Option.getOrUndefined(given.idempotencyKey),
    queue: Option.getOrUndefined(given.queue),
    priority: Option.getOrUndefined(given.priority),
    runAt: given.runAt === undefined ? undefined : Option.getOrUndefined(given.runAt),
    maxAttempts: Option.getOrUndefined(given.maxAttempts),
    timeoutMs: Option.getOrUndefined(given.timeoutMs),
    concurrencyKey: Option.getOrUndefined(given.concurrencyKey),
    debounce: given.debounce
  }).pipe(Effect.mapError(optionError))

/** Prints a start's answer (`what` says how it came), then follows the run when asked. */
const started = (
  answer: typeof Started.Type,
  options: { readonly json: boolean; readonly follow: boolean; readonly debounced?: boolean },
  what: string
) =>
  Effect.gen(function*() {
    const output = yield* Output
    const { run } = answer
    if (options.json && !options.follow) return yield* output.json(encodeStarted(answer))
    if (!options.json) {
      yield* output.line(
        answer.folded === true
          ? `folded into waiting run ${run.id} (${run.task} on queue ${run.queue}), which now starts at ${Format.time(run.runAt)} UTC`
          : answer.created
          ? `${what} ${run.id} (${run.task} on queue ${run.queue})${
            options.debounced ? `, starts at ${Format.time(run.runAt)} UTC unless a start with its debounce key comes first` : ""
          }`
          : `run ${run.id} has idempotency key ${run.idempotencyKey}: not started again (${output.paint(run.status, statusAnsi(run.status))})`
      )
    }
    if (options.follow) yield* tail(run.id, { json: options.json })
  })

const start = Command.make("start", {
  task: Args.text({ name: "task" }).pipe(Args.withDescription("The task's name, e.g. demo.count.")),
  input: Options.text("input").pipe(Options.withDescription("The input, as JSON."), Options.optional),
  inputFile: Options.text("input-file").pipe(Options.withDescription("A file holding the input as JSON."), Options.optional),
  idempotencyKey: Options.text("idempotency-key").pipe(Options.optional),
  runAt: Options.text("run-at").pipe(Options.withDescription("When it may start (ISO 8601)."), Options.optional),
  debounceKey: Options.text("debounce-key").pipe(
    Options.withDescription(
      "Fold this start into the waiting run of the task with this key, if there is one (needs --debounce-delay)."
    ),
    Options.optional
  ),
  debounceDelay: Options.text("debounce-delay").pipe(
    Options.withDescription("With --debounce-key: the run starts this long after the last start of the key, e.g. 2s, 500ms, 5m."),
    Options.optional
  ),
  debounceMode: Options.choice("debounce-mode", ["trailing", "leading"]).pipe(
    Options.withDescription("With --debounce-key: trailing (default) runs with the last start's input, leading with the first's."),
    Options.optional
  ),
  ...overrides,
  follow,
  json
}, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const input = yield* readInput(options.input, options.inputFile)
    const debounce = yield* debounceOf(options)
    const answer = yield* client.start(options.task, input, yield* startOptions({ ...options, debounce }))
    yield* started(answer, { ...options, debounced: debounce !== undefined }, "started run")
  })).pipe(Command.withDescription("Start a run of a task."))

const replay = Command.make("replay", { runId, ...overrides, follow, json }, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const answer = yield* client.replay(options.runId, yield* startOptions(options))
    yield* started(answer, options, `replayed run ${options.runId} as run`)
  })).pipe(
    Command.withDescription("Start a new run of a run's task with its input (its replayOf names the original); options override the original's.")
  )

const tailCommand = Command.make("tail", { runId, json }, (options) => tail(options.runId, options)).pipe(
  Command.withDescription(
    "Print a run's events as they come, to its end, resuming after a dropped connection. " +
      "Exits 0 if it succeeded, 1 if it failed, 2 if it was cancelled."
  )
)

const cancel = Command.make("cancel", { runId, json }, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const output = yield* Output
    const run = yield* client.cancel(options.runId)
    if (options.json) return yield* output.json(encodeRun(run))
    yield* output.line(`cancelled run ${run.id} (${output.paint(run.status, statusAnsi(run.status))})`)
  })).pipe(Command.withDescription("Cancel a run: a queued run at once, a running one when its worker stops it."))

const signal = Command.make("signal", {
  runId,
  name: Args.text({ name: "name" }).pipe(Args.withDescription("The signal's name, as the run's task declares it.")),
  data: Options.text("data").pipe(
    Options.withDescription("The signal's data as JSON, valid for the schema the task declares for the signal (default: null)."),
    Options.optional
  ),
  json
}, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const output = yield* Output
    const data = Option.isSome(options.data) ? yield* parseJson("--data", options.data.value) : null
    const sent = yield* client.signal(options.runId, options.name, data)
    if (options.json) return yield* output.json(sent)
    yield* output.line(
      sent.created
        ? `sent signal '${sent.name}' to run ${sent.runId}`
        : `run ${sent.runId} already had a signal '${sent.name}': this one was ignored`
    )
  })).pipe(
    Command.withDescription(
      "Send a signal to a run, which its body waits for (ctx.waitForSignal): kept if it does not wait yet, " +
        "the first of a name only. Refused for a finished run."
    )
  )

export const command = Command.make("runs").pipe(
  Command.withDescription("Start, list, follow, signal and cancel runs."),
  Command.withSubcommands([list, get, start, tailCommand, cancel, signal, replay])
)
