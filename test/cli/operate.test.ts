/**
 * `runstream stats`, `tasks`, `runs replay`, `runs list --queue`, colours on a
 * terminal, and API keys: the real CLI in a child process against the API.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { program } from "../http/support.ts"
import { ansi, cli, cliJson, expectError, layerBundle } from "./support.ts"

describe("runstream CLI: operating a server", () => {
  layer(Layer.merge(program(), layerBundle), { excludeTestServices: true, timeout: "180 seconds" })((it) => {
    it.effect("stats and tasks: tables when piped (no ANSI), JSON with --json", () =>
      Effect.gen(function*() {
        const { id } = (yield* cliJson(["runs", "start", "demo.count", "--input", "{\"to\":1}"])).run
        expect((yield* cli(["runs", "tail", id])).code).toBe(0)
        const [stats, statsJson, tasks, tasksJson] = yield* Effect.all([
          cli(["stats"]),
          cliJson(["stats"]),
          cli(["tasks"]),
          cliJson(["tasks"])
        ], { concurrency: "unbounded" })

        expect(stats.code).toBe(0)
        expect(stats.stdout).not.toMatch(ansi)
        expect(stats.stdout).toMatch(/^TASK +QUEUED +RUNNING +WAITING +SUCCEEDED +FAILED +CANCELLED$/m)
        expect(stats.stdout).toMatch(/^demo\.count +0 +0 +0 +1 +0 +0$/m)
        expect(stats.stdout).toMatch(/^Last hour: 1 succeeded, 0 failed, 0 cancelled$/m)
        expect(stats.stdout).toMatch(/^ {2}duration +p50 \d/m)
        expect(statsJson.runs).toContainEqual({ task: "demo.count", status: "succeeded", count: 1 })
        expect(statsJson.finishedPerMinute).toHaveLength(60)

        expect(tasks.code).toBe(0)
        expect(tasks.stdout).not.toMatch(ansi)
        expect(tasks.stdout).toMatch(/^TASK +ATTEMPTS +BACKOFF +TIMEOUT +LIMITS +INPUT +SIGNALS$/m)
        expect(tasks.stdout).toMatch(/^demo\.count +3 +1\.0s\.\.5m00s x2 +- +- +\{to: integer 0\.\.1000000, delayMs\?: integer 0\.\.60000\} +-$/m)
        // A workflow's signals, each with its data in a few words.
        expect(tasks.stdout).toMatch(/^demo\.approval +.* +approve: \{approved: boolean, by: string\}$/m)
        expect(tasks.stdout).toMatch(/^demo\.per-key +3 +.* 2 running, 10 per 1\.0s, per key +\{ms: integer/m)
        expect(tasks.stdout).toMatch(/^QUEUE +LIMITS\n+mail +1 running, 100 per 1m00s, per key$/m)
        expect(tasksJson.queues).toEqual([{ name: "mail", concurrency: { limit: 1 }, rateLimit: { limit: 100, periodMs: 60_000 } }])
        expect(tasks.stdout).toMatch(/^test\.stepper +/m)
        expect(tasksJson.tasks.map((task: any) => task.name)).toEqual(expect.arrayContaining(["demo.count", "demo.echo", "test.stepper"]))
        expect(tasksJson.tasks.find((task: any) => task.name === "demo.count").input).toMatchObject({ type: "object", required: ["to"] })
      }), { timeout: 180_000 })

    it.effect("replay starts a new run of the same task and input, linked to the original; list filters by queue", () =>
      Effect.gen(function*() {
        const original = (yield* cliJson(["runs", "start", "demo.echo", "--input", "{\"x\":1}", "--queue", "parked"])).run
        const replayed = yield* cli(["runs", "replay", original.id, "--queue", "default", "--follow"])
        expect(replayed.code).toBe(0)
        const [, copy] = new RegExp(`^replayed run ${original.id} as run ([0-9a-f-]{36}) \\(demo\\.echo on queue default\\)$`, "m")
          .exec(replayed.stdout)!
        expect(replayed.stdout).toMatch(/run\.succeeded +\{"output":\{"x":1\}/)
        const [got, shown, parked, unknown] = yield* Effect.all([
          cliJson(["runs", "get", copy!]),
          cli(["runs", "get", copy!]),
          cliJson(["runs", "list", "--queue", "parked"]),
          cli(["runs", "replay", "01a24eca-1d49-706f-baa2-220b33c80a31"])
        ], { concurrency: "unbounded" })
        expect(got).toMatchObject({ replayOf: original.id, task: "demo.echo", input: { x: 1 }, status: "succeeded" })
        expect(shown.stdout).toMatch(new RegExp(`^replay of +${original.id}$`, "m"))
        expect(parked.runs.map((run: any) => run.id)).toEqual([original.id])
        expect(expectError(unknown, /^runstream: run 01a24eca-1d49-706f-baa2-220b33c80a31 does not exist$/).ok).toBe(true)
        expect((yield* cli(["runs", "cancel", original.id])).code).toBe(0)
      }), { timeout: 180_000 })

    it.effect("on a terminal, statuses are coloured; NO_COLOR turns colours off", () =>
      Effect.gen(function*() {
        expect((yield* cli(["runs", "start", "demo.echo", "--input", "1", "--follow"])).code).toBe(0)
        const [coloured, plain] = yield* Effect.all([
          cli(["runs", "list", "--task", "demo.echo"], { tty: true }),
          cli(["runs", "list", "--task", "demo.echo"], { tty: true, env: { NO_COLOR: "1" } })
        ], { concurrency: "unbounded" })
        expect(coloured.code).toBe(0)
        // Green "succeeded" (ESC[32m) in the table.
        expect(coloured.stdout).toMatch(/\x1b\[[0-9;]*32m\s*succeeded/)
        expect(plain.stdout).toMatch(/succeeded/)
        expect(plain.stdout).not.toMatch(ansi)
      }), { timeout: 180_000 })
  })

  layer(Layer.merge(program({ apiKeys: [Redacted.make("cli-secret")] }), layerBundle), {
    excludeTestServices: true,
    timeout: "180 seconds"
  })((it) => {
    it.effect("with API keys: refused without a key or with a wrong one (one line, exit 3), accepted from --api-key or RUNSTREAM_API_KEY", () =>
      Effect.gen(function*() {
        const [none, wrong, flag, env] = yield* Effect.all([
          cli(["runs", "list"]),
          cli(["runs", "list", "--api-key", "nope"]),
          cli(["runs", "list", "--api-key", "cli-secret"]),
          cli(["stats", "--json"], { env: { RUNSTREAM_API_KEY: "cli-secret" } })
        ], { concurrency: "unbounded" })
        const refused = /^runstream: http:\/\/127\.0\.0\.1:\d+ refused the API key \(401\): pass --api-key or set RUNSTREAM_API_KEY/
        expect(expectError(none, refused)).toMatchObject({ ok: true })
        expect(expectError(wrong, refused)).toMatchObject({ ok: true })
        expect(flag).toMatchObject({ code: 0, stderr: "" })
        expect(env).toMatchObject({ code: 0, stderr: "" })
      }), { timeout: 180_000 })
  })
})
