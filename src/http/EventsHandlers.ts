/**
 * The `events` group: live events of every run as SSE (a debug stream; no
 * replay, so messages carry no `id:` a client could resume from).
 * @since 0.1.0
 */
import { HttpApiBuilder } from "@effect/platform"
import { Effect, Mailbox } from "effect"
import { Runs } from "../Runs.ts"
import { Api } from "./Api.ts"
import type { HttpOptions } from "./HttpConfig.ts"
import * as Sse from "./Sse.ts"
import { Streams } from "./Streams.ts"

/** @category layers */
export const layer = (options: HttpOptions) =>
  HttpApiBuilder.group(Api, "events", (handlers) =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const streams = yield* Streams
      return handlers.handle("all", ({ urlParams }) =>
        Effect.gen(function*() {
          yield* streams.acquire
          // Subscribed before the response starts: nothing published from now on is missed.
          const live = yield* runs.subscribeAll({ task: urlParams.task, runId: urlParams.run })
          const messages = Sse.runEvents(Mailbox.toStream(live), { withIds: false })
          return Sse.response(messages, { ...options, until: streams.shutdown, name: "debug event stream" })
        }))
    }))
