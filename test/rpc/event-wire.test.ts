/**
 * `RunEventWire`, the RPC streams' hand-written codec of `RunEvent`, against
 * `RunEvent`'s own schema: the same JSON out, the same values in, and a
 * refusal for exactly the inputs the schema refuses.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import * as fc from "fast-check"
import { makeRunEvent, RunEvent, RunEventWire } from "../../src/domain/RunEvent.ts"

const schemaDecode = Schema.decodeUnknownEither(RunEvent)
const wireDecode = Schema.decodeUnknownEither(RunEventWire)
const schemaEncode = Schema.encodeEither(RunEvent)
const wireEncode = Schema.encodeEither(RunEventWire)

const runId = fc.uuid().map((id) => id.toLowerCase())
const validJson = fc.record({
  runId,
  seq: fc.integer({ min: 0 }),
  type: fc.string(),
  data: fc.jsonValue(),
  at: fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }).map((d) => d.toISOString())
})

/** Near misses: each field replaced by another JSON value, or left out (JSON has no `undefined`). */
const oddJson = fc.tuple(validJson, fc.constantFrom("runId", "seq", "type", "data", "at"), fc.oneof(
  fc.jsonValue(),
  fc.constantFrom("", "2024-02-30T00:00:00Z", "2024-01-01", "not a date", 1.5, -1, 2 ** 53, Number.NaN, "ABCDEF00-0000-7000-8000-000000000000")
), fc.boolean()).map(([valid, key, value, drop]) => {
  const copy: Record<string, unknown> = { ...valid }
  if (drop) delete copy[key]
  else copy[key] = value
  return copy
})

/** A missing `data` decodes to `null` on the wire (to `undefined` by the schema): events in the log always have it. */
const plain = (event: RunEvent) => ({ runId: event.runId, seq: event.seq, type: event.type, data: event.data ?? null, at: event.at.epochMillis })

describe("RunEventWire", () => {
  it("encodes every event to the JSON RunEvent's schema encodes", () => {
    fc.assert(fc.property(validJson, (json) => {
      const event = Either.getOrThrow(schemaDecode(json))
      expect(wireEncode(event)).toEqual(schemaEncode(event))
    }), { numRuns: 2000 })
  })

  it("decodes what RunEvent's schema decodes, to the same event, and refuses what it refuses", () => {
    fc.assert(fc.property(fc.oneof(validJson, oddJson, fc.jsonValue()), (input) => {
      const bySchema = schemaDecode(input)
      const byWire = wireDecode(input)
      expect(Either.isRight(byWire), JSON.stringify(input)).toBe(Either.isRight(bySchema))
      if (Either.isRight(byWire) && Either.isRight(bySchema)) {
        expect(byWire.right).toBeInstanceOf(RunEvent)
        expect(plain(byWire.right)).toEqual(plain(bySchema.right))
      }
    }), { numRuns: 5000 })
  })

  it("says which field is wrong", () => {
    const bad = { runId: "not-a-uuid", seq: 1, type: "t", data: null, at: "2024-01-01T00:00:00.000Z" }
    const failure = wireDecode(bad)
    expect(Either.isLeft(failure) && failure.left.message).toContain("runId")
    expect(Either.isLeft(wireEncode({ seq: 1 } as unknown as RunEvent))).toBe(true)
    const event = makeRunEvent("0193a4e0-0000-7000-8000-000000000001" as RunEvent["runId"], 1, "t", undefined, 0)
    expect(Either.getOrThrow(wireEncode(event))).toEqual({ runId: event.runId, seq: 1, type: "t", data: null, at: "1970-01-01T00:00:00.000Z" })
  })
})
