/**
 * Signals (issue 20): named data sent to a run (`POST /v1/runs/:id/signals/:name`,
 * `Runs.signal`), which its body waits for with `ctx.waitForSignal`.
 * @since 0.5.0
 */
import { Schema } from "effect"

/** The longest signal name. */
export const maxSignalName = 100

/**
 * A signal's name: it is a path segment of the API and part of `waitingFor`
 * (`signal:<name>`), so letters, digits and `_ . : -`, starting with a letter
 * or a digit, at most 100 characters.
 * @category schemas
 */
export const SignalName = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(maxSignalName),
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/, {
    message: () => "a signal name is 1 to 100 letters, digits and _ . : -, starting with a letter or a digit"
  })
).annotations({ identifier: "SignalName" })

/** The answer to a signal. @category schemas */
export const SignalSent = Schema.Struct({
  runId: Schema.String,
  name: Schema.String,
  created: Schema.Boolean.annotations({
    description: "false when a signal of this name was kept before: the first one counts, this one was ignored."
  })
}).annotations({ identifier: "SignalSent" })
export type SignalSent = typeof SignalSent.Type

/**
 * `ctx.waitForSignal` waited until its timeout and no signal had come: a
 * failure of the body's, which it may handle. Journaled (`signal.timedOut`):
 * a later replay fails the same way even if the signal came since.
 */
export class SignalTimeout extends Schema.TaggedError<SignalTimeout>()("SignalTimeout", {
  runId: Schema.String,
  name: Schema.String
}) {
  override get message() {
    return `no signal '${this.name}' came to run ${this.runId} before its timeout`
  }
}

/**
 * The body waits for a signal its task does not declare (`signals` of
 * `Task.make`): no server would accept one (it validates signals by the
 * declaration), so the run would wait for ever. Permanent.
 */
export class SignalNotDeclared extends Schema.TaggedError<SignalNotDeclared>()("SignalNotDeclared", {
  task: Schema.String,
  name: Schema.String
}) {
  override get message() {
    return `task '${this.task}' declares no signal '${this.name}' (add it to the task's \`signals\`)`
  }
}
