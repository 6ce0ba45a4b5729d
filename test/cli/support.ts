/**
 * The real `runstream` command as a child process: `src/cli/main.ts` bundled
 * once per suite with esbuild (as `npm run bundle` builds the entry points) and
 * run by plain `node` with pipes for stdout and stderr (so: not a terminal).
 */
import { Context, Deferred, Duration, Effect, Layer, Option, Stream, SubscriptionRef } from "effect"
import { spawn } from "node:child_process"
import { mkdirSync, rmSync } from "node:fs"
import { join } from "node:path"
import { bundle } from "../../scripts/bundle.ts"
import { BaseUrl } from "../http/support.ts"

const root = new URL("../..", import.meta.url).pathname

/** The bundled CLI's path. */
export class CliBundle extends Context.Tag("test/cli/CliBundle")<CliBundle, string>() {}

/** Bundles the CLI into a directory of this process's own under `bundle/` (beside `node_modules`), removed after. */
export const layerBundle = Layer.scoped(
  CliBundle,
  Effect.acquireRelease(
    Effect.promise(async () => {
      const dir = join(root, "bundle", `cli-test-${process.pid}`)
      mkdirSync(dir, { recursive: true })
      await bundle(join(root, "src", "cli", "main.ts"), join(dir, "runstream.mjs"))
      return dir
    }),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  ).pipe(Effect.map((dir) => join(dir, "runstream.mjs")))
)

export interface Result {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export interface Options {
  /** The server's URL (`RUNSTREAM_URL`); the suite's server by default. */
  readonly url?: string
  readonly env?: Record<string, string>
  /** Runs under `script`, so that stdout is a terminal. */
  readonly tty?: boolean
}

export interface Live {
  /** Waits until stdout matches `pattern` (the output so far in the failure). */
  readonly waitFor: (pattern: RegExp, timeout?: Duration.DurationInput) => Effect.Effect<RegExpExecArray, Error>
  /** The exit code and output; fails with the output so far if the command has not ended after `timeout`. */
  readonly result: Effect.Effect<Result, Error>
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
}

/** Starts `runstream ...args`; killed when the scope closes if still running. */
export const spawnCli = (args: ReadonlyArray<string>, options: Options = {}) =>
  Effect.gen(function*() {
    const cli = yield* CliBundle
    const url = options.url ?? (yield* Effect.serviceOption(BaseUrl)).pipe(Option.getOrElse(() => "http://127.0.0.1:1"))
    const stdout = yield* SubscriptionRef.make("")
    const stderr = yield* SubscriptionRef.make("")
    const done = yield* Deferred.make<number | null>()
    const command = options.tty === true
      ? ["script", ["-qec", [process.execPath, cli, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" "), "/dev/null"]] as const
      : [process.execPath, [cli, ...args]] as const
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(command[0], command[1], {
          cwd: root,
          env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "", RUNSTREAM_URL: url, ...options.env },
          stdio: ["ignore", "pipe", "pipe"]
        })
        child.stdout.on("data", (chunk: Buffer) => Effect.runFork(SubscriptionRef.update(stdout, (text) => text + chunk.toString())))
        child.stderr.on("data", (chunk: Buffer) => Effect.runFork(SubscriptionRef.update(stderr, (text) => text + chunk.toString())))
        // "close": after the pipes are drained, so the output is whole.
        child.on("close", (code) => Deferred.unsafeDone(done, Effect.succeed(code)))
        return child
      }),
      (child) => Effect.flatMap(Deferred.isDone(done), (finished) => finished ? Effect.void : Effect.sync(() => child.kill("SIGKILL")))
    )
    const outputs = Effect.all([SubscriptionRef.get(stdout), SubscriptionRef.get(stderr)])
    const result = Effect.gen(function*() {
      const code = yield* Deferred.await(done)
      return { code, stdout: yield* SubscriptionRef.get(stdout), stderr: yield* SubscriptionRef.get(stderr) }
    }).pipe(
      Effect.timeoutFail({ duration: "120 seconds", onTimeout: () => "timeout" as const }),
      Effect.catchAll(() =>
        Effect.flatMap(outputs, ([out, err]) =>
          Effect.fail(new Error(`runstream ${args.join(" ")}: still running; stdout:\n${out}\nstderr:\n${err}`))
        )
      )
    )
    const waitFor = (pattern: RegExp, timeout: Duration.DurationInput = "60 seconds") =>
      stdout.changes.pipe(
        Stream.filterMap((text) => Option.fromNullable(pattern.exec(text))),
        Stream.runHead,
        Effect.flatMap((found) => found),
        Effect.timeoutFail({ duration: timeout, onTimeout: () => "timeout" as const }),
        Effect.catchAll(() =>
          Effect.flatMap(outputs, ([out, err]) =>
            Effect.fail(new Error(`runstream ${args.join(" ")}: no output matching ${pattern}; stdout:\n${out}\nstderr:\n${err}`))
          )
        )
      )
    return { waitFor, result, kill: (signal) => Effect.sync(() => void child.kill(signal)) } satisfies Live
  })

/** Runs `runstream ...args` to its end. */
export const cli = (args: ReadonlyArray<string>, options: Options = {}) =>
  Effect.scoped(Effect.flatMap(spawnCli(args, options), (live) => live.result))

/** Runs it and parses its stdout as one JSON document. */
export const cliJson = (args: ReadonlyArray<string>, options: Options = {}) =>
  Effect.map(cli([...args, "--json"], options), (result) => {
    if (result.code !== 0) throw new Error(`runstream ${args.join(" ")} exited ${result.code}: ${result.stderr}`)
    return JSON.parse(result.stdout) as any
  })

export const ansi = /\x1b\[/

/** What every error must look like: nothing on stdout, one line on stderr, exit 3. */
export const expectError = (result: Result, pattern: RegExp) => {
  const lines = result.stderr.split("\n").filter((line) => line !== "")
  return { lines, ok: result.code === 3 && result.stdout === "" && lines.length === 1 && pattern.test(lines[0]!) }
}
