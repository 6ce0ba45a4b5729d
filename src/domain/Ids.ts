/**
 * Run identifiers: UUIDv7, so ids sort by creation time (list paging by id is
 * paging by age, and index inserts stay at the right edge of the b-tree).
 * @since 0.1.0
 */
import { Clock, Effect, Schema } from "effect"
import { randomBytes } from "node:crypto"

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** @category schemas */
export const RunId = Schema.String.pipe(
  Schema.pattern(uuidPattern, { message: () => "a run id is a lowercase UUID" }),
  Schema.brand("RunId")
)
export type RunId = typeof RunId.Type

/** A UUIDv7 for the given Unix time in milliseconds. */
export const uuidv7 = (millis: number): string => {
  const bytes = randomBytes(16)
  const ts = BigInt(millis)
  for (let i = 0; i < 6; i++) {
    bytes[i] = Number((ts >> BigInt(8 * (5 - i))) & 0xffn)
  }
  bytes[6] = (bytes[6]! & 0x0f) | 0x70
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const hex = bytes.toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** A fresh, time-ordered run id from the program's clock. */
export const makeRunId: Effect.Effect<RunId> = Effect.map(
  Clock.currentTimeMillis,
  (now) => RunId.make(uuidv7(now))
)

/** A fresh random identifier for a worker or a relay (used in logs and leases). */
export const makeInstanceId = (prefix: string): Effect.Effect<string> =>
  Effect.map(Clock.currentTimeMillis, (now) => `${prefix}-${uuidv7(now).slice(-12)}`)
