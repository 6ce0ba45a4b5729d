/**
 * `runstream/workflow`: `@effect/workflow`'s `WorkflowEngine` on Runstream.
 * Its own entry point, so that programs without workflows never load
 * `@effect/workflow`; it needs `@effect/workflow` installed.
 *
 * ```ts
 * import { RunstreamWorkflow } from "runstream/workflow"
 * const program = SendEmailWorkflow.toLayer(handler).pipe(
 *   Layer.provideMerge(RunstreamWorkflow.layer),
 *   Layer.provideMerge(Runstream.layerWithWorkers()),
 *   Layer.provideMerge(RunstreamWorkflow.layerRegistry([SendEmailWorkflow])),
 *   Layer.provideMerge(Database.layer)
 * )
 * ```
 * @since 0.6.0
 */
export * as RunstreamWorkflow from "./workflow/WorkflowEngine.ts"
