/**
 * Expected failures of Runstream, as values. Each carries what a caller needs
 * to act on it; the HTTP layer maps each tag to a status and a JSON error.
 * @since 0.1.0
 */
import { ParseResult, Schema } from "effect"

/** No run with this id exists (in this program's database). */
export class RunNotFound extends Schema.TaggedError<RunNotFound>()("RunNotFound", {
  runId: Schema.String
}) {
  override get message() {
    return `run ${this.runId} does not exist`
  }
}

/** The task named in a start request is not registered. */
export class UnknownTask extends Schema.TaggedError<UnknownTask>()("UnknownTask", {
  task: Schema.String
}) {
  override get message() {
    return `task '${this.task}' is not registered`
  }
}

/** One thing wrong with a value: where (keys and indexes from the top) and what. */
export const InputIssue = Schema.Struct({
  path: Schema.Array(Schema.Union(Schema.String, Schema.Number)),
  message: Schema.String
}).annotations({ identifier: "InputIssue" })

/** The most issues an error lists, and the longest message and path segment it keeps. */
export const issueBounds = { issues: 20, message: 300, segment: 100, depth: 32 } as const

/** `text`, cut to `length` characters (and an ellipsis) when longer: for values quoted in messages. */
export const clip = (text: string, length: number) => text.length > length ? `${text.slice(0, length)}…` : text

/** One issue as a line of a message: `to: Expected number, actual "x"` (`value: …` at the top). */
export const describeIssue = (issue: typeof InputIssue.Type) =>
  `${issue.path.length === 0 ? "value" : issue.path.join(".")}: ${issue.message}`

/**
 * Issues as a client reads them: bounded (a huge input gives no huge error),
 * paths of strings and numbers only. An optional field's union with
 * `undefined` adds an "Expected undefined" issue beside the real one: it is
 * left out.
 */
export const boundedIssues = (
  issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>
): Array<typeof InputIssue.Type> => {
  const at = (path: ReadonlyArray<PropertyKey>) => path.map(String).join("\u0000")
  // At the same path, or inside it (an optional struct whose field is wrong).
  const within = (other: string, path: string) => other === path || other.startsWith(`${path}\u0000`)
  const relevant = issues.filter((issue) =>
    !issue.message.startsWith("Expected undefined") ||
    !issues.some((other) => other !== issue && within(at(other.path), at(issue.path)))
  )
  return relevant.slice(0, issueBounds.issues).map((issue) => ({
    path: issue.path.slice(0, issueBounds.depth).map((key) =>
      typeof key === "number" ? key : clip(String(key), issueBounds.segment)
    ),
    message: clip(issue.message, issueBounds.message)
  }))
}

/**
 * The input (or another field of a request) failed validation. `message` is
 * for humans; `issues`, when the value failed a schema, says field by field
 * what is wrong.
 */
export class InvalidInput extends Schema.TaggedError<InvalidInput>()("InvalidInput", {
  message: Schema.String,
  issues: Schema.optional(Schema.Array(InputIssue))
}) {
  /**
   * `what` (e.g. "input of task 'x'") failed its schema. The message names the
   * first few issues in one line (`to: Expected number, actual "x"`), not
   * Schema's tree, which grows with the schema and the input.
   */
  static fromParseError(what: string, error: ParseResult.ParseError): InvalidInput {
    const all = ParseResult.ArrayFormatter.formatErrorSync(error)
    const issues = boundedIssues(all)
    const shown = issues.slice(0, 3).map(describeIssue)
    const more = all.length > shown.length ? ` (and ${all.length - shown.length} more)` : ""
    return new InvalidInput({ message: `${what} is invalid: ${shown.join("; ")}${more}`, issues })
  }
}

/**
 * The idempotency key was already used by a run of another task or with
 * another input: the start is refused rather than answered with that run.
 */
export class IdempotencyConflict extends Schema.TaggedError<IdempotencyConflict>()("IdempotencyConflict", {
  idempotencyKey: Schema.String,
  /** The run that holds the key; none when the key came twice in one batch. */
  runId: Schema.optional(Schema.String)
}) {
  override get message() {
    return this.runId === undefined
      ? `idempotency key '${this.idempotencyKey}' is given twice in this batch with different tasks or inputs`
      : `idempotency key '${this.idempotencyKey}' was used by run ${this.runId} with another task or input`
  }
}

/** A value is larger than the configured limit. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  what: Schema.String,
  bytes: Schema.Number,
  limit: Schema.Number
}) {
  override get message() {
    return `${this.what} is ${this.bytes} bytes, over the limit of ${this.limit}`
  }
}

/** The run is already finished, so it cannot be cancelled. */
export class RunAlreadyFinished extends Schema.TaggedError<RunAlreadyFinished>()("RunAlreadyFinished", {
  runId: Schema.String,
  status: Schema.String
}) {
  override get message() {
    return `run ${this.runId} is already ${this.status}`
  }
}

/** A paging cursor that this server did not produce (or that was tampered with). */
export class InvalidCursor extends Schema.TaggedError<InvalidCursor>()("InvalidCursor", {
  cursor: Schema.String
}) {
  override get message() {
    return "the cursor is not one this server produced"
  }
}

/**
 * The worker no longer holds the attempt it is writing for: its lease was
 * reclaimed, or the run was cancelled or finished. Fencing: such writes are refused.
 */
export class LeaseLost extends Schema.TaggedError<LeaseLost>()("LeaseLost", {
  runId: Schema.String,
  attempt: Schema.Number
}) {
  override get message() {
    return `attempt ${this.attempt} of run ${this.runId} no longer holds its lease`
  }
}

/** `awaitCompletion` gave up before the run finished. */
export class AwaitTimeout extends Schema.TaggedError<AwaitTimeout>()("AwaitTimeout", {
  runId: Schema.String
}) {
  override get message() {
    return `run ${this.runId} did not finish in time`
  }
}

/** Read tokens are off: the server has no `RUNSTREAM_TOKEN_SECRET`. */
export class TokensDisabled extends Schema.TaggedError<TokensDisabled>()("TokensDisabled", {}) {
  override get message() {
    return "read tokens are disabled on this server: set RUNSTREAM_TOKEN_SECRET (the same on every server process) to enable them"
  }
}

/**
 * A run's replay does not match its journal (its `step.completed` events):
 * the code of its task changed between attempts (a step renamed, added before
 * others, removed or reordered, or its output schema no longer decodes what
 * was recorded). The run fails for good rather than mix two versions' results.
 */
export class NonDeterministic extends Schema.TaggedError<NonDeterministic>()("NonDeterministic", {
  runId: Schema.String,
  /** The step's place among the attempt's steps, from 0, in the order the body called them. */
  position: Schema.Number,
  /** The step the body called there. */
  step: Schema.String,
  /** What the journal holds there (or the recorded output's decoding error). */
  message: Schema.String
}) {}

/**
 * A body called a step by a name it already used in this run: step names are
 * unique per run (the journal finds a step's result by its name; in a loop,
 * put the index in the name).
 */
export class DuplicateStep extends Schema.TaggedError<DuplicateStep>()("DuplicateStep", {
  runId: Schema.String,
  step: Schema.String
}) {
  override get message() {
    return `step '${this.step}' is called twice in run ${this.runId}: step names are unique per run`
  }
}
