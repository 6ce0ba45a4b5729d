/**
 * The dashboard's build: `dashboard/` to `dist/dashboard/` (index.html and
 * hashed files under `assets/`), served by the server at `/`. `vite --config
 * dashboard/vite.config.ts` serves it for development, the API proxied to
 * `RUNSTREAM_URL` (default http://127.0.0.1:3000).
 */
import preact from "@preact/preset-vite"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vite"

const here = fileURLToPath(new URL(".", import.meta.url))

export default defineConfig({
  root: here,
  base: "/",
  plugins: [preact({ devToolsEnabled: false, prefreshEnabled: false, reactAliasesEnabled: false })],
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../dist/dashboard", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // One script and one stylesheet: nothing is worth splitting at this size.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false
  },
  server: {
    proxy: { "/v1": process.env["RUNSTREAM_URL"] ?? "http://127.0.0.1:3000" }
  }
})
