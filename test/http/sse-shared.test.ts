/**
 * A run's event stream as SSE bytes, with the shared reader behind it: two
 * clients of one live run get byte-identical bodies, and those bytes are what
 * SSE of the run's log has always been (`retry:`, then `id`, `event`, `data`
 * with the event as JSON, each message once).
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Queue } from "effect"
import { RunFollowers } from "../../src/RunFollowers.ts"
import { call, Gate, open, post, program } from "./support.ts"

/** Reads a body as text: `until` the text holds a string, or to its end. */
const reader = (body: ReadableStream<Uint8Array>) => {
  const chunks = body.getReader()
  const decoder = new TextDecoder()
  let text = ""
  const readUntil = (done: (text: string) => boolean) =>
    Effect.promise(async () => {
      while (!done(text)) {
        const next = await chunks.read()
        if (next.done) break
        text += decoder.decode(next.value, { stream: true })
      }
      return text
    })
  return { until: (marker: string) => readUntil((t) => t.includes(marker)), all: readUntil(() => false) }
}

/** What an SSE message of an event has always been, written out by hand. */
const frame = (event: { runId: string; seq: number; type: string; data: unknown; at: string }) =>
  `id: ${event.seq}\nevent: ${event.type}\ndata: ${
    JSON.stringify({ runId: event.runId, seq: event.seq, type: event.type, data: event.data, at: event.at })
  }\n\n`

describe("HTTP API: a run followed by several clients", () => {
  layer(program(), { excludeTestServices: true })((it) => {
    it.scoped("sends every client the same bytes, which are the run's SSE as before", () =>
      Effect.gen(function*() {
        const started = yield* post("/v1/runs", { task: "test.stepper", input: { steps: 3 } })
        const runId = started.body.run.id as string
        const a = reader((yield* open(`/v1/runs/${runId}/events`)).body!)
        const b = reader((yield* open(`/v1/runs/${runId}/events`)).body!)
        // Both have run.started (seq 2): they follow the run's one reader.
        yield* a.until("id: 2\n")
        yield* b.until("id: 2\n")
        const stats = yield* Effect.flatMap(RunFollowers, (followers) => followers.stats)
        expect(stats.readers).toBe(1)
        yield* Queue.offerAll(yield* Gate, [undefined, undefined, undefined])
        const [textA, textB] = [yield* a.all, yield* b.all]

        const log = yield* call(`/v1/runs/${runId}/events`, { headers: { accept: "application/json" } })
        const events = log.body.events as ReadonlyArray<{ runId: string; seq: number; type: string; data: unknown; at: string }>
        expect(events.map((e) => e.type)).toEqual(["run.queued", "run.started", "step", "step", "step", "run.succeeded"])
        const expected = `retry: 3000\n\n${events.map(frame).join("")}`
        // A keep-alive comment may fall anywhere on a slow machine; it is no event.
        const withoutComments = (text: string) => text.replaceAll(": keep-alive\n\n", "")
        expect(withoutComments(textA)).toBe(expected)
        expect(withoutComments(textB)).toBe(expected)
      }))
  })
})
