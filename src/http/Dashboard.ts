/**
 * The web dashboard's files, as `npm run build` writes them to
 * `dist/dashboard/` (`index.html` and content-hashed files under `assets/`),
 * served at `/` in front of the API. They are read once when the server
 * starts and held in memory (about 115 KB, and their gzip). The page holds no
 * data, so it needs no key: with API keys on, it asks for one and sends it
 * with each API call.
 * @since 0.1.0
 */
import { type HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Config, Effect, Option } from "effect"
import { readdir, readFile, stat } from "node:fs/promises"
import { extname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { gzipSync } from "node:zlib"
import { ApiError, toResponse } from "./ApiError.ts"

interface Asset {
  readonly body: Uint8Array
  /** Sent instead of `body` to clients that accept gzip, when it is smaller. */
  readonly gzip: Uint8Array | null
  readonly contentType: string
  readonly headers: Readonly<Record<string, string>>
}

/** The dashboard's files by URL path (`/index.html`, `/assets/index-3f2a.js`). */
export type Assets = ReadonlyMap<string, Asset>

/** The largest set of files served (they are held in memory). */
const maxBytes = 16 * 1024 * 1024

const contentTypes: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
  ".json": "application/json",
  ".map": "application/json"
}

const security = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer"
}

/**
 * The page may load nothing from, and send nothing to, another host; it may
 * not be framed. Inline styles: Preact and uPlot set `style` on elements.
 */
const contentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'"
].join("; ")

/**
 * Where the built files are when no directory is configured: `dist/dashboard`
 * of this package, seen from `src/http/` (tsx), `dist/http/` (the package) or
 * `bundle/` (`npm run bundle`).
 */
export const defaultDirectories = [
  fileURLToPath(new URL("../../dist/dashboard", import.meta.url)),
  fileURLToPath(new URL("../dist/dashboard", import.meta.url))
] as const

/**
 * `RUNSTREAM_DASHBOARD_DIR`: the directory of the built dashboard, or `off`
 * to serve none. Unset: the package's own build.
 * @category config
 */
export const DashboardConfig = Config.option(Config.string("RUNSTREAM_DASHBOARD_DIR"))

const readAsset = (path: string, name: string) =>
  Effect.map(Effect.promise(() => readFile(path)), (body): Asset => {
    const hashed = name.startsWith("/assets/")
    const gzip = gzipSync(body, { level: 9 })
    return {
      body,
      gzip: gzip.length < body.length ? gzip : null,
      contentType: contentTypes[extname(name)] ?? "application/octet-stream",
      headers: hashed
        // A hashed name never changes content: caches keep it for a year.
        ? { ...security, "cache-control": "public, max-age=31536000, immutable", vary: "accept-encoding" }
        // The page names the current assets: always asked again.
        : { ...security, "cache-control": "no-cache", vary: "accept-encoding", "content-security-policy": contentSecurityPolicy, "x-frame-options": "DENY" }
    }
  })

const isFile = (path: string) =>
  Effect.promise(() => stat(path).then((s) => s.isFile(), () => false))

/**
 * The files of the first directory of `directories` that holds an
 * `index.html`; none when no directory does (the dashboard was not built).
 */
export const load = (directories: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    for (const directory of directories) {
      if (!(yield* isFile(join(directory, "index.html")))) continue
      const names = yield* Effect.promise(() => readdir(join(directory, "assets")).catch(() => [] as Array<string>))
      const files = new Map<string, Asset>()
      files.set("/index.html", yield* readAsset(join(directory, "index.html"), "/index.html"))
      let total = 0
      for (const name of names) {
        const path = join(directory, "assets", name)
        if (!(yield* isFile(path))) continue
        const asset = yield* readAsset(path, `/assets/${name}`)
        total += asset.body.length
        if (total > maxBytes) return yield* Effect.dieMessage(`${directory} holds more than ${maxBytes} bytes of assets`)
        files.set(`/assets/${name}`, asset)
      }
      return Option.some<Assets>(files)
    }
    return Option.none<Assets>()
  })

/** The dashboard's files per `DashboardConfig` (or `directory` when given; `off`: none). */
export const fromConfig = (directory?: string) =>
  Effect.gen(function*() {
    const configured = directory === undefined ? yield* DashboardConfig : Option.some(directory)
    if (Option.getOrUndefined(configured) === "off") return Option.none<Assets>()
    const assets = yield* load(Option.match(configured, { onNone: () => defaultDirectories, onSome: (dir) => [dir] }))
    if (Option.isNone(assets)) {
      yield* Effect.logWarning(
        `no dashboard to serve at /: ${Option.getOrElse(configured, () => "dist/dashboard")} has no index.html (npm run build makes it)`
      )
    }
    return assets
  })

const notBuilt = toResponse(new ApiError({
  status: 404,
  code: "not_found",
  message: "this server has no dashboard: it was not built (npm run build) or RUNSTREAM_DASHBOARD_DIR is off"
}))

const acceptsGzip = (header: string | undefined) => header !== undefined && /\bgzip\b/i.test(header)

/**
 * Answers `GET /`, `/index.html` and `/assets/*` from `assets` (an unknown
 * asset: 404) and hands every other request to `app`, before its
 * authentication: the files are public, the API behind them is not.
 */
export const middleware = (assets: Option.Option<Assets>) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const path = request.url.split("?", 1)[0]!
    if (path !== "/" && path !== "/index.html" && !path.startsWith("/assets/")) return app
    if (request.method !== "GET" && request.method !== "HEAD") {
      return Effect.succeed(toResponse(
        new ApiError({ status: 405, code: "method_not_allowed", message: `${path.slice(0, 100)} answers GET, HEAD` }),
        { allow: "GET, HEAD" }
      ))
    }
    if (Option.isNone(assets)) return Effect.succeed(notBuilt)
    const asset = assets.value.get(path === "/" ? "/index.html" : path)
    if (asset === undefined) {
      return Effect.succeed(toResponse(new ApiError({ status: 404, code: "not_found", message: `no asset ${path.slice(0, 100)}` })))
    }
    const gzip = asset.gzip !== null && acceptsGzip(request.headers["accept-encoding"])
    return Effect.succeed(HttpServerResponse.uint8Array(gzip ? asset.gzip! : asset.body, {
      contentType: asset.contentType,
      headers: gzip ? { ...asset.headers, "content-encoding": "gzip" } : asset.headers
    }))
  })
