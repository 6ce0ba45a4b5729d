/**
 * `runstream runs ...` and `runstream events` as a user runs them: the real
 * CLI in a child process against the HTTP API on a fresh database.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Queue } from "effect"
import { createServer } from "node:net"
import * as Proxy from "../../scripts/faults/proxy.ts"
import { BaseUrl, Gate, program } from "../http/support.ts"
import { ansi, cli, cliJson, expectError, layerBundle, spawnCli } from "./support.ts"

const idPattern = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/

/** Each JSON line of a stream's stdout. */
const jsonLines = (stdout: string) => stdout.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line))

/** A port nothing listens on: one the system just gave and took back. */
const closedPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 1))
    })
  })
)

describe("runstream CLI", () => {
  layer(Layer.merge(program(), layerBundle), { excludeTestServices: true, timeout: "180 seconds" })((it) => {
    it.effect("starts a run, shows it and lists it: tables without ANSI codes when piped, --json for scripts", () =>
      Effect.gen(function*() {
        const started = yield* cli(["runs", "start", "demo.count", "--input", "{\"to\":2}", "--priority", "5"])
        expect(started.code).toBe(0)
        const [id] = idPattern.exec(started.stdout)!
        expect(started.stdout).toBe(`started run ${id} (demo.count on queue default)\n`)
        // The run's end, as `tail` sees it, before its fields are compared.
        expect((yield* cli(["runs", "tail", id!])).code).toBe(0)

        const [table, json, list, listJson, filtered] = yield* Effect.all([
          cli(["runs", "get", id!]),
          cliJson(["runs", "get", id!]),
          cli(["runs", "list"]),
          cliJson(["runs", "list", "--task", "demo.count", "--limit", "10"]),
          cliJson(["runs", "list", "--status", "failed"])
        ], { concurrency: "unbounded" })

        expect(table.code).toBe(0)
        expect(table.stdout).not.toMatch(ansi)
        expect(table.stdout).toMatch(new RegExp(`^id +${id}$`, "m"))
        expect(table.stdout).toMatch(/^status +succeeded$/m)
        expect(table.stdout).toMatch(/^priority +5$/m)
        expect(table.stdout).toMatch(/^output +\{"count":2\}$/m)
        expect(json).toMatchObject({ id, task: "demo.count", queue: "default", status: "succeeded", priority: 5, output: { count: 2 }, lastSeq: 5 })

        expect(list.code).toBe(0)
        expect(list.stdout).not.toMatch(ansi)
        const [header, row] = list.stdout.split("\n")
        expect(header).toMatch(/^ID +TASK +QUEUE +STATUS +ATTEMPT +CREATED \(UTC\) +DURATION$/)
        expect(row).toMatch(new RegExp(`^${id} +demo\\.count +default +succeeded +1/3 +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +\\d`))
        expect(listJson.runs.map((run: any) => run.id)).toContain(id)
        expect(listJson).toHaveProperty("nextCursor")
        expect(filtered.runs).toEqual([])

        // No worker takes queue "elsewhere": the run waits there until it is cancelled.
        const waiting = (yield* cliJson(["runs", "start", "demo.echo", "--input", "{}", "--queue", "elsewhere"])).run
        expect(waiting).toMatchObject({ queue: "elsewhere", status: "queued" })
        const cancelled = yield* cli(["runs", "cancel", waiting.id])
        expect(cancelled).toMatchObject({ code: 0, stdout: `cancelled run ${waiting.id} (cancelled)\n`, stderr: "" })
      }), { timeout: 180_000 })

    it.scoped("tail prints events as they happen and exits 0 when the run succeeds", () =>
      Effect.gen(function*() {
        const gate = yield* Gate
        const { id } = (yield* cliJson(["runs", "start", "test.stepper", "--input", "{\"steps\":2}"])).run
        const tail = yield* spawnCli(["runs", "tail", id])
        yield* tail.waitFor(/run\.started/)
        yield* Queue.offer(gate, undefined)
        // The first step is printed while the run still waits for the second.
        yield* tail.waitFor(/step +\{"i":1\}/)
        yield* Queue.offer(gate, undefined)
        const result = yield* tail.result
        expect(result.code).toBe(0)
        expect(result.stdout).not.toMatch(ansi)
        expect(result.stdout.split("\n").filter((line) => line !== "").map((line) => line.trim().split(/ +/)[2]))
          .toEqual(["run.queued", "run.started", "step", "step", "run.succeeded"])
      }), { timeout: 180_000 })

    it.scoped("tail exits 1 for a failed run and 2 for a cancelled one; start --follow --json prints one JSON line per event", () =>
      Effect.gen(function*() {
        const failed = yield* cli(["runs", "start", "demo.flaky", "--input", "{\"failures\":5}", "--max-attempts", "2", "--follow", "--json"])
        expect(failed.code).toBe(1)
        const events = jsonLines(failed.stdout)
        expect(events.map((event) => event.type)).toEqual(["run.queued", "run.started", "run.retrying", "run.started", "run.failed"])
        expect(events.map((event) => event.seq)).toEqual([1, 2, 3, 4, 5])
        expect(failed.stderr).toMatch(/^runstream: run [0-9a-f-]{36} failed: attempt 2 failed on purpose\n$/)

        const { id } = (yield* cliJson(["runs", "start", "test.stepper", "--input", "{\"steps\":1}"])).run
        const tail = yield* spawnCli(["runs", "tail", id, "--json"])
        yield* tail.waitFor(/"run\.started"/)
        const cancelled = yield* cli(["runs", "cancel", id])
        expect(cancelled.code).toBe(0)
        expect(cancelled.stdout).toMatch(new RegExp(`^cancelled run ${id} \\((running|cancelled)\\)\\n$`))
        const result = yield* tail.result
        expect(result.code).toBe(2)
        expect(jsonLines(result.stdout).map((event) => event.type)).toEqual(["run.queued", "run.started", "run.cancelled"])
        expect(result.stderr).toBe(`runstream: run ${id} was cancelled\n`)
        // A finished run replays to its end: same code.
        expect((yield* cli(["runs", "tail", id])).code).toBe(2)
      }), { timeout: 180_000 })

    it.scoped("runs signal sends a signal that wakes a waiting run; bad data and a finished run are errors (exit 3)", () =>
      Effect.gen(function*() {
        const { id } = (yield* cliJson(["runs", "start", "demo.approval", "--input", "{\"document\":\"memo\"}"])).run
        const tail = yield* spawnCli(["runs", "tail", id, "--json"])
        yield* tail.waitFor(/"run\.waiting"/)
        const bad = yield* cli(["runs", "signal", id, "approve", "--data", "{\"approved\":\"yes\"}"])
        expect({ ...expectError(bad, /^runstream: the data of signal 'approve' is invalid: approved: /) }).toMatchObject({ ok: true })
        const notJson = yield* cli(["runs", "signal", id, "approve", "--data", "{approved"])
        expect({ ...expectError(notJson, /^runstream: --data is not JSON/) }).toMatchObject({ ok: true })
        const sent = yield* cli(["runs", "signal", id, "approve", "--data", "{\"approved\":true,\"by\":\"cli\"}"])
        expect(sent).toMatchObject({ code: 0, stdout: `sent signal 'approve' to run ${id}\n`, stderr: "" })
        const result = yield* tail.result
        expect(result.code).toBe(0)
        const events = jsonLines(result.stdout)
        expect(events.map((event) => event.type)).toEqual([
          "run.queued",
          "run.started",
          "step.completed",
          "signal.waiting",
          "run.waiting",
          "run.started",
          "signal.received",
          "step.completed",
          "run.succeeded"
        ])
        expect(events.at(-1).data.output).toEqual({ document: "memo", approved: true, by: "cli" })
        const late = yield* cli(["runs", "signal", id, "approve", "--data", "{\"approved\":true,\"by\":\"cli\"}"])
        expect({ ...expectError(late, /^runstream: run [0-9a-f-]{36} is already succeeded$/) }).toMatchObject({ ok: true })
      }), { timeout: 180_000 })

    it.scoped("tail resumes after the connection is cut, printing each event once", () =>
      Effect.gen(function*() {
        const gate = yield* Gate
        const base = new URL(yield* BaseUrl)
        const proxy = yield* Proxy.make({ host: base.hostname, port: Number(base.port) })
        const { id } = (yield* cliJson(["runs", "start", "test.stepper", "--input", "{\"steps\":3}"])).run
        const tail = yield* spawnCli(["runs", "tail", id, "--json"], { url: `http://127.0.0.1:${proxy.port}` })
        yield* Queue.offer(gate, undefined)
        yield* tail.waitFor(/"seq":3/)
        expect(proxy.cut()).toBeGreaterThan(0)
        // Events committed while the CLI is disconnected, then after.
        yield* Queue.offer(gate, undefined)
        yield* Queue.offer(gate, undefined)
        const result = yield* tail.result
        expect(result.code).toBe(0)
        expect(result.stderr).toBe("")
        expect(jsonLines(result.stdout).map((event) => event.seq)).toEqual([1, 2, 3, 4, 5, 6])
        expect(proxy.stats().connections).toBeGreaterThan(1)
      }), { timeout: 180_000 })

    it.effect("every error is one line on stderr and exit 3", () =>
      Effect.gen(function*() {
        const port = yield* closedPort
        const echo = (yield* cliJson(["runs", "start", "demo.echo", "--input", "{\"a\":1}", "--idempotency-key", "cli-k"])).run
        expect((yield* cli(["runs", "tail", echo.id])).code).toBe(0)
        const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp, Record<string, string>?]> = [
          [["runs", "list"], new RegExp(`^runstream: cannot reach http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`), { RUNSTREAM_URL: `http://127.0.0.1:${port}` }],
          [["runs", "list", "--url", "not a url"], /^runstream: --url: 'not a url' is not an http\(s\) URL$/],
          [["runs", "get", "01a24eca-1d49-706f-baa2-220b33c80a31"], /^runstream: run 01a24eca-1d49-706f-baa2-220b33c80a31 does not exist$/],
          [["runs", "get", "nope"], /^runstream: run nope does not exist$/],
          [["runs", "tail", "01a24eca-1d49-706f-baa2-220b33c80a31"], /^runstream: run 01a24eca-1d49-706f-baa2-220b33c80a31 does not exist$/],
          [["runs", "start", "no.such.task"], /^runstream: task 'no\.such\.task' is not registered$/],
          [["runs", "start", "demo.count", "--input", "{to: 1}"], /^runstream: --input is not JSON: /],
          [["runs", "start", "demo.count", "--input-file", "/nonexistent.json"], /^runstream: --input-file \/nonexistent\.json: /],
          [["runs", "start", "demo.count", "--input", "{\"to\":\"x\"}"], /^runstream: input of task 'demo\.count' is invalid: to: Expected number, actual "x"$/],
          [["runs", "start", "demo.count", "--input", "{}", "--run-at", "2030-02-30T00:00:00Z"], /^runstream: --run-at: must be an ISO 8601 date-time that exists/],
          [["runs", "start", "demo.count", "--input", "{}", "--input-file", "x.json"], /^runstream: give --input or --input-file, not both$/],
          [["runs", "start", "demo.echo", "--input", "{\"a\":2}", "--idempotency-key", "cli-k"], new RegExp(`^runstream: idempotency key 'cli-k' was used by run ${echo.id} with another task or input$`)],
          [["runs", "cancel", echo.id], new RegExp(`^runstream: run ${echo.id} is already succeeded$`)],
          [["runs", "list", "--limit", "0"], /^runstream: .*limit/i],
          [["runs", "get"], /^Missing argument <id>$/],
          [["runs", "start", "demo.count", "--priority", "high"], /^.*'high'.*$/],
          [["runs", "start", "demo.per-key", "--input", "{\"ms\":1}", "--concurrency-key", ""], /^runstream: --concurrency-key: /]
        ]
        const results = yield* Effect.all(cases.map(([args, , env]) => cli(args, env === undefined ? {} : { env })), { concurrency: 4 })
        results.forEach((result, i) => {
          const [args, pattern] = cases[i]!
          expect({ args, ...expectError(result, pattern) }).toMatchObject({ args, ok: true })
        })
      }), { timeout: 180_000 })

    it.scoped("events prints the live events of every run, filtered by task", () =>
      Effect.gen(function*() {
        const events = yield* spawnCli(["events", "--task", "demo.count", "--json"])
        // The debug stream is not replayed: runs are started until one shows, which proves the subscription.
        yield* Effect.gen(function*() {
          const { id } = (yield* cliJson(["runs", "start", "demo.count", "--input", "{\"to\":1}"])).run
          yield* events.waitFor(new RegExp(`"runId":"${id}","seq":4,"type":"run.succeeded"`), "10 seconds")
        }).pipe(Effect.retry({ times: 10 }))
        // Subscribed: another task's run is left out, and a counted run shows whole, in order.
        const echo = (yield* cliJson(["runs", "start", "demo.echo", "--input", "1"])).run
        const counted = (yield* cliJson(["runs", "start", "demo.count", "--input", "{\"to\":2}"])).run
        const [text] = yield* events.waitFor(new RegExp(`[\\s\\S]*"runId":"${counted.id}","seq":5,"type":"run.succeeded".*\\n`))
        const lines = jsonLines(text!)
        expect(lines.filter((event) => event.runId === counted.id).map((event) => event.seq)).toEqual([1, 2, 3, 4, 5])
        expect(lines.some((event) => event.runId === echo.id)).toBe(false)
      }), { timeout: 180_000 })
  })
})
