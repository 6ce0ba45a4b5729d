/**
 * The key of a task's limits taken from its input: `concurrency: { limit, key: "tenant" }`
 * (or `rateLimit: { ..., key }`) makes a start without a `concurrencyKey`
 * count under the value of the input's field `tenant`. Both limits count in
 * one row per (task, key) (`queue/Limits.ts`), so a task has one such field:
 * declared on either limit, it keys both, and declared on both it must be the
 * same. A start's explicit `concurrencyKey` wins.
 * @since 0.4.0
 */
import { Either, ParseResult, Schema, SchemaAST } from "effect"
import { clip, InvalidInput } from "./Errors.ts"
import { ConcurrencyKey } from "./StartOptions.ts"

/** The `key` of each limit, as `Task.make` was given them. */
export interface Declared {
  readonly concurrency: unknown
  readonly rateLimit: unknown
}

/** The fields a definition gives: `key` of `concurrency` and of `rateLimit`, when they exist. */
export const fromDefinition = (options: {
  readonly concurrency?: { readonly key?: string | undefined } | undefined
  readonly rateLimit?: { readonly key?: string | undefined } | undefined
}): Declared => ({ concurrency: options.concurrency?.key, rateLimit: options.rateLimit?.key })

/** The longest field name a key may name (longer is no field anyone wrote by hand). */
const maxFieldLength = 200

const isFieldName = (key: unknown): key is string =>
  typeof key === "string" && key.length >= 1 && key.length <= maxFieldLength

/**
 * The one input field of a checked declaration, or undefined when neither
 * limit names one (starts without a `concurrencyKey` then share the key "").
 */
export const fieldOf = (declared: Declared): string | undefined =>
  isFieldName(declared.concurrency) ? declared.concurrency : isFieldName(declared.rateLimit) ? declared.rateLimit : undefined

/**
 * The names of the fields an input schema's encoded side (what a start sends)
 * surely has, or undefined when it is not a plain struct (a union, a record, a
 * declared type...): then the field is looked for in each start's input only.
 */
const structFields = (schema: Schema.Schema.Any): ReadonlyArray<PropertyKey> | undefined => {
  const ast = SchemaAST.encodedAST(schema.ast)
  return SchemaAST.isTypeLiteral(ast) && ast.indexSignatures.length === 0
    ? ast.propertySignatures.map((signature) => signature.name)
    : undefined
}

/**
 * Why a declaration is refused, if it is: a `key` that is not a field name, two
 * different fields, or a field a struct input does not have. Checked when a
 * registry is built, so that a bad definition stops the program at start-up.
 */
export const check = (declared: Declared, input: Schema.Schema.Any): string | undefined => {
  for (const limit of ["concurrency", "rateLimit"] as const) {
    const key = declared[limit]
    if (key !== undefined && !isFieldName(key)) {
      return `${limit}.key must name a field of the input (1-${maxFieldLength} characters), got ${
        typeof key === "string" ? JSON.stringify(key) : typeof key
      }`
    }
  }
  if (declared.concurrency !== undefined && declared.rateLimit !== undefined && declared.concurrency !== declared.rateLimit) {
    return `concurrency.key ('${declared.concurrency}') and rateLimit.key ('${declared.rateLimit}') must name the same input field: ` +
      "both limits count runs in one row per key"
  }
  const field = fieldOf(declared)
  const fields = structFields(input)
  if (field !== undefined && fields !== undefined && !fields.includes(field)) {
    return `${declared.concurrency === undefined ? "rateLimit" : "concurrency"}.key '${field}' is not a field of the input ` +
      `(its fields: ${fields.map(String).join(", ") || "none"})`
  }
  return undefined
}

const decodeKey = Schema.decodeUnknownEither(ConcurrencyKey)

const shown = (value: unknown) =>
  value === undefined ? "missing" : clip(typeof value === "string" ? JSON.stringify(value) : typeof value, 60)

/**
 * The key of a start without a `concurrencyKey`, from `field` of its encoded
 * input (the JSON a start sends): a string as it is, an integer as its
 * decimal text; else (missing, another type, a string that is no key)
 * `InvalidInput` naming the field. An `Either`: it costs no effect step.
 */
export const fromInput = (task: string, field: string, input: unknown): Either.Either<string, InvalidInput> => {
  const value = typeof input === "object" && input !== null && !Array.isArray(input) && Object.hasOwn(input, field)
    ? (input as Record<string, unknown>)[field]
    : undefined
  const text = typeof value === "string" ? value : Number.isSafeInteger(value) ? String(value) : undefined
  const refused = (why: string) => {
    const message = `the key of the task's limits ${why}`
    return new InvalidInput({ message: `input of task '${task}' is invalid: ${field}: ${message}`, issues: [{ path: [field], message }] })
  }
  if (text === undefined) return Either.left(refused(`must be a string or an integer (actual: ${shown(value)})`))
  return Either.mapLeft(decodeKey(text), (error) => {
    const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
    return refused(`is refused: ${issue?.message ?? "not a key"}`)
  })
}
