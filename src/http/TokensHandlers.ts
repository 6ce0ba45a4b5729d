/**
 * The `tokens` group: `POST /v1/tokens` mints a read token (see `ReadTokens`).
 * @since 0.3.0
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { ReadToken, TokenRequest } from "../domain/ReadToken.ts"
import { Runs } from "../Runs.ts"
import { Api } from "./Api.ts"
import { internal, mapCore } from "./ApiError.ts"
import type { HttpOptions } from "./HttpConfig.ts"
import { ReadTokens } from "./ReadTokens.ts"
import * as RequestBody from "./RequestBody.ts"

/** @category layers */
export const layer = (options: HttpOptions) =>
  HttpApiBuilder.group(Api, "tokens", (handlers) =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const tokens = yield* ReadTokens
      return handlers.handleRaw("create", () =>
        Effect.gen(function*() {
          const request = yield* RequestBody.json(TokenRequest, options.maxBodyBytes)
          const token = yield* mapCore(mint(runs, tokens, request))
          return yield* HttpServerResponse.schemaJson(ReadToken)(token, { status: 201 }).pipe(Effect.mapError(() => internal))
        }))
    }))

/** A token for a checked request: a run's must exist (a typo is a 404 now, not a 401 later). */
export const mint = (runs: Runs["Type"], tokens: ReadTokens["Type"], request: TokenRequest) =>
  request.runId !== undefined
    ? Effect.flatMap(runs.get(request.runId), (run) => tokens.mint({ _tag: "Run", runId: run.id }, request.ttlSeconds))
    : tokens.mint({ _tag: "Task", task: request.task! }, request.ttlSeconds)
