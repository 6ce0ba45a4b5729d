/**
 * An entry point of Runstream run as a child process (`node --import tsx`),
 * killed when the scope closes if it is still running, whatever the test did.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { Deferred, Duration, Effect, Option, Stream, SubscriptionRef } from "effect"

export interface Child {
  readonly pid: number
  /** Waits until stdout or stderr matches `pattern`; fails with the output so far after `timeout`. */
  readonly waitFor: (pattern: RegExp, timeout?: Duration.DurationInput) => Effect.Effect<RegExpExecArray, Error>
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Signals the child's whole process group, as a terminal's Ctrl-C does (needs `detached`). */
  readonly killGroup: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** The exit code (or the signal that ended the process). */
  readonly exited: Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  readonly output: Effect.Effect<string>
}

const root = new URL("../..", import.meta.url).pathname

export interface Options {
  /** Starts the child as the leader of a process group of its own, like a terminal's foreground job. */
  readonly detached?: boolean
}

/** Starts `script` (a path from the repository's root) with only `env` and PATH/HOME in its environment. */
export const start = (script: string, env: Record<string, string>, options: Options = {}) =>
  Effect.gen(function*() {
    const output = yield* SubscriptionRef.make("")
    const exit = yield* Deferred.make<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", script], {
          cwd: root,
          env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "", ...env },
          stdio: ["ignore", "pipe", "pipe"],
          detached: options.detached ?? false
        })
        const append = (chunk: Buffer) => Effect.runFork(SubscriptionRef.update(output, (text) => text + chunk.toString()))
        child.stdout!.on("data", append)
        child.stderr!.on("data", append)
        child.on("exit", (code, signal) => Deferred.unsafeDone(exit, Effect.succeed({ code, signal })))
        return child
      }),
      (child) =>
        Effect.gen(function*() {
          if (yield* Deferred.isDone(exit)) return
          if (options.detached === true) process.kill(-child.pid!, "SIGKILL")
          else child.kill("SIGKILL")
          yield* Deferred.await(exit)
        })
    )

    const waitFor = (pattern: RegExp, timeout: Duration.DurationInput = "240 seconds") =>
      output.changes.pipe(
        Stream.filterMap((text) => Option.fromNullable(pattern.exec(text))),
        Stream.runHead,
        Effect.flatMap((found) => found),
        Effect.timeoutFail({ duration: timeout, onTimeout: () => "timeout" as const }),
        Effect.catchAll(() =>
          Effect.flatMap(SubscriptionRef.get(output), (text) =>
            Effect.fail(new Error(`${script}: no output matching ${pattern} in time; output so far:\n${text}`)))
        )
      )

    return {
      pid: child.pid!,
      waitFor,
      kill: (signal) => Effect.sync(() => void child.kill(signal)),
      killGroup: (signal) => Effect.sync(() => process.kill(-child.pid!, signal)),
      exited: Deferred.await(exit),
      output: SubscriptionRef.get(output)
    } satisfies Child
  })
