/**
 * A child run awaited by its parent (`ctx.await`, `ctx.all`) ended without a
 * result: it failed, or it was cancelled. The parent's body sees it as a
 * typed failure it can handle (`Effect.catchTag("ChildFailed", ...)`);
 * unhandled, it fails the parent run for good (a retry would replay the same
 * journaled result: no retry can cure it).
 * @since 0.3.0
 */
import { Schema } from "effect"
import { RunStatus } from "./Run.ts"

export class ChildFailed extends Schema.TaggedError<ChildFailed>()("ChildFailed", {
  /** The child run's id. */
  childId: Schema.String,
  /** The child's name in its parent's journal (`ctx.start`'s `name`, else `#<position>`). */
  name: Schema.String,
  task: Schema.String,
  /** `failed` or `cancelled`. */
  status: RunStatus,
  /** The child's recorded error (`RunError`'s tag and message); for a cancelled child, `Cancelled`. */
  error: Schema.Struct({ tag: Schema.String, message: Schema.String })
}) {
  override get message() {
    return `child run ${this.childId} ('${this.name}', ${this.task}) ${this.status}: ${this.error.tag}: ${this.error.message}`
  }
}
