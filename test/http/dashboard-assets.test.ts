/**
 * The dashboard's files as the server serves them: the page and its hashed
 * assets with their types and cache headers, gzip when asked, 404 for an
 * unknown asset, public when the API needs a key, and the API unchanged.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { get, type IncomingHttpHeaders } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gunzipSync } from "node:zlib"
import { BaseUrl, call, program } from "./support.ts"

/** A built dashboard in a directory of its own: a page and two assets. */
const fixture = () => {
  const dir = mkdtempSync(join(tmpdir(), "runstream-dashboard-"))
  mkdirSync(join(dir, "assets"))
  writeFileSync(join(dir, "index.html"), "<!doctype html><title>Runstream</title><script src=\"/assets/index-AbC123.js\"></script>")
  writeFileSync(join(dir, "assets", "index-AbC123.js"), `console.log(${JSON.stringify("x".repeat(4000))})`)
  writeFileSync(join(dir, "assets", "index-DeF456.css"), "body { margin: 0 }")
  return dir
}

/** A GET as sent, its body as received (fetch would decode a gzipped one). */
const raw = (path: string, headers: Record<string, string> = {}) =>
  Effect.flatMap(BaseUrl, (base) =>
    Effect.async<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>((resume) => {
      const request = get(`${base}${path}`, { headers }, (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () => resume(Effect.succeed({ status: response.statusCode!, headers: response.headers, body: Buffer.concat(chunks) })))
      })
      request.on("error", (error) => resume(Effect.die(error)))
    }))

describe("dashboard files", () => {
  const dir = fixture()
  layer(program({ dashboardDir: dir, apiKeys: [Redacted.make("the-key")] }), { excludeTestServices: true })((it) => {
    it.effect("serves the page at / without a key, uncached, under a content security policy", () =>
      Effect.gen(function*() {
        for (const path of ["/", "/index.html", "/?x=1"]) {
          const page = yield* raw(path)
          expect(page.status).toBe(200)
          expect(page.headers["content-type"]).toBe("text/html; charset=utf-8")
          expect(page.headers["cache-control"]).toBe("no-cache")
          expect(page.headers["content-security-policy"]).toContain("connect-src 'self'")
          expect(page.body.toString()).toContain("<title>Runstream</title>")
        }
        // The API behind it still needs the key.
        expect((yield* call("/v1/runs")).status).toBe(401)
        expect((yield* call("/v1/runs", { headers: { authorization: "Bearer the-key" } })).status).toBe(200)
      }))

    it.effect("serves hashed assets with their type, cached for a year, gzipped when accepted", () =>
      Effect.gen(function*() {
        const script = yield* raw("/assets/index-AbC123.js")
        expect(script.status).toBe(200)
        expect(script.headers["content-type"]).toBe("text/javascript; charset=utf-8")
        expect(script.headers["cache-control"]).toBe("public, max-age=31536000, immutable")
        expect(script.headers["content-encoding"]).toBe(undefined)
        const zipped = yield* raw("/assets/index-AbC123.js", { "accept-encoding": "gzip, br" })
        expect(zipped.headers["content-encoding"]).toBe("gzip")
        expect(zipped.body.length).toBeLessThan(script.body.length / 10)
        expect(gunzipSync(zipped.body).equals(script.body)).toBe(true)
        expect((yield* raw("/assets/index-DeF456.css")).headers["content-type"]).toBe("text/css; charset=utf-8")
      }))

    it.effect("answers an unknown asset, or a write to the page, with a JSON error and no key needed", () =>
      Effect.gen(function*() {
        for (const path of ["/assets/index-Nope.js", "/assets/", "/assets/%2e%2e%2fpackage.json", "/assets/index-AbC123.js/x"]) {
          const answer = yield* call(path)
          expect({ path, status: answer.status }).toEqual({ path, status: 404 })
          expect(answer.body.error.code).toBe("not_found")
        }
        const post = yield* call("/", { method: "POST" })
        expect(post.status).toBe(405)
        expect(post.headers.get("allow")).toBe("GET, HEAD")
      }))
  })

  layer(program({ dashboardDir: "off" }), { excludeTestServices: true })((it) => {
    it.effect("serves no page when turned off, and the API as before", () =>
      Effect.gen(function*() {
        const page = yield* call("/")
        expect(page.status).toBe(404)
        expect(page.body.error.code).toBe("not_found")
        expect((yield* call("/v1/runs")).status).toBe(200)
        expect((yield* call("/v2/nothing")).status).toBe(404)
      }))
  })
})
