/**
 * Scoped read tokens: what `POST /v1/tokens` takes and answers. A token lets
 * a client without the API key (a browser's `EventSource`) read one run, or
 * the runs of one task, until it expires.
 * @since 0.3.0
 */
import { Schema } from "effect"
import { StorableString } from "../internal/jsonb.ts"
import { RunId } from "./Ids.ts"

/** The bounds of a token's life, in seconds. */
export const ttlBounds = { min: 1, max: 24 * 60 * 60 } as const

/** @category schemas */
export const TokenRequest = Schema.Struct({
  runId: Schema.optional(RunId).annotations({ description: "The run the token reads (its JSON, events and stream)." }),
  task: Schema.optional(StorableString.pipe(Schema.minLength(1), Schema.maxLength(200))).annotations({
    description: "The task whose runs the token reads (the list filtered to it, each run, its events and stream, `/v1/events?task=`)."
  }),
  ttlSeconds: Schema.Int.pipe(Schema.between(ttlBounds.min, ttlBounds.max)).annotations({
    description: `How long the token is accepted, ${ttlBounds.min} to ${ttlBounds.max} seconds.`
  })
}).pipe(
  Schema.filter((request) => (request.runId === undefined) !== (request.task === undefined), {
    message: () => "give exactly one of runId and task"
  })
).annotations({ identifier: "TokenRequest" })
export type TokenRequest = typeof TokenRequest.Type

/** @category schemas */
export const ReadToken = Schema.Struct({
  token: Schema.String.annotations({ description: "Pass as `?token=` on the GET routes of its scope." }),
  expiresAt: Schema.DateTimeUtc
}).annotations({ identifier: "ReadToken" })
export type ReadToken = typeof ReadToken.Type
