/**
 * The `health` group: liveness (the process answers) and readiness (its
 * database answers and its LISTEN connection is up, so events reach streams).
 * @since 0.1.0
 */
import { HttpApiBuilder, HttpMiddleware } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Option } from "effect"
import { PgListener } from "../PgListener.ts"
import { Api, HealthApi } from "./Api.ts"
import { ApiError } from "./ApiError.ts"

const probeTimeout = Duration.seconds(2)

const notReady = (reason: string) => new ApiError({ status: 503, code: "not_ready", message: reason })

/** The checks of `/readyz`: fails with the first that does not pass. */
export const readiness = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const listener = yield* PgListener
  const answered = yield* sql`SELECT 1`.pipe(
    Effect.timeoutOption(probeTimeout),
    Effect.map(Option.isSome),
    Effect.catchAll((error) => Effect.as(Effect.logWarning("readiness: the database did not answer", error), false))
  )
  if (!answered) return yield* notReady("the database does not answer")
  if (!(yield* listener.isConnected)) return yield* notReady("the LISTEN connection to the database is down")
  return { status: "ready" }
})

/** Probes come every few seconds: they are not logged as requests. */
const implementation = Effect.map(Effect.context<SqlClient.SqlClient | PgListener>(), (context) => ({
  healthz: () => HttpMiddleware.withLoggerDisabled(Effect.succeed({ status: "ok" })),
  readyz: () => HttpMiddleware.withLoggerDisabled(Effect.provide(readiness, context))
}))

/** The `health` group of the full API. @category layers */
export const layer = HttpApiBuilder.group(Api, "health", (handlers) =>
  Effect.map(implementation, (health) => handlers.handle("healthz", health.healthz).handle("readyz", health.readyz)))

/** The `health` group of the workers' `HealthApi`. @category layers */
export const layerHealthApi = HttpApiBuilder.group(HealthApi, "health", (handlers) =>
  Effect.map(implementation, (health) => handlers.handle("healthz", health.healthz).handle("readyz", health.readyz)))
