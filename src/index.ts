/**
 * `runstream`: tasks, runs, the layers of a program, its errors and domain
 * schemas, the HTTP and RPC servers, and the building blocks of one's own
 * entry points (`Programs`, `Main`). The client alone is `runstream/client`;
 * the test kit is `runstream/testing`; the NATS bus is `runstream/nats`.
 * @since 0.1.0
 */
export * as Database from "./Database.ts"
export * as Demo from "./demo/tasks.ts"
export * from "./domain/index.ts"
export { makeRunId } from "./domain/Ids.ts"
export * as EventBus from "./bus/index.ts"
export * as EventLog from "./EventLog.ts"
export * as Main from "./main/Main.ts"
export * as Programs from "./main/Programs.ts"
export * as Outbox from "./Outbox.ts"
export * as OutboxRelay from "./OutboxRelay.ts"
export * as PgListener from "./PgListener.ts"
export * as LeaseReclaim from "./queue/LeaseReclaim.ts"
export * as RunQueue from "./queue/RunQueue.ts"
export * as Retention from "./Retention.ts"
export * as Runs from "./Runs.ts"
export * as Runstream from "./Runstream.ts"
export * as RunStore from "./RunStore.ts"
export * as RunSchedule from "./schedules/RunSchedule.ts"
export * as Schedules from "./schedules/Schedules.ts"
export * as Task from "./Task.ts"
export * as Workers from "./Workers.ts"
export * as RunstreamClient from "./rpc/RunstreamClient.ts"
export * as RunstreamRpcs from "./rpc/RunstreamRpcs.ts"
export * as RunstreamRpcServer from "./rpc/RpcServer.ts"
export * as RunstreamHttp from "./http/Server.ts"
export * as ReadTokens from "./http/ReadTokens.ts"
export * as RunstreamStats from "./Stats.ts"
export * as Metrics from "./metrics/Metrics.ts"
export * as OtlpMetrics from "./metrics/OtlpMetrics.ts"
export * as Tracing from "./tracing/Tracing.ts"
