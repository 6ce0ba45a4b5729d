/**
 * For a checkout of the repository (`npm start`, the browser tests): builds
 * the dashboard into `dist/dashboard/` when it is missing or older than a file
 * of `dashboard/`, by running Vite (a dev dependency) as a child process. An
 * installed package carries the built files and has no `dashboard/` sources:
 * nothing to do.
 * @since 0.1.0
 */
import { Effect, Layer, Option } from "effect"
import { spawn } from "node:child_process"
import { readdir, stat } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { DashboardConfig } from "../http/Dashboard.ts"

/** The repository's root, seen from `src/main/` (tsx) or `bundle/`. */
const rootCandidates = [
  fileURLToPath(new URL("../..", import.meta.url)),
  fileURLToPath(new URL("..", import.meta.url))
] as const

const mtime = (path: string) => stat(path).then((s) => s.mtimeMs, () => null)

/** The newest modification time of the files under `directory`. */
const newest = async (directory: string): Promise<number> => {
  let latest = 0
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    if (entry.name === "node_modules") continue
    const path = join(directory, entry.name)
    latest = Math.max(latest, entry.isDirectory() ? await newest(path) : (await mtime(path)) ?? 0)
  }
  return latest
}

/** Whether `root/dist/dashboard` is missing or older than `root/dashboard`. */
export const isStale = (root: string) =>
  Effect.promise(async () => {
    const built = await mtime(join(root, "dist", "dashboard", "index.html"))
    return built === null || (await newest(join(root, "dashboard"))) > built
  })

const build = (root: string) =>
  Effect.async<void, Error>((resume) => {
    const child = spawn(process.execPath, [join(root, "node_modules", "vite", "bin", "vite.js"), "build", "--config", join(root, "dashboard", "vite.config.ts")], {
      cwd: root,
      stdio: ["ignore", "inherit", "inherit"]
    })
    child.on("error", (error) => resume(Effect.fail(error)))
    child.on("exit", (code) =>
      resume(code === 0 ? Effect.void : Effect.fail(new Error(`the dashboard's build (vite) exited with ${code}`))))
    return Effect.sync(() => void child.kill())
  })

/** Builds the dashboard of the checkout at `root` if it is missing or stale; says so on the console. */
export const ensureBuilt = (root: string) =>
  Effect.gen(function*() {
    if ((yield* Effect.promise(() => mtime(join(root, "dashboard", "vite.config.ts")))) === null) return false
    if (!(yield* isStale(root))) return false
    yield* Effect.logInfo("building the dashboard (dist/dashboard is missing or older than dashboard/)")
    yield* build(root)
    return true
  })

/**
 * `ensureBuilt` for the checkout this module is in, as a layer built before
 * the server; nothing when `RUNSTREAM_DASHBOARD_DIR` names another build (or `off`).
 */
export const layer = Layer.effectDiscard(Effect.gen(function*() {
  if (Option.isSome(yield* DashboardConfig)) return
  for (const root of rootCandidates) {
    if ((yield* Effect.promise(() => mtime(join(root, "dashboard", "vite.config.ts")))) !== null) {
      yield* ensureBuilt(root).pipe(
        Effect.catchAll((error) => Effect.logWarning(`the dashboard could not be built: ${error.message}`))
      )
      return
    }
  }
}))
