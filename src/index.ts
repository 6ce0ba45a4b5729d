/**
 * Runstream: durable runs with live, resumable event streams, on Postgres.
 * @since 0.1.0
 */
export * as Database from "./Database.ts"
export * as Demo from "./demo/tasks.ts"
export * from "./domain/Errors.ts"
export { makeRunId, RunId } from "./domain/Ids.ts"
export { isFinished, Run, RunError, RunStatus } from "./domain/Run.ts"
export { isTerminalType, RunEvent, SystemEventType } from "./domain/RunEvent.ts"
export * as EventBus from "./EventBus.ts"
export * as EventLog from "./EventLog.ts"
export * as Outbox from "./Outbox.ts"
export * as OutboxRelay from "./OutboxRelay.ts"
export * as PgListener from "./PgListener.ts"
export * as Queue from "./Queue.ts"
export * as Runs from "./Runs.ts"
export * as Runstream from "./Runstream.ts"
export * as RunStore from "./RunStore.ts"
export * as Task from "./Task.ts"
export * as Workers from "./Workers.ts"
export * as RunstreamClient from "./rpc/RunstreamClient.ts"
export * as RunstreamRpcs from "./rpc/RunstreamRpcs.ts"
export * as RunstreamRpcServer from "./rpc/RpcServer.ts"
