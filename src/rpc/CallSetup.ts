/**
 * How a stream call's handler tells the protocol that its stream is set up,
 * or that it was refused for the process's stream budget.
 *
 * `HttpProtocol` admits stream calls (`Events`, `AllEvents`,
 * `AwaitCompletion`) a few at a time and holds the call's place until it is
 * set up; only the handler knows when that is (`AllEvents` sends nothing
 * until an event comes). It also ends a request whose stream calls keep
 * being refused for the budget (each refusal is cheap, and a body of them
 * never ends). The protocol provides this service around the message it
 * hands to the RPC server, and the call's fiber inherits it: the RPC server
 * builds each call's context from the fiber that wrote the request (as its
 * own HTTP protocol passes `HttpServerRequest` to handlers).
 * @since 0.2.0
 */
import { Context, Effect, Option } from "effect"

export class CallSetup extends Context.Tag("runstream/rpc/CallSetup")<CallSetup, {
  /** The call's stream is set up: its place in the admission is free for the next call. */
  readonly done: Effect.Effect<void>
  /** The call was refused for the stream budget (`TooManyStreams`). */
  readonly overBudget: Effect.Effect<void>
}>() {}

const tell = (what: (setup: CallSetup["Type"]) => Effect.Effect<void>): Effect.Effect<void> =>
  Effect.flatMap(
    Effect.serviceOption(CallSetup),
    Option.match({ onNone: () => Effect.void, onSome: what })
  )

/**
 * Tells the protocol, if any, that the current call is set up. Without
 * `HttpProtocol` (another transport, a test) there is nothing to tell.
 */
export const done: Effect.Effect<void> = tell((setup) => setup.done)

/** Tells the protocol, if any, that the current call was refused for the stream budget. */
export const overBudget: Effect.Effect<void> = tell((setup) => setup.overBudget)
