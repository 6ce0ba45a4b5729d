/**
 * Scoped read tokens (`POST /v1/tokens`, `?token=`): minted with the API key,
 * accepted on the GET routes of their scope only, refused (401) when tampered
 * with, expired, or used elsewhere; disabled without a secret.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { createHmac } from "node:crypto"
import { call, follow, open, post, program } from "./support.ts"

const key = "key-for-token-tests"
const secret = "a-token-secret-of-at-least-32-characters"
const auth = { authorization: `Bearer ${key}` }

const mint = (body: unknown) => post("/v1/tokens", body, auth)

const start = (task: string, input: unknown) =>
  Effect.map(post("/v1/runs", { task, input }, auth), (answer) => {
    expect(answer.status).toBe(201)
    return answer.body.run as { id: string }
  })

/** A token as the server signs them, with any payload (to forge an expired one). */
const signed = (payload: object, withSecret = secret) => {
  const encoded = Buffer.from(JSON.stringify(payload)).toString("base64url")
  return `v1.${encoded}.${createHmac("sha256", withSecret).update(`v1.${encoded}`).digest("base64url")}`
}

describe("HTTP API: read tokens", () => {
  layer(program({ apiKeys: [Redacted.make(key)], tokenSecret: Redacted.make(secret) }), { excludeTestServices: true })((it) => {
    it.effect("mints a token only with the API key, for an existing run or a task", () =>
      Effect.gen(function*() {
        const run = yield* start("demo.echo", 1)
        expect((yield* post("/v1/tokens", { runId: run.id, ttlSeconds: 60 })).status).toBe(401)
        const before = Date.now()
        const minted = yield* mint({ runId: run.id, ttlSeconds: 60 })
        expect(minted.status).toBe(201)
        expect(minted.body.token).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
        const expires = Date.parse(minted.body.expiresAt)
        expect(expires).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 59_000)
        expect(expires).toBeLessThanOrEqual(Date.now() + 60_000)
        expect((yield* mint({ task: "demo.echo", ttlSeconds: 86_400 })).status).toBe(201)
        const unknown = yield* mint({ runId: "0190a000-0000-7000-8000-000000000001", ttlSeconds: 60 })
        expect(unknown.status).toBe(404)
      }))

    it.effect("refuses a bad token request with a 400", () =>
      Effect.gen(function*() {
        const run = yield* start("demo.echo", 1)
        for (
          const body of [
            { ttlSeconds: 60 },
            { runId: run.id, task: "demo.echo", ttlSeconds: 60 },
            { runId: run.id, ttlSeconds: 0 },
            { runId: run.id, ttlSeconds: 86_401 },
            { runId: run.id, ttlSeconds: 1.5 },
            { runId: run.id },
            { runId: "not-an-id", ttlSeconds: 60 },
            { task: "", ttlSeconds: 60 },
            { task: "demo.echo", ttlSeconds: 60, scope: "all" }
          ]
        ) {
          const answer = yield* mint(body)
          expect(answer.status, JSON.stringify(body)).toBe(400)
          expect(answer.body.error.code).toBe("invalid_input")
        }
      }))

    it.scoped("a run's token reads that run's JSON, events and stream, and nothing else", () =>
      Effect.gen(function*() {
        const run = yield* start("demo.count", { to: 2 })
        const other = yield* start("demo.count", { to: 2 })
        const { token } = (yield* mint({ runId: run.id, ttlSeconds: 60 })).body
        const q = `token=${encodeURIComponent(token)}`
        expect((yield* call(`/v1/runs/${run.id}?${q}`)).body.run.id).toBe(run.id)
        const page = yield* call(`/v1/runs/${run.id}/events?${q}`, { headers: { accept: "application/json" } })
        expect(page.status).toBe(200)
        // The browser's way: an EventSource on the URL with the token, no header.
        const stream = yield* follow(`/v1/runs/${run.id}/events?${q}`)
        expect(stream.response.status).toBe(200)
        expect((yield* stream.next).data.type).toBe("run.queued")

        for (
          const path of [
            `/v1/runs/${other.id}?${q}`,
            `/v1/runs/${other.id}/events?${q}`,
            `/v1/runs?${q}`,
            `/v1/events?${q}`,
            `/v1/stats?${q}`,
            `/v1/tasks?${q}`,
            `/openapi.json?${q}`
          ]
        ) {
          const answer = yield* call(path)
          expect(answer.status, path).toBe(401)
          expect(answer.body.error.code).toBe("unauthorized")
        }
        // Not for writes: a POST with a token is a POST without a key.
        expect((yield* post(`/v1/runs/${run.id}/cancel?${q}`, {})).status).toBe(401)
        expect((yield* post(`/v1/runs/${run.id}/replay?${q}`, {})).status).toBe(401)
      }))

    it.scoped("a task's token reads the runs of that task, its filtered list and debug stream", () =>
      Effect.gen(function*() {
        const echo = yield* start("demo.echo", 1)
        const count = yield* start("demo.count", { to: 1 })
        const { token } = (yield* mint({ task: "demo.echo", ttlSeconds: 60 })).body
        const q = `token=${encodeURIComponent(token)}`
        const list = yield* call(`/v1/runs?task=demo.echo&limit=5&${q}`)
        expect(list.status).toBe(200)
        expect(list.body.runs.every((run: any) => run.task === "demo.echo")).toBe(true)
        expect((yield* call(`/v1/runs/${echo.id}?${q}`)).status).toBe(200)
        expect((yield* call(`/v1/runs/${echo.id}/events?${q}`, { headers: { accept: "application/json" } })).status).toBe(200)
        const debug = yield* open(`/v1/events?task=demo.echo&${q}`)
        expect(debug.status).toBe(200)
        expect(debug.headers.get("content-type")).toBe("text/event-stream")
        for (
          const path of [
            `/v1/runs/${count.id}?${q}`,
            `/v1/runs/${count.id}/events?${q}`,
            `/v1/runs/0190a000-0000-7000-8000-000000000001?${q}`,
            `/v1/runs?${q}`,
            `/v1/runs?task=demo.count&${q}`,
            `/v1/runs?task=demo.echo&task=demo.count&${q}`,
            `/v1/events?${q}`,
            `/v1/events?task=demo.count&${q}`
          ]
        ) {
          expect((yield* call(path)).status, path).toBe(401)
        }
      }))

    it.effect("refuses tampered, foreign, expired and malformed tokens", () =>
      Effect.gen(function*() {
        const run = yield* start("demo.echo", 1)
        const { token } = (yield* mint({ runId: run.id, ttlSeconds: 60 })).body as { token: string }
        const [, payload, signature] = token.split(".")
        const otherRun = Buffer.from(JSON.stringify({ r: "0190a000-0000-7000-8000-000000000001", e: 4102444800 })).toString("base64url")
        const flipped = signature!.startsWith("A") ? `B${signature!.slice(1)}` : `A${signature!.slice(1)}`
        for (
          const bad of [
            `v1.${payload}.${flipped}`,
            `v1.${otherRun}.${signature}`,
            signed({ r: run.id, e: Math.floor(Date.now() / 1000) + 60 }, "another-secret-of-at-least-32-characters!"),
            signed({ r: run.id, e: Math.floor(Date.now() / 1000) - 1 }),
            signed({ r: run.id }),
            signed({ r: run.id, t: "demo.echo", e: 4102444800 }),
            `v2.${payload}.${signature}`,
            "",
            "x".repeat(2000)
          ]
        ) {
          const answer = yield* call(`/v1/runs/${run.id}?token=${encodeURIComponent(bad)}`)
          expect(answer.status, bad.slice(0, 40)).toBe(401)
          expect(answer.body.error.code).toBe("unauthorized")
        }
        // The same forging with the server's secret is a valid token: the test signs as the server does.
        expect((yield* call(`/v1/runs/${run.id}?token=${signed({ r: run.id, e: Math.floor(Date.now() / 1000) + 60 })}`)).status).toBe(200)
        // Two tokens: refused, whichever is valid.
        expect((yield* call(`/v1/runs/${run.id}?token=${encodeURIComponent(token)}&token=${encodeURIComponent(token)}`)).status).toBe(401)
        // The API key still works with or without a token beside it.
        expect((yield* call(`/v1/runs/${run.id}?token=bad`, { headers: auth })).status).toBe(200)
      }))
  })

  layer(program(), { excludeTestServices: true })((it) => {
    it.effect("without RUNSTREAM_TOKEN_SECRET, minting answers 501 and a token is refused", () =>
      Effect.gen(function*() {
        const run = yield* start("demo.echo", 1)
        const answer = yield* post("/v1/tokens", { runId: run.id, ttlSeconds: 60 })
        expect(answer.status).toBe(501)
        expect(answer.body.error.code).toBe("tokens_disabled")
        expect(answer.body.error.message).toContain("RUNSTREAM_TOKEN_SECRET")
        // Without keys every route is open, but a token given is judged (and cannot be verified).
        expect((yield* call(`/v1/runs/${run.id}`)).status).toBe(200)
        expect((yield* call(`/v1/runs/${run.id}?token=${signed({ r: run.id, e: 4102444800 })}`)).status).toBe(401)
      }))
  })
})
