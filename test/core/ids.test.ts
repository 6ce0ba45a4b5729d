import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { RunId, uuidv7 } from "../../src/domain/Ids.ts"

describe("run ids", () => {
  it("are UUIDv7: the time in the first 48 bits, version 7, RFC 4122 variant, lowercase", () => {
    const millis = Date.UTC(2026, 10, 29, 20, 30, 0, 123)
    const id = uuidv7(millis)
    expect(Schema.is(RunId)(id)).toBe(true)
    expect(id[14]).toBe("7")
    expect("89ab").toContain(id[19])
    expect(parseInt(id.slice(0, 8) + id.slice(9, 13), 16)).toBe(millis)
  })

  it("sort by time, and never repeat within a millisecond", () => {
    const times = [0, 1, 255, 256, 65_535, Date.UTC(2000, 0, 1), Date.UTC(2026, 10, 29), 2 ** 48 - 1]
    const ids = times.map(uuidv7)
    expect([...ids].sort()).toEqual(ids)
    const same = new Set(Array.from({ length: 10_000 }, () => uuidv7(1_764_000_000_000)))
    expect(same.size).toBe(10_000)
  })
})
