/**
 * `runstream events`: the live debug stream of every run's events (or one
 * task's, or one run's), until interrupted.
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import { debugStream } from "./Follow.ts"

export const command = Command.make("events", {
  task: Options.text("task").pipe(Options.withDescription("Only this task's runs."), Options.optional),
  run: Options.text("run").pipe(Options.withDescription("Only this run."), Options.optional),
  json: Options.boolean("json").pipe(Options.withDescription("One JSON line per event."))
}, (options) => debugStream(options, options.json)).pipe(
  Command.withDescription("Print the events of all runs as they happen (not replayed; Ctrl-C ends it).")
)
