/**
 * `runstream schedules ...`: the real CLI in a child process against the API.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { program } from "../http/support.ts"
import { ansi, cli, cliJson, expectError, layerBundle } from "./support.ts"

describe("runstream CLI: schedules", () => {
  layer(Layer.merge(program(), layerBundle), { excludeTestServices: true, timeout: "180 seconds" })((it) => {
    it.effect("create, list, get, pause, resume and delete", () =>
      Effect.gen(function*() {
        const created = yield* cli([
          "schedules",
          "create",
          "nightly",
          "demo.count",
          "--cron",
          "0 3 * * *",
          "--timezone",
          "Europe/Berlin",
          "--input",
          "{\"to\":2}",
          "--catch-up",
          "all",
          "--queue",
          "reports"
        ])
        expect(created.code).toBe(0)
        expect(created.stdout).toMatch(
          /^created schedule nightly \(demo\.count, 0 3 \* \* \* \(Europe\/Berlin\)\), next tick \d{4}-\d{2}-\d{2} 0[12]:00:00 UTC$/m
        )
        const every = yield* cliJson(["schedules", "create", "beat", "demo.echo", "--every", "1 hour"])
        expect(every).toMatchObject({ name: "beat", every: "1 hour", everyMs: 3_600_000, catchUp: "latest", source: "api" })

        const [listed, listedJson, shown, shownJson] = yield* Effect.all([
          cli(["schedules", "list"]),
          cliJson(["schedules", "list"]),
          cli(["schedules", "get", "nightly"]),
          cliJson(["schedules", "get", "nightly"])
        ], { concurrency: "unbounded" })
        expect(listed.code).toBe(0)
        expect(listed.stdout).not.toMatch(ansi)
        expect(listed.stdout).toMatch(/^NAME +TASK +WHEN +STATE +NEXT TICK \(UTC\) +LAST TICK \(UTC\) +SKIPPED +SOURCE$/m)
        expect(listed.stdout).toMatch(/^beat +demo\.echo +every 1 hour +active +\d{4}-\d{2}-\d{2} \d{2}:00:00 +0 +api$/m)
        expect(listed.stdout).toMatch(/^nightly +demo\.count +0 3 \* \* \* \(Europe\/Berlin\) +active /m)
        expect(listedJson.schedules.map((s: any) => s.name)).toEqual(["beat", "nightly"])
        expect(shown.stdout).toMatch(/^catch-up +all$/m)
        expect(shown.stdout).toMatch(/^options +\{"queue":"reports"\}$/m)
        expect(shown.stdout).toMatch(/^input +\{"to":2\}$/m)
        expect(shownJson).toMatchObject({ schedule: { name: "nightly", input: { to: 2 }, timezone: "Europe/Berlin" }, runs: [] })

        expect((yield* cli(["schedules", "pause", "nightly"])).stdout).toMatch(/^paused schedule nightly$/m)
        expect((yield* cliJson(["schedules", "get", "nightly"])).schedule.paused).toBe(true)
        expect((yield* cli(["schedules", "list"])).stdout).toMatch(/^nightly +.* paused +0 +api$/m)
        expect((yield* cli(["schedules", "resume", "nightly"])).stdout).toMatch(/^resumed schedule nightly, next tick /m)
        expect((yield* cli(["schedules", "delete", "nightly"])).stdout).toMatch(/^deleted schedule nightly$/m)
        expect(expectError(yield* cli(["schedules", "get", "nightly"]), /^runstream: schedule 'nightly' does not exist$/).ok).toBe(true)
        expect((yield* cli(["schedules", "delete", "beat"])).code).toBe(0)
      }), { timeout: 180_000 })

    it.effect("a bad definition is refused with the server's message, and nothing is created", () =>
      Effect.gen(function*() {
        const [cron, zone, every, task, input] = yield* Effect.all([
          cli(["schedules", "create", "bad", "demo.echo", "--cron", "0 3 * *"]),
          cli(["schedules", "create", "bad", "demo.echo", "--cron", "0 3 * * *", "--timezone", "Mars/Olympus"]),
          cli(["schedules", "create", "bad", "demo.echo", "--every", "100 millis"]),
          cli(["schedules", "create", "bad", "no.task", "--every", "1 minute"]),
          cli(["schedules", "create", "bad", "demo.count", "--every", "1 minute", "--input", "{\"to\":\"x\"}"])
        ], { concurrency: "unbounded" })
        expect(expectError(cron, /^runstream: schedule 'bad': invalid cron expression '0 3 \* \*'/).ok).toBe(true)
        expect(expectError(zone, /^runstream: schedule 'bad': unknown time zone 'Mars\/Olympus'/).ok).toBe(true)
        expect(expectError(every, /^runstream: schedule 'bad': every '100 millis' must be/).ok).toBe(true)
        expect(expectError(task, /^runstream: task 'no\.task' is not registered$/).ok).toBe(true)
        expect(expectError(input, /^runstream: input of task 'demo\.count' is invalid: to:/).ok).toBe(true)
        expect((yield* cliJson(["schedules", "list"])).schedules.map((s: any) => s.name)).not.toContain("bad")
      }), { timeout: 180_000 })
  })
})
