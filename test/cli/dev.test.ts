/**
 * `runstream dev` (what `npm start` does) on a fresh database, driven by the
 * CLI itself; and the help, which needs no server.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { DatabaseUrl } from "../../src/Database.ts"
import { TestDatabase } from "../../src/testing/index.ts"
import { ansi, cli, layerBundle, spawnCli } from "./support.ts"

describe("runstream dev", () => {
  layer(Layer.merge(TestDatabase.layerUrl, layerBundle), { excludeTestServices: true, timeout: "180 seconds" })((it) => {
    it.scoped("serves the API with workers and the demo tasks until Ctrl-C", () =>
      Effect.gen(function*() {
        const { url } = yield* DatabaseUrl
        const dev = yield* spawnCli(["dev"], { env: { DATABASE_URL: Redacted.value(url), PORT: "0", HOST: "127.0.0.1" } })
        const [, base] = yield* dev.waitFor(/Runstream dev server: (http:\/\/[\d.]+:\d+)/, "120 seconds")
        const followed = yield* cli(["runs", "start", "demo.count", "--input", "{\"to\":2}", "--follow", "--json"], { url: base! })
        expect(followed.code).toBe(0)
        expect(followed.stdout.trim().split("\n").map((line) => JSON.parse(line).type))
          .toEqual(["run.queued", "run.started", "tick", "tick", "run.succeeded"])
        yield* dev.kill("SIGINT")
        const stopped = yield* dev.result
        expect(stopped.code).toBe(130)
      }), { timeout: 180_000 })

    it.effect("--help lists the commands, without ANSI codes when piped", () =>
      Effect.gen(function*() {
        const [help, runs] = yield* Effect.all([cli(["--help"]), cli(["runs", "--help"])], { concurrency: "unbounded" })
        expect(help.code).toBe(0)
        expect(help.stdout).not.toMatch(ansi)
        for (const command of ["runs", "events", "stats", "tasks", "dev"]) expect(help.stdout).toContain(`- ${command}`)
        expect(runs.stdout).not.toMatch(ansi)
        for (const command of ["list", "get", "start", "tail", "cancel", "signal", "replay"]) expect(runs.stdout).toContain(`- ${command}`)
      }), { timeout: 180_000 })
  })
})
