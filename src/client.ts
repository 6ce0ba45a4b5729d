/**
 * `runstream/client`: the typed client of a Runstream server's `POST /rpc`,
 * and the domain's schemas and errors. Nothing here loads a server module,
 * `pg` or Node built-ins (a test bundles it for the browser), so a browser
 * bundle or another service can import it alone.
 * @since 0.1.0
 */
export * from "./domain/index.ts"
export * as RunstreamClient from "./rpc/RunstreamClient.ts"
export * as RunstreamRpcs from "./rpc/RunstreamRpcs.ts"
export { EventPage, RunPage, ShuttingDown, Started, TooManyStreams, Unavailable } from "./rpc/RunstreamRpcs.ts"
export { Unauthorized } from "./rpc/RunstreamClient.ts"
