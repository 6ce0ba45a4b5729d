import { describe, expect, it } from "@effect/vitest"
import { ESLint } from "eslint"

const lintSource = async (code: string) => {
  const eslint = new ESLint()
  const [result] = await eslint.lintText(code, { filePath: "src/__probe__.ts" })
  return result!.messages.filter((m) => m.ruleId === "no-restricted-syntax").map((m) => m.message)
}

describe("no module-level mutable state in src/", () => {
  it("src/ has none", async () => {
    const eslint = new ESLint()
    const results = await eslint.lintFiles(["src/**/*.ts"])
    const hits = results.flatMap((r) =>
      r.messages.filter((m) => m.ruleId === "no-restricted-syntax").map((m) => `${r.filePath}:${m.line} ${m.message}`)
    )
    expect(hits).toEqual([])
  }, 120_000)

  it.each([
    ["a module-level let", "export let counter = 0"],
    ["a module-level var", "var cache = {}"],
    ["a module-level Map", "const registry = new Map<string, number>()"],
    ["a module-level Set", "export const seen = new Set()"],
    ["a module-level array", "const workers = []"],
    ["an eagerly run effect", "import { Effect } from 'effect'\nconst x = Effect.runSync(Effect.succeed(1))"],
    ["a module-level Ref", "import { Ref } from 'effect'\nexport const ref = Ref.unsafeMake(0)"]
  ])("refuses %s", async (_, code) => {
    expect(await lintSource(code)).not.toEqual([])
  }, 60_000)

  it("allows constants and functions", async () => {
    expect(await lintSource("export const limit = 10\nexport const f = (n: number) => { let x = n; return x }")).toEqual([])
  }, 60_000)
})
