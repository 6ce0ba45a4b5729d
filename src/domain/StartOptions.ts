/**
 * The options of a start, as every surface receives them (Runs, REST, RPC and
 * the client), so that the client needs no server module to encode them.
 * @since 0.1.0
 */
import { Schema } from "effect"
import { StorableString } from "../internal/jsonb.ts"

/** Options of a start; every field is checked and bounded. */
export const StartOptions = Schema.Struct({
  idempotencyKey: Schema.optional(StorableString.pipe(Schema.minLength(1), Schema.maxLength(200))),
  queue: Schema.optional(Schema.String.pipe(
    Schema.pattern(/^[A-Za-z0-9._-]{1,100}$/, { message: () => "a queue name is 1-100 of A-Z a-z 0-9 . _ -" })
  )),
  priority: Schema.optional(Schema.Int.pipe(Schema.between(-1_000_000, 1_000_000))),
  runAt: Schema.optional(Schema.DateTimeUtc),
  maxAttempts: Schema.optional(Schema.Int.pipe(Schema.between(1, 100))),
  timeoutMs: Schema.optional(Schema.Int.pipe(Schema.between(1, 24 * 60 * 60 * 1000)))
})
export type StartOptions = typeof StartOptions.Type
