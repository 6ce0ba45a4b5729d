import { describe, expect, it } from "@effect/vitest"
import { mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ensureLibraryLinks } from "../../src/internal/embeddedLibraryLinks.ts"

describe("the embedded binaries' library links (made when npm did not run their postinstall)", () => {
  it("are created where missing, relative, and left alone when present", async () => {
    const dir = mkdtempSync(join(tmpdir(), "runstream-links-"))
    try {
      mkdirSync(join(dir, "native", "lib"), { recursive: true })
      writeFileSync(join(dir, "native", "lib", "libicuuc.so.60.2"), "")
      writeFileSync(join(dir, "native", "pg-symlinks.json"), JSON.stringify([
        { source: "native/lib/libicuuc.so.60.2", target: "native/lib/libicuuc.so.60" },
        { source: "native/lib/libicuuc.so.60.2", target: "native/lib/libicuuc.so" }
      ]))
      await ensureLibraryLinks(dir)
      expect(readlinkSync(join(dir, "native", "lib", "libicuuc.so.60"))).toBe("libicuuc.so.60.2")
      expect(readlinkSync(join(dir, "native", "lib", "libicuuc.so"))).toBe("libicuuc.so.60.2")
      await ensureLibraryLinks(dir)
      expect(readlinkSync(join(dir, "native", "lib", "libicuuc.so"))).toBe("libicuuc.so.60.2")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("a package without a list needs none", async () => {
    const dir = mkdtempSync(join(tmpdir(), "runstream-links-"))
    try {
      await expect(ensureLibraryLinks(dir)).resolves.toBeUndefined()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
