/**
 * The worker's side of child runs (`ctx.start`, `ctx.await`): a parent's
 * journal starts its children through `Runs` (checked and created as any
 * start, with the parent's id and the child's idempotency key) and reads
 * the runs of the children it awaits, all with one query.
 * @since 0.3.0
 */
import { SqlClient, type SqlError } from "@effect/sql"
import { Effect, Option } from "effect"
import { NonDeterministic } from "../domain/Errors.ts"
import type { RunId } from "../domain/Ids.ts"
import { Runs } from "../Runs.ts"
import type * as Task from "../Task.ts"
import type { ChildStart, ChildState } from "./Journal.ts"

export interface Children {
  readonly start: (parentId: RunId, start: ChildStart) => Effect.Effect<RunId, Task.ChildStartError>
  readonly states: (ids: ReadonlyArray<RunId>) => Effect.Effect<ReadonlyArray<ChildState>, SqlError.SqlError>
}

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // A program with workers has `Runs` (`Runstream.layer`); a pool built
  // without it can run every task but those that start children.
  const runs = yield* Effect.serviceOption(Runs)

  const start: Children["start"] = (parentId, request) =>
    Option.match(runs, {
      onNone: () => Effect.dieMessage("ctx.start needs the Runs service in the workers' program"),
      onSome: (runs) =>
        runs.startMany([{
          task: request.task,
          input: request.input,
          options: { ...request.options, idempotencyKey: request.idempotencyKey },
          parentId
        }]).pipe(
          Effect.map((created) => created[0]!.run.id),
          // The key's child was started with another task or input: the
          // replay does not match the attempt that started it.
          Effect.catchTag("IdempotencyConflict", () =>
            Effect.fail(
              new NonDeterministic({
                runId: parentId,
                position: request.position,
                step: request.name,
                message: `child '${request.name}' was started with another task or input by an earlier attempt`
              })
            ))
        )
    })

  const states: Children["states"] = (ids) =>
    sql<ChildState>`SELECT id, status, output, error FROM runstream_runs WHERE id = ANY(${ids}::uuid[])`

  return { start, states } satisfies Children
})
