/**
 * One retention pass on a database, timed (for scripts/retention-backlog.ts --measure).
 */
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import * as Database from "../src/Database.ts"
import * as Retention from "../src/Retention.ts"
import * as Task from "../src/Task.ts"

const database = (url: string) =>
  Database.layerClient().pipe(
    Layer.provide(Layer.succeed(Database.DatabaseUrl, { url: Redacted.make(url), description: "retention backlog" }))
  )

/** Migrates the database (if it is not yet). */
export const migrate = (url: string) => Effect.runPromise(Effect.scoped(Layer.build(database(url))))

export const measurePass = (url: string) =>
  Effect.gen(function*() {
    const retention = yield* Retention.Retention
    const started = Date.now()
    const pass = yield* retention.deleteNow
    return { ...pass, seconds: (Date.now() - started) / 1000 }
  }).pipe(
    Effect.provide(
      Retention.layer({ retention: Option.some("7 days"), interval: Duration.infinity }).pipe(
        Layer.provide(Task.layerRegistry()),
        Layer.provide(database(url))
      )
    ),
    Effect.runPromise
  )
