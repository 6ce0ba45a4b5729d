/**
 * The `schedules` group: create, list, get, change, delete, pause and resume.
 * @since 0.4.0
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { ScheduleDefinition, SchedulePatch } from "../domain/Schedule.ts"
import { Schedules } from "../schedules/Schedules.ts"
import { Api, ScheduleResponse } from "./Api.ts"
import { internal, mapCore } from "./ApiError.ts"
import type { HttpOptions } from "./HttpConfig.ts"
import * as RequestBody from "./RequestBody.ts"

/** @category layers */
export const layer = (options: HttpOptions) =>
  HttpApiBuilder.group(Api, "schedules", (handlers) =>
    Effect.gen(function*() {
      const schedules = yield* Schedules
      return handlers
        // Bodies are read by `RequestBody` (media type, size limit, one message per fault), as the runs' are.
        .handleRaw("create", () =>
          Effect.gen(function*() {
            const definition = yield* RequestBody.json(ScheduleDefinition, options.maxBodyBytes)
            const schedule = yield* mapCore(schedules.create(definition))
            return yield* HttpServerResponse.schemaJson(ScheduleResponse)({ schedule }, { status: 201 }).pipe(
              Effect.mapError(() => internal)
            )
          }))
        .handle("list", ({ urlParams }) => mapCore(schedules.list(urlParams)))
        .handle("get", ({ path }) => mapCore(schedules.get(path.name)))
        .handleRaw("update", ({ path }) =>
          Effect.gen(function*() {
            const patch = yield* RequestBody.json(SchedulePatch, options.maxBodyBytes)
            const schedule = yield* mapCore(schedules.update(path.name, patch))
            return yield* HttpServerResponse.schemaJson(ScheduleResponse)({ schedule }).pipe(Effect.mapError(() => internal))
          }))
        .handle("delete", ({ path, urlParams }) => mapCore(schedules.remove(path.name, { force: urlParams.force === "true" })))
        .handle("pause", ({ path }) => mapCore(Effect.map(schedules.pause(path.name), (schedule) => ({ schedule }))))
        .handle("resume", ({ path }) => mapCore(Effect.map(schedules.resume(path.name), (schedule) => ({ schedule }))))
    }))
