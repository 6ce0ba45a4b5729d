/**
 * The domain's schemas and errors, as both entry points (`runstream` and
 * `runstream/client`) export them: one list, so that the two cannot differ.
 * Nothing here loads a server module.
 * @since 0.1.0
 */
export { ChildFailed } from "./ChildFailed.ts"
export * from "./Errors.ts"
export { RunId } from "./Ids.ts"
export { isFinished, maxListedChildren, Run, RunChild, RunError, RunStatus } from "./Run.ts"
export {
  childCompletedType,
  childStartedType,
  isTerminalType,
  journalTypes,
  RunEvent,
  signalReceivedType,
  signalTimedOutType,
  signalWaitingType,
  sleepStartedType,
  stepCompletedType,
  SystemEventType
} from "./RunEvent.ts"
export { ReadToken, TokenRequest } from "./ReadToken.ts"
export { isRunIdPrefix, RunFilter, RunIdPrefix } from "./RunFilter.ts"
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
} from "./Schedule.ts"
export { SignalName, SignalNotDeclared, SignalSent, SignalTimeout } from "./Signal.ts"
export { Debounce, StartOptions } from "./StartOptions.ts"
export { Stats } from "./Stats.ts"
export { TaskInfo, TaskList } from "./TaskInfo.ts"
