/**
 * The `@effect/rpc` surface: the contract, the server side, and the client.
 * @since 0.1.0
 */
export * as RpcServer from "./RpcServer.ts"
export * as RunstreamClient from "./RunstreamClient.ts"
export * as RunstreamRpcs from "./RunstreamRpcs.ts"
