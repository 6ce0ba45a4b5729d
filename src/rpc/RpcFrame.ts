/**
 * One NDJSON line of `POST /rpc`, checked before the RPC server sees it: valid
 * UTF-8 JSON, shallow, an object with a known `_tag`, a short request id, a
 * known RPC and headers as string pairs. Everything here is one linear pass
 * over a line already bounded in size; the library's own decoding would turn a
 * 16-million-digit id into a `BigInt` (quadratic) and answer bad headers with
 * a 500.
 * @since 0.1.0
 */
import type { RpcMessage } from "@effect/rpc"
import { Either, Predicate, Schema } from "effect"
import { jsonNesting } from "../internal/jsonb.ts"

/**
 * A message (or a body) the protocol refuses. Before any answer was sent it
 * becomes the HTTP status and `{"error": {code, message}}`; after, a protocol
 * `Defect` that ends the answer.
 * @category errors
 */
export class FrameRefused extends Schema.TaggedError<FrameRefused>()("FrameRefused", {
  status: Schema.Int,
  code: Schema.String,
  message: Schema.String
}) {}

/** @category constructors */
export const invalidMessage = (message: string) => new FrameRefused({ status: 400, code: "invalid_rpc_message", message })

/** @category constructors */
export const tooLarge = (limit: number) =>
  new FrameRefused({
    status: 413,
    code: "payload_too_large",
    message: `an RPC message is over the limit of ${limit} bytes (RUNSTREAM_MAX_BODY_BYTES)`
  })

/** Request ids are decimal strings of at most 20 digits: every 64-bit counter fits. */
export const maxIdDigits = 20
const requestId = new RegExp(`^[0-9]{1,${maxIdDigits}}$`)

/** Deeper JSON is refused, as on the REST side: recursive code further on would pay for it. */
export const maxNestingDepth = 64

/** More headers than this in one message are refused. */
export const maxHeaders = 64

/** The id in its canonical form ("007" and "7" name one request for the server). */
const checkId = (id: unknown, field: string): Either.Either<string, FrameRefused> =>
  typeof id === "string" && requestId.test(id)
    ? Either.right(BigInt(id).toString())
    : Either.left(invalidMessage(`${field} must be a string of 1 to ${maxIdDigits} decimal digits`))

const isHeaders = (headers: unknown): headers is ReadonlyArray<[string, string]> =>
  Array.isArray(headers) && headers.length <= maxHeaders && headers.every((pair) =>
    Array.isArray(pair) && pair.length === 2 && typeof pair[0] === "string" && typeof pair[1] === "string"
  )

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** A line that holds only whitespace (blank lines between messages are skipped). */
export const isBlank = (line: Uint8Array) => line.every((byte) => byte === 32 || byte === 9 || byte === 13)

/**
 * The message of one line, checked against the RPCs the server has (`tags`).
 * A client's `Eof` is passed on as is: the transport decides what it means.
 */
export const decode = (
  line: Uint8Array,
  tags: ReadonlySet<string>
): Either.Either<RpcMessage.FromClientEncoded, FrameRefused> => {
  let text: string
  try {
    text = utf8.decode(line)
  } catch {
    return Either.left(new FrameRefused({ status: 400, code: "invalid_json", message: "an RPC message is not valid UTF-8" }))
  }
  if (jsonNesting(text) > maxNestingDepth) {
    return Either.left(
      new FrameRefused({ status: 400, code: "invalid_json", message: `an RPC message is nested deeper than ${maxNestingDepth} levels` })
    )
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    const reason = error instanceof Error ? error.message.slice(0, 200) : "cannot be parsed"
    return Either.left(new FrameRefused({ status: 400, code: "invalid_json", message: `an RPC message is not valid JSON: ${reason}` }))
  }
  if (!Predicate.isRecord(value)) return Either.left(invalidMessage("an RPC message must be a JSON object"))
  switch (value._tag) {
    case "Request": {
      const { headers, payload, tag } = value
      if (typeof tag !== "string" || !tags.has(tag)) {
        return Either.left(invalidMessage(`'tag' must name one of the RPCs: ${[...tags].join(", ")}`))
      }
      if (!isHeaders(headers)) {
        return Either.left(invalidMessage(`'headers' must be an array of at most ${maxHeaders} [name, value] string pairs`))
      }
      return Either.map(checkId(value.id, "'id'"), (id) => ({ _tag: "Request" as const, id, tag, payload, headers }))
    }
    case "Ack":
    case "Interrupt": {
      const tag = value._tag
      return Either.map(checkId(value.requestId, "'requestId'"), (requestId) => ({ _tag: tag, requestId }))
    }
    case "Ping":
      return Either.right({ _tag: "Ping" })
    case "Eof":
      return Either.right({ _tag: "Eof" })
    default:
      return Either.left(invalidMessage("'_tag' must be one of Request, Interrupt, Ack, Ping, Eof"))
  }
}
