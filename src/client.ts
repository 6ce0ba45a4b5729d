/**
 * `runstream/client`: the typed client of a Runstream server's `POST /rpc`,
 * and the domain's schemas and errors. Nothing here loads a server module,
 * `pg` or Node built-ins (a test bundles it for the browser), so a browser
 * bundle or another service can import it alone.
 * @since 0.1.0
 */
export * from "./domain/Errors.ts"
export { RunId } from "./domain/Ids.ts"
export { isFinished, Run, RunError, RunStatus } from "./domain/Run.ts"
export { isTerminalType, RunEvent, SystemEventType } from "./domain/RunEvent.ts"
export { ReadToken, TokenRequest } from "./domain/ReadToken.ts"
export { isRunIdPrefix, RunFilter, RunIdPrefix } from "./domain/RunFilter.ts"
export {
  CatchUp,
  InvalidSchedule,
  ScheduleDeclaredInCode,
  ScheduleDefinition,
  ScheduleDetail,
  ScheduledRun,
  ScheduleExists,
  ScheduleInfo,
  ScheduleName,
  ScheduleNotFound,
  ScheduleOptions,
  SchedulePatch,
  ScheduleSource
} from "./domain/Schedule.ts"
export { StartOptions } from "./domain/StartOptions.ts"
export { Stats } from "./domain/Stats.ts"
export { TaskInfo, TaskList } from "./domain/TaskInfo.ts"
export * as RunstreamClient from "./rpc/RunstreamClient.ts"
export * as RunstreamRpcs from "./rpc/RunstreamRpcs.ts"
export { EventPage, RunPage, ShuttingDown, Started, TooManyStreams, Unavailable } from "./rpc/RunstreamRpcs.ts"
export { Unauthorized } from "./rpc/RunstreamClient.ts"
