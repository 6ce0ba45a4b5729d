/**
 * Request bodies: JSON only, bounded in size, decoded with a schema. A body
 * over the limit is refused (413) without being held in memory: by its
 * `Content-Length` before anything is read, or as soon as the bytes read pass
 * the limit; the rest is drained and dropped so the client still reads the answer.
 * @since 0.1.0
 */
import { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Option, ParseResult, Schema, SchemaAST, Stream } from "effect"
import { Readable } from "node:stream"
import { ApiError, badRequest, invalidInput } from "./ApiError.ts"
import { jsonNesting } from "../internal/jsonb.ts"

const isJsonType = (contentType: string) => /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i.test(contentType.trim())

const tooLarge = (limit: number) =>
  new ApiError({ status: 413, code: "payload_too_large", message: `the request body is over the limit of ${limit} bytes` })

const unreadable = badRequest("invalid_body", "the request body could not be read")

/** Reads a Node request body, keeping at most `limit` bytes. */
const readNode = (message: Readable, limit: number) =>
  Effect.async<Uint8Array, ApiError>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const detach = () => {
      message.off("data", onData)
      message.off("end", onEnd)
      message.off("error", onError)
    }
    function onData(chunk: Buffer) {
      size += chunk.length
      if (size <= limit) {
        chunks.push(chunk)
        return
      }
      detach()
      // Flowing with no listener: the rest is read and dropped. Destroying the
      // request instead would reset the connection before the 413 is read.
      message.resume()
      resume(Effect.fail(tooLarge(limit)))
    }
    function onEnd() {
      detach()
      resume(Effect.succeed(Buffer.concat(chunks)))
    }
    function onError() {
      detach()
      resume(Effect.fail(unreadable))
    }
    message.on("data", onData)
    message.on("end", onEnd)
    message.on("error", onError)
    return Effect.sync(detach)
  })

/** Reads any platform's body, keeping at most `limit` bytes. */
const readStream = (request: HttpServerRequest.HttpServerRequest, limit: number) =>
  request.stream.pipe(
    Stream.runFoldWhile(
      { size: 0, chunks: [] as Array<Uint8Array> },
      (acc) => acc.size <= limit,
      (acc, chunk) => {
        acc.chunks.push(chunk)
        return { size: acc.size + chunk.length, chunks: acc.chunks }
      }
    ),
    Effect.mapError(() => unreadable),
    Effect.filterOrFail((acc) => acc.size <= limit, () => tooLarge(limit)),
    Effect.map((acc) => Buffer.concat(acc.chunks))
  )

const nodeSource = (request: HttpServerRequest.HttpServerRequest) =>
  Option.liftPredicate(NodeHttpServerRequest.toIncomingMessage(request) as unknown, (source) => source instanceof Readable)

/** The request's bytes, refused (413) past `limit`. */
export const bytes = (limit: number) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > limit) return Effect.fail(tooLarge(limit))
    return Option.match(nodeSource(request), {
      onNone: () => readStream(request, limit),
      onSome: (source) => readNode(source as Readable, limit)
    })
  })

/**
 * Deeper JSON is refused: no real input needs it, and recursive code further on
 * (error formatting, logging) would overflow the stack on it.
 */
export const maxNestingDepth = 64

/** The fields of an object schema without index signatures; `undefined` for any other schema. */
const fieldsOf = (ast: SchemaAST.AST): ReadonlySet<PropertyKey> | undefined => {
  switch (ast._tag) {
    case "TypeLiteral":
      return ast.indexSignatures.length === 0 ? new Set(ast.propertySignatures.map((field) => field.name)) : undefined
    case "Refinement":
    case "Transformation":
      return fieldsOf(ast.from)
    default:
      return undefined
  }
}

/**
 * The first top-level key of the JSON text of an object that is not one of
 * `fields`, found in one pass over the text before it is parsed: a megabyte of
 * unknown keys costs a few milliseconds to refuse here, where parsing it (an
 * object of 100,000 properties) takes hundreds and the decoder would then
 * report every one of them. `undefined` also for text this pass cannot read:
 * `JSON.parse` then says what is wrong with it.
 */
export const firstUnknownKey = (json: string, fields: ReadonlySet<PropertyKey>): string | undefined => {
  let depth = 0
  let expectKey = false
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (c === 34) {
      const start = i
      for (i++; i < json.length && json.charCodeAt(i) !== 34; i++) {
        if (json.charCodeAt(i) === 92) i++ // backslash: skip the escaped character
      }
      if (depth === 1 && expectKey) {
        expectKey = false
        let key: unknown
        try {
          key = JSON.parse(json.slice(start, i + 1))
        } catch {
          return undefined
        }
        if (typeof key === "string" && !fields.has(key)) return key
      }
    } else if (c === 123 || c === 91) {
      depth++
      if (depth === 1 && c !== 123) return undefined // not an object
      expectKey = depth === 1
    } else if (c === 125 || c === 93) {
      depth--
    } else if (c === 44 && depth === 1) {
      expectKey = true
    }
  }
  return undefined
}

/** At most this many issues are formatted and reported for one body. */
export const maxIssues = 20

/**
 * The request's JSON body decoded with `schema`. Refuses (nothing is read
 * yet) a body that is not `application/json` (415) or declared over `limit`
 * (413); then malformed JSON (400 `invalid_json`) and values the schema
 * refuses, unknown fields included (400 `invalid_input`).
 */
export const json = <A, I>(schema: Schema.Schema<A, I>, limit: number) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (!isJsonType(request.headers["content-type"] ?? "")) {
      return yield* new ApiError({
        status: 415,
        code: "unsupported_media_type",
        message: "the request body must be JSON, sent with 'Content-Type: application/json'"
      })
    }
    const body = yield* bytes(limit)
    const invalidJson = (error: unknown) =>
      badRequest("invalid_json", `the request body is not valid JSON: ${error instanceof Error ? error.message.slice(0, 200) : "cannot be decoded"}`)
    const text = yield* Effect.try({ try: () => new TextDecoder("utf-8", { fatal: true }).decode(body), catch: invalidJson })
    if (jsonNesting(text) > maxNestingDepth) {
      return yield* badRequest("invalid_json", `the request body is nested deeper than ${maxNestingDepth} levels`)
    }
    const fields = fieldsOf(schema.ast)
    const unknownKey = fields === undefined ? undefined : firstUnknownKey(text, fields)
    if (unknownKey !== undefined) return yield* invalidInput([{ path: [unknownKey.slice(0, 100)], message: "is unexpected" }])
    const value = yield* Effect.try({ try: (): unknown => JSON.parse(text), catch: invalidJson })
    return yield* Schema.decodeUnknown(schema, { errors: "all", onExcessProperty: "error" })(value).pipe(
      Effect.mapError((error) => invalidInput(ParseResult.ArrayFormatter.formatErrorSync(error).slice(0, maxIssues)))
    )
  })
