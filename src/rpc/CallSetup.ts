/**
 * How a stream call's handler tells the protocol that its stream is set up.
 *
 * `HttpProtocol` admits stream calls (`Events`, `AllEvents`,
 * `AwaitCompletion`) a few at a time and holds the call's place until it is
 * set up; only the handler knows when that is (`AllEvents` sends nothing
 * until an event comes). The protocol provides this service around the
 * message it hands to the RPC server, and the call's fiber inherits it: the
 * RPC server builds each call's context from the fiber that wrote the request
 * (as its own HTTP protocol passes `HttpServerRequest` to handlers).
 * @since 0.2.0
 */
import { Context, Effect, Option } from "effect"

export class CallSetup extends Context.Tag("runstream/rpc/CallSetup")<CallSetup, {
  /** The call's stream is set up: its place in the admission is free for the next call. */
  readonly done: Effect.Effect<void>
}>() {}

/**
 * Tells the protocol, if any, that the current call is set up. Without
 * `HttpProtocol` (another transport, a test) there is nothing to tell.
 */
export const done: Effect.Effect<void> = Effect.flatMap(
  Effect.serviceOption(CallSetup),
  Option.match({ onNone: () => Effect.void, onSome: (setup) => setup.done })
)
