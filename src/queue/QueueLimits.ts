/**
 * Limits declared on queues: `Runstream.layerRuntime({ queues: { mail: {
 * concurrency: { limit: 5 }, rateLimit: { limit: 100, period: "1 minute" } } } })`.
 * They count every run started on the queue, whatever its task, by the
 * start's `concurrencyKey` ("" without one: then the queue as a whole), in
 * the scope `queue:<name>` (`Limits.ts`). A run of a task that declares
 * limits of its own counts under its task's instead.
 *
 * Every process that starts runs on such a queue, and every worker of it,
 * should declare the same limits, as they declare the same tasks: the limits
 * in force are those of the last start (as for a task's), and a worker serves
 * the queue's keys when it declares them or finds runs of them waiting at its
 * start.
 * @since 0.3.0
 */
import { Context, type Duration, Effect, Layer, Schema } from "effect"
import { QueueName } from "../domain/StartOptions.ts"
import * as Limits from "./Limits.ts"

/** A queue's limits, as `layerRuntime`'s `queues` option takes them. */
export interface QueueDefinition {
  /** At most `limit` runs of the queue with one `concurrencyKey` running at once, across every worker. */
  readonly concurrency?: { readonly limit: number } | undefined
  /** At most `limit` attempts of the queue with one `concurrencyKey` start per `period`, across every worker. */
  readonly rateLimit?: { readonly limit: number; readonly period: Duration.DurationInput } | undefined
}

export class QueueLimits extends Context.Tag("runstream/QueueLimits")<QueueLimits, {
  /** The queue's limits (`Limits.none` for a queue without any). */
  readonly of: (queue: string) => Limits.Limits
  /** The queues that declare limits. */
  readonly limited: ReadonlyArray<string>
}>() {}

const isQueueName = Schema.is(QueueName)

/** The limits of `definitions`, checked: a bad name or limit stops the program at start-up. */
export const layer = (definitions: Readonly<Record<string, QueueDefinition>> = {}): Layer.Layer<QueueLimits> =>
  Layer.effect(
    QueueLimits,
    Effect.gen(function*() {
      const byQueue = new Map<string, Limits.Limits>()
      for (const [queue, definition] of Object.entries(definitions)) {
        if (!isQueueName(queue)) {
          return yield* Effect.dieMessage(`queue '${queue}': a queue name is 1-100 of A-Z a-z 0-9 . _ -`)
        }
        const limits = Limits.fromDefinition(definition)
        const refused = Limits.check(limits)
        if (refused !== undefined) return yield* Effect.dieMessage(`queue '${queue}': ${refused}`)
        if (Limits.isLimited(limits)) byQueue.set(queue, limits)
      }
      return QueueLimits.of({
        of: (queue) => byQueue.get(queue) ?? Limits.none,
        limited: [...byQueue.keys()]
      })
    })
  )
