/**
 * `npm start` as a person runs it: in a terminal, stopped with Ctrl-C, which
 * signals the whole foreground process group, and sometimes killed outright.
 * The embedded Postgres must outlast the program's graceful shutdown, then stop.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option, Schedule } from "effect"
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Embedded from "../../src/internal/embeddedPostgres.ts"
import * as Sse from "../http/sse.ts"
import { BaseUrl, call, follow, post } from "../http/support.ts"
import * as Child from "./Child.ts"

const serving = /Runstream dev server: (http:\/\/[\d.]+:\d+)/

/** A fresh `RUNSTREAM_DATA_DIR`; a server left running in it is stopped before it is removed. */
const dataDir = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = mkdtempSync(join(tmpdir(), "runstream-terminal-"))
    chmodSync(dir, 0o755) // the embedded server may run as another user
    return dir
  }),
  (dir) =>
    Embedded.stopLeftover(join(dir, "pg")).pipe(
      Effect.ignore,
      Effect.andThen(Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
    )
)

/** `npm start` in a process group of its own, as a terminal's foreground job; resolves once it serves. */
const dev = (dir: string) =>
  Effect.gen(function*() {
    const child = yield* Child.start(
      "src/main/dev.ts",
      { RUNSTREAM_DATA_DIR: dir, PORT: "0", RUNSTREAM_SHUTDOWN_GRACE: "1 second" },
      { detached: true }
    )
    const [, url] = yield* child.waitFor(serving, "240 seconds")
    return { child, url: url! }
  })

/** Waits until `pid` no longer runs, checking every 50 ms. */
const stoppedWithin = (pid: number, timeout: Duration.DurationInput) =>
  Effect.sync(() => Embedded.isRunning(pid)).pipe(
    Effect.repeat({ while: (running) => running, schedule: Schedule.spaced("50 millis") }),
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`process ${pid} still running after ${Duration.format(timeout)}`) })
  )

describe("dev in a terminal", () => {
  it.scopedLive("Ctrl-C with a run in flight: exits 0 within seconds, stops Postgres, and the run finishes after a restart", () =>
    Effect.gen(function*() {
      const dir = yield* dataDir
      const first = yield* dev(dir)
      const runId = yield* Effect.gen(function*() {
        const answer = yield* post("/v1/runs", { task: "demo.sleep", input: { ms: 8000 } })
        expect(answer.status).toBe(201)
        const runId = answer.body.run.id as string
        const stream = yield* follow(`/v1/runs/${runId}/events`)
        expect((yield* stream.next).event).toBe("run.queued")
        expect((yield* stream.next).event).toBe("run.started")
        return runId
      }).pipe(Effect.scoped, Effect.provideService(BaseUrl, first.url))
      const postgres = yield* Embedded.serverPid(join(dir, "pg"))
      expect(Option.isSome(postgres)).toBe(true)

      const pressed = Date.now()
      yield* first.child.killGroup("SIGINT")
      const exit = yield* first.child.exited.pipe(
        Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error("dev still running 15 s after Ctrl-C") }),
        Effect.tapError(() => Effect.flatMap(first.child.output, (output) => Effect.logError(output)))
      )
      const stoppedIn = Date.now() - pressed
      expect(exit).toEqual({ code: 0, signal: null })
      expect(stoppedIn).toBeLessThan(15_000)
      expect(yield* first.child.output).not.toMatch(/error/i)
      expect(existsSync(join(dir, "pg", "postmaster.pid"))).toBe(false)
      expect(Embedded.isRunning(Option.getOrThrow(postgres))).toBe(false)
      yield* Effect.logInfo(`Ctrl-C to exit: ${stoppedIn} ms`)

      const second = yield* dev(dir)
      yield* Effect.gen(function*() {
        const response = yield* Effect.flatMap(BaseUrl, (base) =>
          Effect.promise(() => fetch(`${base}/v1/runs/${runId}/events`, { headers: { accept: "text/event-stream" } })))
        const events = (yield* Sse.collect(Sse.events(response.body!))).map((event) => event.event)
        expect(events).toEqual(["run.queued", "run.started", "run.released", "run.started", "run.succeeded"])
        expect((yield* call(`/v1/runs/${runId}`)).body.run).toMatchObject({ status: "succeeded", output: { slept: 8000 } })
      }).pipe(Effect.provideService(BaseUrl, second.url))
      yield* second.child.killGroup("SIGINT")
      expect(yield* second.child.exited).toEqual({ code: 0, signal: null })
      expect(existsSync(join(dir, "pg", "postmaster.pid"))).toBe(false)
    }), { timeout: 300_000 })

  it.scopedLive("a dev killed outright (SIGKILL) does not leave its Postgres running", () =>
    Effect.gen(function*() {
      const dir = yield* dataDir
      const first = yield* dev(dir)
      const postgres = Option.getOrThrow(yield* Embedded.serverPid(join(dir, "pg")))
      yield* first.child.killGroup("SIGKILL")
      yield* first.child.exited
      // Its watchdog sees the process gone and asks the server for a fast shutdown.
      yield* stoppedWithin(postgres, "30 seconds")
      expect(existsSync(join(dir, "pg", "postmaster.pid"))).toBe(false)
    }), { timeout: 300_000 })

  it.scopedLive("a server left running (dev and its watchdog killed) is stopped by the next start on the same data", () =>
    Effect.gen(function*() {
      const dir = yield* dataDir
      const first = yield* dev(dir)
      const postgres = Option.getOrThrow(yield* Embedded.serverPid(join(dir, "pg")))
      const watchdog = Number(readFileSync(join(dir, "pg", "runstream.owner"), "utf8").split("\n")[1])
      expect(Embedded.isRunning(watchdog)).toBe(true)
      process.kill(watchdog, "SIGKILL")
      yield* first.child.killGroup("SIGKILL")
      yield* first.child.exited
      expect(Embedded.isRunning(postgres)).toBe(true)

      const second = yield* dev(dir)
      expect(yield* second.child.output).toContain(`stopping the Postgres server (pid ${postgres})`)
      expect(Embedded.isRunning(postgres)).toBe(false)
      const health = yield* Effect.promise(() => fetch(`${second.url}/healthz`).then((response) => response.json()))
      expect(health).toEqual({ status: "ok" })
      yield* second.child.kill("SIGTERM")
      expect(yield* second.child.exited).toEqual({ code: 0, signal: null })
      expect(yield* Embedded.serverPid(join(dir, "pg"))).toEqual(Option.none())
    }), { timeout: 300_000 })
})
