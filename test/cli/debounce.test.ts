/**
 * `runstream runs start --debounce-key K --debounce-delay D [--debounce-mode M]`
 * as a user runs it: the real CLI in a child process against the HTTP API on
 * a fresh database.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { program } from "../http/support.ts"
import { cli, cliJson, expectError, layerBundle } from "./support.ts"

const idPattern = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/

/** A run's `runAt` as the CLI prints times: `2026-12-07 12:00:00` (UTC). */
const printed = (iso: string) => iso.slice(0, 19).replace("T", " ")

describe("runstream runs start --debounce-*", () => {
  layer(Layer.merge(program(), layerBundle), { excludeTestServices: true, timeout: "180 seconds" })((it) => {
    it.effect("folds starts with one key into the waiting run and says so; trailing takes the last input, leading keeps it", () =>
      Effect.gen(function*() {
        const debounce = (input: string, delay: string, ...more: ReadonlyArray<string>) =>
          ["runs", "start", "demo.echo", "--input", input, "--debounce-key", "cli-burst", "--debounce-delay", delay, ...more]
        const sent = Date.now()
        const first = yield* cli(debounce("\"a\"", "1h"))
        expect(first.code).toBe(0)
        const [id] = idPattern.exec(first.stdout)!
        const waiting = yield* cliJson(["runs", "get", id!])
        expect(waiting).toMatchObject({ status: "queued", input: "a" })
        // Due an hour after the start (no worker takes it before).
        expect(Date.parse(waiting.runAt) - sent).toBeGreaterThanOrEqual(3_600_000)
        expect(Date.parse(waiting.runAt) - Date.now()).toBeLessThanOrEqual(3_600_000)
        expect(first.stdout).toBe(
          `started run ${id} (demo.echo on queue default), starts at ${printed(waiting.runAt)} UTC unless a start with its debounce key comes first\n`
        )

        const second = yield* cli(debounce("\"b\"", "2 hours"))
        expect(second.code).toBe(0)
        const moved = yield* cliJson(["runs", "get", id!])
        expect(moved).toMatchObject({ status: "queued", input: "b" })
        expect(Date.parse(moved.runAt) - Date.parse(waiting.runAt)).toBeGreaterThanOrEqual(3_600_000)
        expect(second).toMatchObject({
          stdout: `folded into waiting run ${id} (demo.echo on queue default), which now starts at ${printed(moved.runAt)} UTC\n`,
          stderr: ""
        })

        const leading = yield* cliJson(debounce("\"c\"", "90m", "--debounce-mode", "leading"))
        expect(leading).toMatchObject({ created: false, folded: true, run: { id, input: "b" } })
        expect((yield* cli(["runs", "cancel", id!])).code).toBe(0)
        // Once the key's run is no longer waiting, the next start begins a new one.
        const next = yield* cliJson(debounce("\"d\"", "1h"))
        expect(next.created).toBe(true)
        expect(next.run.id).not.toBe(id)
        expect("folded" in next).toBe(false)
        expect((yield* cli(["runs", "cancel", next.run.id])).code).toBe(0)
      }), { timeout: 180_000 })

    it.effect("a short delay: the run starts that long after the start, and --follow follows it to its end", () =>
      Effect.gen(function*() {
        const sent = Date.now()
        const result = yield* cli([
          "runs", "start", "demo.echo", "--input", "{\"x\":1}", "--debounce-key", "cli-short", "--debounce-delay", "300ms", "--follow", "--json"
        ])
        expect(result.code).toBe(0)
        const events = result.stdout.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line))
        expect(events.map((event) => event.type)).toEqual(["run.queued", "run.started", "run.succeeded"])
        const run = yield* cliJson(["runs", "get", events[0].runId])
        // Due 300 ms after the server took the start (after the command was spawned), started no sooner.
        expect(Date.parse(run.runAt) - sent).toBeGreaterThanOrEqual(300)
        expect(Date.parse(run.startedAt)).toBeGreaterThanOrEqual(Date.parse(run.runAt))
      }), { timeout: 180_000 })

    it.effect("bad combinations and values are one line on stderr and exit 3, before anything is sent", () =>
      Effect.gen(function*() {
        const start = ["runs", "start", "demo.echo", "--input", "1"]
        const listed = Effect.map(cliJson(["runs", "list", "--task", "demo.echo"]), (page) => page.runs.map((run: any) => run.id))
        const before = yield* listed
        const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
          [["--debounce-delay", "2s"], /^runstream: --debounce-delay needs --debounce-key$/],
          [["--debounce-mode", "leading"], /^runstream: --debounce-mode needs --debounce-key$/],
          [["--debounce-key", "k"], /^runstream: --debounce-key needs --debounce-delay \(how long after the last start the run starts, e\.g\. 2s\)$/],
          [
            ["--debounce-key", "k", "--debounce-delay", "2s", "--run-at", "2030-01-01T00:00:00Z"],
            /^runstream: give --run-at or --debounce-key, not both: a debounced run starts its delay after the last start$/
          ],
          [["--debounce-key", "k", "--debounce-delay", "soon"], /^runstream: --debounce-delay: 'soon' is not a duration, e\.g\. 2s, 500ms, 5m or "2 seconds"$/],
          [["--debounce-key", "k", "--debounce-delay", "2 days"], /^runstream: --debounce-delay: must be a whole number of milliseconds from 1ms to 1 day \(got 2 days\)$/],
          [["--debounce-key", "k", "--debounce-delay", "0.5ms"], /^runstream: --debounce-delay: must be a whole number of milliseconds from 1ms to 1 day \(got 0\.5ms\)$/],
          [["--debounce-key", "k", "--debounce-delay", "0s"], /^runstream: --debounce-delay: must be a whole number/],
          [["--debounce-key", "", "--debounce-delay", "2s"], /^runstream: --debounce-key: .*at least 1 character/],
          [["--debounce-key", "k".repeat(201), "--debounce-delay", "2s"], /^runstream: --debounce-key: .*at most 200 character/],
          [["--debounce-key", "k", "--debounce-delay", "2s", "--debounce-mode", "both"], /^Expected one of the following cases: trailing, leading$/]
        ]
        const results = yield* Effect.all(cases.map(([args]) => cli([...start, ...args])), { concurrency: 4 })
        results.forEach((result, i) => {
          const [args, pattern] = cases[i]!
          expect({ args, ...expectError(result, pattern) }).toMatchObject({ args, ok: true })
        })
        // None of them started a run.
        expect(yield* listed).toEqual(before)
        const help = yield* cli(["runs", "start", "--help"])
        expect(help.stdout).toMatch(/--debounce-key/)
        expect(help.stdout).toMatch(/--debounce-delay/)
        expect(help.stdout).toMatch(/--debounce-mode/)
      }), { timeout: 180_000 })
  })
})
