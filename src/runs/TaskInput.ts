/**
 * A task's input as a start stores it, for every way a run is started (a
 * start, a schedule's definition): decoded unless typed, encoded, storable,
 * within the size limit; and the key of its task's limits taken from it.
 * @since 0.4.0
 */
import { Effect, Either, Schema } from "effect"
import { InvalidInput, PayloadTooLarge } from "../domain/Errors.ts"
import * as LimitKey from "../domain/LimitKey.ts"
import { storableJson } from "../internal/jsonb.ts"
import * as Task from "../Task.ts"

// Every fault of a refused input is reported (bounded), not only the first.
const allErrors = { errors: "all" } as const

/** The input as it is stored: the encoded side of the task's schema (decoded first unless `typed`). */
export const encode = (task: Task.Any, input: unknown, typed: boolean, maxInputBytes: number) =>
  Effect.gen(function*() {
    const encoded = typed
      ? yield* Schema.encodeUnknown(task.input, allErrors)(input)
      : yield* Schema.encodeUnknown(task.input, allErrors)(yield* Schema.decodeUnknown(task.input, allErrors)(input))
    const json = yield* storableJson("input", encoded)
    const bytes = Buffer.byteLength(json)
    if (bytes > maxInputBytes) {
      return yield* new PayloadTooLarge({ what: "input", bytes, limit: maxInputBytes })
    }
    return encoded
  }).pipe(
    Effect.catchTag("ParseError", (error) => Effect.fail(InvalidInput.fromParseError(`input of task '${task.name}'`, error)))
  )

/**
 * The key of a start without a `concurrencyKey`: the input field its task's
 * limits name (read from the encoded input, what every surface sends), or
 * undefined when they name none.
 */
export const limitKey = (task: Task.Any, encoded: unknown): Either.Either<string | undefined, InvalidInput> => {
  const field = Task.limitKeyField(task)
  return field === undefined ? Either.right(undefined) : LimitKey.fromInput(task.name, field, encoded)
}
