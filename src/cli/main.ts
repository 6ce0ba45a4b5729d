#!/usr/bin/env node
/**
 * The `runstream` command (the package's `bin`). Every failure is one line on
 * stderr; exit codes are in `CliError.exitCodes`.
 * @since 0.1.0
 */
import { Command } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Exit, Layer, Option } from "effect"
import { readFileSync } from "node:fs"
import * as CliError from "./CliError.ts"
import * as Dev from "./Dev.ts"
import * as Events from "./Events.ts"
import * as Output from "./Output.ts"
import * as Root from "./Root.ts"
import * as Runs from "./Runs.ts"
import * as Schedules from "./Schedules.ts"
import * as Stats from "./Stats.ts"
import * as Tasks from "./Tasks.ts"

// src/cli/main.ts and dist/cli/main.js are both two levels below the package's root.
const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }

const command = Root.command.pipe(
  Command.withSubcommands([Runs.command, Schedules.command, Events.command, Stats.command, Tasks.command, Dev.command]),
  Command.transformHandler((handler, { url }) => Effect.mapError(handler, CliError.withServer(url))),
  Command.provide(({ apiKey, url }) => Layer.merge(Root.clientLayer({ url, apiKey }), Output.layer))
)

const cli = Command.run(command, { name: "runstream", version })

// A reader that stopped reading (`runstream events | head`) ends the command
// quietly, with the code of a process killed by SIGPIPE, as other Unix tools do.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error
  process.exit(141)
})

cli(process.argv).pipe(
  Effect.tapErrorCause((cause) =>
    Option.match(CliError.report(cause), { onNone: () => Effect.void, onSome: (line) => Console.error(`runstream: ${line}`) })
  ),
  Output.withPlainConsole({ stdout: process.stdout.isTTY === true, stderr: process.stderr.isTTY === true }),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? CliError.exitCodes.ok : CliError.exitCodeOf(exit.cause))
  })
)
