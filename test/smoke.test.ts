import { describe, expect, layer } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import { Count } from "../src/demo/tasks.ts"
import { Runs } from "../src/Runs.ts"
import { RunstreamTest } from "../src/testing/index.ts"

describe("smoke", () => {
  layer(RunstreamTest.layer({ tasks: [Count] }), { excludeTestServices: true })((it) => {
    it.effect("runs a task and streams its events", () =>
      Effect.gen(function*() {
        const runs = yield* Runs
        const run = yield* runs.start(Count, { to: 3 })
        const events = yield* runs.events(run.id).pipe(Stream.runCollect)
        expect(Chunk.toArray(events).map((e) => e.type)).toEqual(["run.queued", "run.started", "tick", "tick", "tick", "run.succeeded"])
        const done = yield* runs.get(run.id)
        expect(done.status).toBe("succeeded")
        expect(done.output).toEqual({ count: 3 })
      }))
  })
})
