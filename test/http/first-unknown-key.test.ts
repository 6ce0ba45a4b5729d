import { describe, expect, it } from "@effect/vitest"
import { firstUnknownKey } from "../../src/http/RequestBody.ts"

const fields = new Set(["task", "input", "runAt"])

describe("RequestBody.firstUnknownKey", () => {
  it("names the first top-level key that is not a field, and no nested one", () => {
    expect(firstUnknownKey(`{"task":"a","input":{"x":[1,{"y":2}],"z":"}"},"k0":1,"k1":2}`, fields)).toBe("k0")
    expect(firstUnknownKey(`{"task":"a,\\"b\\":","input":["c",{"d":1}]}`, fields)).toBeUndefined()
    expect(firstUnknownKey(` { "ta\\u0073k" : 1 , "r\\u0075nAt":2, "\\u006b":3}`, fields)).toBe("k")
  })

  it("leaves what is no object, or no JSON, to the parser", () => {
    expect(firstUnknownKey(`[{"k0":1}]`, fields)).toBeUndefined()
    expect(firstUnknownKey(`"k0"`, fields)).toBeUndefined()
    expect(firstUnknownKey(`{"task": `, fields)).toBeUndefined()
    expect(firstUnknownKey(`{"\\x":1}`, fields)).toBeUndefined()
  })
})
