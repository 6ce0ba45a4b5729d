/**
 * Expected failures of Runstream, as values. Each carries what a caller needs
 * to act on it; the HTTP layer maps each tag to a status and a JSON error.
 * @since 0.1.0
 */
import { Schema } from "effect"

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

/** The input (or another field of a request) failed validation. */
export class InvalidInput extends Schema.TaggedError<InvalidInput>()("InvalidInput", {
  message: Schema.String
}) {}

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
