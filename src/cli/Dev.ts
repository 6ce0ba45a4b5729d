/**
 * `runstream dev`: what `npm start` does (API, workers and relay in one
 * process with the demo tasks, on an embedded Postgres unless `DATABASE_URL`
 * is set), until Ctrl-C.
 * @since 0.1.0
 */
import { Command } from "@effect/cli"
import { Effect, Layer } from "effect"

export const command = Command.make("dev", {}, () =>
  // Imported here, not at the top: the other commands are clients and need
  // none of the server's modules (pg, the embedded Postgres, the workers).
  Effect.flatMap(
    Effect.promise(() => import("../index.ts")),
    ({ Demo, Main, Programs }) => Layer.launch(Layer.provide(Programs.makeDevLayer(Demo.all, { schedules: Demo.schedules }), Main.layerLogging))
  )).pipe(
    Command.withDescription(
      "Run a server with workers and the demo tasks on an embedded Postgres (or DATABASE_URL), as `npm start` does."
    )
  )
