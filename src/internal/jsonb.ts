/**
 * What Postgres `jsonb` can store. It cannot hold U+0000 nor a lone UTF-16
 * surrogate (which `JSON.stringify` writes as a `\udXXX` escape), and
 * `JSON.stringify` itself throws on cycles, BigInts and nesting deep enough to
 * overflow the stack. Callers refuse such values up front with a clear error
 * rather than meet a database error, or a crash, later.
 */
import { Either, Schema } from "effect"
import { InvalidInput } from "../domain/Errors.ts"

export const unstorableInJsonb = (json: string): boolean => /(^|[^\\])(\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/i.test(json)

/**
 * Postgres refuses jsonb nested beyond somewhere between 10,000 and 20,000
 * levels ("stack depth limit exceeded", PostgreSQL 15 defaults), and a refused
 * value fails the whole statement it is in (a group commit: other runs' writes).
 * We refuse far below that; no real event or output needs more.
 */
export const maxStoredNesting = 1000

/** How deeply arrays and objects nest in JSON text (strings skipped; one pass, no recursion). */
export const jsonNesting = (json: string): number => {
  let depth = 0
  let deepest = 0
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) {
      inString = true
    } else if (c === 91 || c === 123) {
      if (++depth > deepest) deepest = depth
    } else if (c === 93 || c === 125) {
      depth--
    }
  }
  return deepest
}

/**
 * The JSON text of `value`, or `InvalidInput` naming `what` when it has none or
 * Postgres could not store it. An `Either` (yieldable as an effect): it runs
 * for every emit and output, and costs no effect steps.
 */
export const storableJson = (what: string, value: unknown): Either.Either<string, InvalidInput> => {
  let json: string
  try {
    json = JSON.stringify(value ?? null)
  } catch (error) {
    return Either.left(
      new InvalidInput({
        message: `${what} cannot be written as JSON: ${error instanceof Error ? error.message : String(error)}`.slice(0, 500)
      })
    )
  }
  if (unstorableInJsonb(json)) {
    return Either.left(new InvalidInput({ message: `${what}: strings may not contain U+0000 or unpaired surrogates` }))
  }
  if (jsonNesting(json) > maxStoredNesting) {
    return Either.left(new InvalidInput({ message: `${what} is nested deeper than ${maxStoredNesting} levels` }))
  }
  return Either.right(json)
}

/** Text with the characters Postgres cannot store replaced (for messages we record, not user data). */
export const storableText = (text: string): string =>
  text.replace(/\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")

/** A string Postgres can store; anything else is bad input (a 400, not a database error). */
export const StorableString = Schema.String.pipe(
  Schema.filter((s) => !unstorableInJsonb(JSON.stringify(s)), { message: () => "may not contain U+0000 or unpaired surrogates" })
)
