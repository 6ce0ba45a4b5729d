import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { type Answer, BaseUrl, call, post, program } from "./support.ts"

const json = { "content-type": "application/json" }
const unknownRun = "01a2120e-0000-7000-8000-000000000000"

/** A body of `bytes` bytes, sent in chunks with no Content-Length. */
const chunkedBody = (bytes: number) => {
  const chunk = new Uint8Array(64 * 1024).fill(0x20)
  let sent = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= bytes) return controller.close()
      sent += chunk.length
      controller.enqueue(chunk)
    }
  })
}

const expectError = (answer: Answer, status: number, code: string) => {
  expect({ status: answer.status, code: answer.body?.error?.code }).toEqual({ status, code })
  expect(Object.keys(answer.body)).toEqual(["error"])
  expect(typeof answer.body.error.message).toBe("string")
  expect(answer.body.error.message).not.toMatch(/\n\s+at /)
}

describe("HTTP API: refused requests", () => {
  // A body limit above the input limit (1 MiB), so both can be hit.
  layer(program({ maxBodyBytes: 3 * 1024 * 1024 }), { excludeTestServices: true })((it) => {
    it.effect("answers each bad request with its status and code, and writes nothing", () =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [string, Effect.Effect<Answer, never, BaseUrl>, number, string]> = [
          ["malformed JSON", call("/v1/runs", { method: "POST", headers: json, body: "{\"task\": " }), 400, "invalid_json"],
          ["not JSON", call("/v1/runs", { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" }), 415, "unsupported_media_type"],
          ["a JSON array", post("/v1/runs", [1]), 400, "invalid_input"],
          ["no task", post("/v1/runs", { input: {} }), 400, "invalid_input"],
          ["an unknown field", post("/v1/runs", { task: "demo.echo", input: 1, prio: 1 }), 400, "invalid_input"],
          ["a bad option", post("/v1/runs", { task: "demo.echo", input: 1, maxAttempts: 0 }), 400, "invalid_input"],
          ["a bad runAt", post("/v1/runs", { task: "demo.echo", input: 1, runAt: "tomorrow" }), 400, "invalid_input"],
          ["a debounce delay of 0", post("/v1/runs", { task: "demo.echo", input: 1, debounce: { key: "k", delayMs: 0 } }), 400, "invalid_input"],
          ["a negative debounce delay", post("/v1/runs", { task: "demo.echo", input: 1, debounce: { key: "k", delayMs: -5 } }), 400, "invalid_input"],
          ["a debounce delay over a day", post("/v1/runs", { task: "demo.echo", input: 1, debounce: { key: "k", delayMs: 86_400_001 } }), 400, "invalid_input"],
          ["an empty debounce key", post("/v1/runs", { task: "demo.echo", input: 1, debounce: { key: "", delayMs: 10 } }), 400, "invalid_input"],
          ["a debounce key over 200", post("/v1/runs", { task: "demo.echo", input: 1, debounce: { key: "k".repeat(201), delayMs: 10 } }), 400, "invalid_input"],
          ["an unknown debounce mode", post("/v1/runs", { task: "demo.echo", input: 1, debounce: { key: "k", delayMs: 10, mode: "both" } }), 400, "invalid_input"],
          ["debounce with runAt", post("/v1/runs", { task: "demo.echo", input: 1, runAt: "2030-01-01T00:00:00Z", debounce: { key: "k", delayMs: 10 } }), 400, "invalid_input"],
          ["an unknown task", post("/v1/runs", { task: "demo.nope", input: {} }), 400, "unknown_task"],
          ["an input the task refuses", post("/v1/runs", { task: "demo.count", input: { to: "three" } }), 400, "invalid_input"],
          ["a NUL in the input", post("/v1/runs", { task: "demo.echo", input: "a\u0000b" }), 400, "invalid_input"],
          ["a NUL in the idempotency key", post("/v1/runs", { task: "demo.echo", input: 1, idempotencyKey: "a\u0000b" }), 400, "invalid_input"],
          ["a lone surrogate in the idempotency key", post("/v1/runs", { task: "demo.echo", input: 1, idempotencyKey: "a\ud800" }), 400, "invalid_input"],
          ["an empty concurrency key", post("/v1/runs", { task: "demo.echo", input: 1, concurrencyKey: "" }), 400, "invalid_input"],
          ["a concurrency key over 200 characters", post("/v1/runs", { task: "demo.echo", input: 1, concurrencyKey: "k".repeat(201) }), 400, "invalid_input"],
          ["an input over its limit", post("/v1/runs", { task: "demo.echo", input: "x".repeat(1024 * 1024 + 1) }), 413, "payload_too_large"],
          ["a body over its limit", post("/v1/runs", { task: "demo.echo", input: "x".repeat(4 * 1024 * 1024) }), 413, "payload_too_large"],
          [
            "a chunked body over its limit",
            call("/v1/runs", { method: "POST", headers: json, body: chunkedBody(8 * 1024 * 1024), duplex: "half" } as RequestInit),
            413,
            "payload_too_large"
          ],
          ["a malformed run id", call("/v1/runs/not-a-run"), 400, "invalid_input"],
          ["an unknown run", call(`/v1/runs/${unknownRun}`), 404, "run_not_found"],
          ["events of an unknown run", call(`/v1/runs/${unknownRun}/events`), 404, "run_not_found"],
          ["a cancel of an unknown run", post(`/v1/runs/${unknownRun}/cancel`, {}), 404, "run_not_found"],
          ["a cancel of a malformed id", post("/v1/runs/x/cancel", {}), 400, "invalid_input"],
          ["limit 0", call("/v1/runs?limit=0"), 400, "invalid_input"],
          ["limit over the page size", call("/v1/runs?limit=1001"), 400, "invalid_input"],
          ["a limit that is no number", call("/v1/runs?limit=ten"), 400, "invalid_input"],
          ["an unknown status", call("/v1/runs?status=sleeping"), 400, "invalid_input"],
          ["a NUL in the task filter", call("/v1/runs?task=a%00b"), 400, "invalid_input"],
          ["a forged cursor", call("/v1/runs?cursor=bm90LWEtY3Vyc29y"), 400, "invalid_cursor"],
          ["a negative after", call(`/v1/runs/${unknownRun}/events?after=-1`), 400, "invalid_input"],
          ["a Last-Event-ID that is no seq", call(`/v1/runs/${unknownRun}/events`, { headers: { "last-event-id": "abc" } }), 400, "invalid_input"],
          ["a malformed run filter", call("/v1/events?run=42"), 400, "invalid_input"],
          ["an unknown route", call("/v2/runs"), 404, "not_found"],
          ["a wrong method", call("/v1/runs", { method: "DELETE" }), 405, "method_not_allowed"]
        ]
        for (const [name, request, status, code] of cases) {
          const answer = yield* request
          expect.soft({ name, status: answer.status, code: answer.body?.error?.code }).toEqual({ name, status, code })
          expectError(answer, status, code)
        }
        const list = yield* call("/v1/runs")
        expect(list.status).toBe(200)
        expect(list.body).toEqual({ runs: [], nextCursor: null })
      }))

    it.effect("names the fields at fault", () =>
      Effect.gen(function*() {
        const options = yield* post("/v1/runs", { task: "demo.echo", priority: 1.5, queue: "no spaces" })
        expect(options.body.error.message).toContain("priority")
        expect(options.body.error.message).toContain("queue")
        expect(options.body.error.message).not.toContain("Expected undefined")
        const delay = yield* post("/v1/runs", { task: "demo.echo", input: 1, debounce: { key: "k", delayMs: -1 } })
        expect(delay.body.error.issues).toEqual([
          { path: ["debounce", "delayMs"], message: "delayMs must be an integer from 1 to 86400000 (a day)" }
        ])
        const combined = yield* post("/v1/runs", { task: "demo.echo", input: 1, runAt: "2030-01-01T00:00:00Z", debounce: { key: "k", delayMs: 10 } })
        expect(combined.body.error.message).toContain("runAt and debounce cannot be combined")
        expect(combined.body.error.issues[0].path).toEqual(["runAt"])
        const limit = yield* call("/v1/runs?limit=0")
        expect(limit.body.error.message).toBe("limit: must be an integer from 1 to 1000")
        const after = yield* call(`/v1/runs/${unknownRun}/events?after=x`)
        expect(after.body.error.message).toBe("after: must be an integer from 0 to 2147483647")
        const id = yield* call("/v1/runs/not-a-run")
        expect(id.body.error.message).toBe("id: a run id is a lowercase UUID")
        const key = yield* post("/v1/runs", { task: "demo.echo", input: 1, concurrencyKey: "" })
        expect(key.body.error.message).toContain("concurrencyKey")
      }))

    it.effect("lists what is wrong with an input field by field, bounded", () =>
      Effect.gen(function*() {
        const input = yield* post("/v1/runs", { task: "demo.count", input: { to: "three", delayMs: -1 } })
        expect(input.status).toBe(400)
        expect(input.body.error.code).toBe("invalid_input")
        expect(input.body.error.message).toMatch(
          /^input of task 'demo\.count' is invalid: to: Expected number, actual "three"; delayMs: .*non-negative.*$/
        )
        expect(input.body.error.issues).toEqual([
          { path: ["to"], message: "Expected number, actual \"three\"" },
          { path: ["delayMs"], message: expect.stringContaining("non-negative") }
        ])
        const options = yield* post("/v1/runs", { task: "demo.echo", priority: 1.5, queue: "no spaces" })
        expect(options.body.error.issues.map((issue: { path: Array<string> }) => issue.path[0]).sort()).toEqual(["priority", "queue"])
        // An input with a thousand faults: twenty issues, each message bounded.
        const many = yield* post("/v1/runs", {
          task: "test.numbers",
          input: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`.repeat(100), "x".repeat(1000)]))
        })
        expect(many.status).toBe(400)
        expect(many.body.error.issues).toHaveLength(20)
        expect(many.body.error.message).toMatch(/ \(and 997 more\)$/)
        expect(many.body.error.message.length).toBeLessThan(2000)
        for (const issue of many.body.error.issues) {
          expect(issue.message.length).toBeLessThanOrEqual(301)
          expect(issue.path.every((key: unknown) => typeof key === "number" || (key as string).length <= 101)).toBe(true)
        }
      }))

    it.effect("tells the allowed methods of a known path", () =>
      Effect.gen(function*() {
        const answer = yield* call(`/v1/runs/${unknownRun}/cancel`)
        expect(answer.status).toBe(405)
        expect(answer.headers.get("allow")).toBe("POST")
      }))
  })
})
