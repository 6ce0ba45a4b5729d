/**
 * `runstream schedules ...`: list, get, create, pause, resume and delete
 * schedules, through the typed RPC client (its errors are the domain's, with
 * their messages: a bad cron expression is named as the server names it).
 * @since 0.4.0
 */
import { Args, Command, Options } from "@effect/cli"
import { Effect, Option, Schema } from "effect"
import { CatchUp, ScheduleDetail, type ScheduleInfo } from "../domain/Schedule.ts"
import { RunstreamClient } from "../rpc/RunstreamClient.ts"
import { InvalidArgument } from "./CliError.ts"
import * as Format from "./Format.ts"
import { dim, Output, statusAnsi } from "./Output.ts"

const json = Options.boolean("json").pipe(Options.withDescription("Print JSON."))
const name = Args.text({ name: "name" }).pipe(Args.withDescription("The schedule's name."))

const encodeSchedule = Schema.encodeSync(ScheduleDetail.fields.schedule)
const encodeDetail = Schema.encodeSync(ScheduleDetail)

/** `0 3 * * * (Europe/Berlin)` or `every 30 seconds`. */
const when = (schedule: ScheduleInfo) =>
  schedule.cron !== null
    ? `${schedule.cron}${schedule.timezone === null ? "" : ` (${schedule.timezone})`}`
    : `every ${schedule.every}`

const state = (schedule: ScheduleInfo) => schedule.paused ? "paused" : "active"

const listColumns = [
  { header: "NAME" },
  { header: "TASK" },
  { header: "WHEN" },
  { header: "STATE" },
  { header: "NEXT TICK (UTC)" },
  { header: "LAST TICK (UTC)" },
  { header: "SKIPPED", right: true },
  { header: "SOURCE" }
] as const

const list = Command.make("list", {
  limit: Options.integer("limit").pipe(Options.withDescription("How many, by name (default 100)."), Options.optional),
  cursor: Options.text("cursor").pipe(Options.withDescription("The next page's cursor, as the previous page gave it."), Options.optional),
  json
}, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const output = yield* Output
    const page = yield* client.listSchedules({ limit: Option.getOrUndefined(options.limit), cursor: Option.getOrUndefined(options.cursor) })
    if (options.json) {
      return yield* output.json({ schedules: page.schedules.map((s) => encodeSchedule(s)), nextCursor: page.nextCursor })
    }
    yield* output.table(listColumns, page.schedules.map((s) => [
      { text: s.name },
      { text: s.task },
      { text: when(s) },
      { text: state(s), ansi: s.paused ? statusAnsi("cancelled") : undefined },
      { text: s.paused ? "" : Format.time(s.nextTickAt) },
      { text: Format.time(s.lastTickAt), ansi: dim },
      { text: String(s.skippedTicks) },
      { text: s.source }
    ]))
    if (page.nextCursor !== null) yield* output.line(`more: --cursor ${page.nextCursor}`)
  })).pipe(Command.withDescription("List schedules by name."))

const get = Command.make("get", { name, json }, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const output = yield* Output
    const detail = yield* client.getSchedule(options.name)
    if (options.json) return yield* output.json(encodeDetail(detail))
    const s = detail.schedule
    const rows: Array<[string, string]> = [
      ["name", s.name],
      ["task", s.task],
      ["input", JSON.stringify(s.input)],
      ["when", when(s)],
      ["catch-up", s.catchUp],
      ["options", Object.keys(s.options).length === 0 ? "" : JSON.stringify(s.options)],
      ["state", state(s)],
      ["source", s.source],
      ["next tick", s.paused ? "" : Format.time(s.nextTickAt)],
      ["last tick", Format.time(s.lastTickAt)],
      ["last run", s.lastRunId ?? ""],
      ["skipped ticks", String(s.skippedTicks)],
      ["last error", s.lastError ?? ""]
    ]
    yield* output.table(
      [{ header: "" }, { header: "" }],
      rows.filter(([, value]) => value !== "").map(([field, value]) => [{ text: field, ansi: dim }, { text: value }])
    )
    if (detail.runs.length > 0) {
      yield* output.line("")
      yield* output.table(
        [{ header: "TICK (UTC)" }, { header: "RUN" }, { header: "STATUS" }],
        detail.runs.map(({ run, tick }) => [
          { text: Format.time(tick) },
          { text: run.id },
          { text: run.status, ansi: statusAnsi(run.status) }
        ])
      )
    }
  })).pipe(Command.withDescription("Show a schedule and the latest runs it started."))

const create = Command.make("create", {
  name,
  task: Args.text({ name: "task" }).pipe(Args.withDescription("The task each tick starts, e.g. demo.count.")),
  cron: Options.text("cron").pipe(
    Options.withDescription("A cron expression: 5 fields (minute hour day month weekday), or 6 with seconds first."),
    Options.optional
  ),
  every: Options.text("every").pipe(Options.withDescription("An interval instead, e.g. \"30 seconds\" (at least 1 second)."), Options.optional),
  timezone: Options.text("timezone").pipe(Options.withDescription("The cron expression's IANA time zone (default UTC)."), Options.optional),
  input: Options.text("input").pipe(Options.withDescription("The runs' input, as JSON."), Options.optional),
  catchUp: Options.choice("catch-up", CatchUp.literals).pipe(
    Options.withDescription("Missed ticks: latest (default) starts the latest once, none none, all each (up to 100)."),
    Options.optional
  ),
  queue: Options.text("queue").pipe(Options.optional),
  priority: Options.integer("priority").pipe(Options.optional),
  json
}, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const output = yield* Output
    const text = Option.getOrUndefined(options.input)
    const input = text === undefined ? undefined : yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (error) => new InvalidArgument({ message: `--input is not JSON: ${(error as Error).message}` })
    })
    const runOptions = {
      ...(Option.isSome(options.queue) ? { queue: options.queue.value } : {}),
      ...(Option.isSome(options.priority) ? { priority: options.priority.value } : {})
    }
    const schedule = yield* client.createSchedule({
      name: options.name,
      task: options.task,
      ...(input === undefined ? {} : { input }),
      ...(Option.isSome(options.cron) ? { cron: options.cron.value } : {}),
      ...(Option.isSome(options.every) ? { every: options.every.value } : {}),
      ...(Option.isSome(options.timezone) ? { timezone: options.timezone.value } : {}),
      ...(Option.isSome(options.catchUp) ? { catchUp: options.catchUp.value } : {}),
      ...(Object.keys(runOptions).length === 0 ? {} : { options: runOptions })
    })
    if (options.json) return yield* output.json(encodeSchedule(schedule))
    yield* output.line(`created schedule ${schedule.name} (${schedule.task}, ${when(schedule)}), next tick ${Format.time(schedule.nextTickAt)} UTC`)
  })).pipe(Command.withDescription("Create a schedule: --cron (with --timezone) or --every."))

const pause = Command.make("pause", { name, json }, (options) =>
  Effect.gen(function*() {
    const schedule = yield* Effect.flatMap(RunstreamClient, (client) => client.pauseSchedule(options.name))
    const output = yield* Output
    if (options.json) return yield* output.json(encodeSchedule(schedule))
    yield* output.line(`paused schedule ${schedule.name}`)
  })).pipe(Command.withDescription("Pause a schedule: no tick starts a run until it is resumed."))

const resume = Command.make("resume", { name, json }, (options) =>
  Effect.gen(function*() {
    const schedule = yield* Effect.flatMap(RunstreamClient, (client) => client.resumeSchedule(options.name))
    const output = yield* Output
    if (options.json) return yield* output.json(encodeSchedule(schedule))
    yield* output.line(`resumed schedule ${schedule.name}, next tick ${Format.time(schedule.nextTickAt)} UTC`)
  })).pipe(Command.withDescription("Resume a schedule from its first tick after now."))

const remove = Command.make("delete", {
  name,
  force: Options.boolean("force").pipe(Options.withDescription("Delete a schedule declared in code too (a program declaring it writes it again when it starts)."))
}, (options) =>
  Effect.gen(function*() {
    yield* Effect.flatMap(RunstreamClient, (client) => client.deleteSchedule(options.name, { force: options.force }))
    yield* Effect.flatMap(Output, (output) => output.line(`deleted schedule ${options.name}`))
  })).pipe(Command.withDescription("Delete a schedule (the runs it started stay)."))

export const command = Command.make("schedules").pipe(
  Command.withDescription("List, create, pause, resume and delete schedules."),
  Command.withSubcommands([list, get, create, pause, resume, remove])
)
