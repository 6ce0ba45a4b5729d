import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { Echo } from "../../src/demo/tasks.ts"
import { jsonNesting, maxStoredNesting, unstorableInJsonb } from "../../src/internal/jsonb.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"

describe("values Postgres jsonb cannot store", () => {
  it("are recognised in JSON text: U+0000 and unpaired surrogates, not their escaped spellings", () => {
    const check = (value: unknown) => unstorableInJsonb(JSON.stringify(value))
    expect(check("x\udfffy")).toBe(true)
    expect(check({ deep: ["\ud800"] })).toBe(true)
    expect(check("a\u0000b")).toBe(true)
    expect(check("😀 paired surrogates")).toBe(false)
    expect(check("\\u0000 typed as text")).toBe(false)
  })

  it("nesting is measured in JSON text, brackets inside strings not counted", () => {
    expect(jsonNesting(JSON.stringify({ a: [1, { b: [] }] }))).toBe(4)
    expect(jsonNesting(JSON.stringify({ text: "[[[{{{ \\\" [[" }))).toBe(1)
    expect(jsonNesting(JSON.stringify("flat"))).toBe(0)
    let deep: unknown = 0
    for (let i = 0; i < 1500; i++) deep = [deep]
    expect(jsonNesting(JSON.stringify(deep))).toBe(1500)
  })

  it.scopedLive("are refused as InvalidInput at start, and nothing is written", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(RunstreamTest.layer({ tasks: [Echo], workers: false }))
      const runs = Context.get(ctx, Runs)
      const sql = Context.get(ctx, SqlClient.SqlClient)
      let deep: unknown = 0
      // Deeper than we store, shallower than JSON.stringify's stack allows.
      for (let i = 0; i < maxStoredNesting + 1; i++) deep = [deep]
      for (const input of ["x\udfffy", { a: "\u0000" }, deep]) {
        const error = yield* runs.startMany([{ task: Echo.name, input }]).pipe(Effect.flip)
        expect(error._tag).toBe("InvalidInput")
      }
      const [{ n }] = yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_runs`
      expect(n).toBe(0)
    }))

  it("deeply nested request bodies are measured without recursion", () => {
    const deep = `${"[".repeat(100_000)}1${"]".repeat(100_000)}`
    expect(jsonNesting(deep)).toBeGreaterThan(64)
    expect(jsonNesting(JSON.stringify({ a: [1, { b: 2 }] }))).toBe(3)
    expect(jsonNesting(JSON.stringify("flat"))).toBe(0)
  })
})
