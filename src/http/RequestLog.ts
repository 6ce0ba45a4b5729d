/**
 * The request log: `HttpMiddleware.logger`'s line ("Sent HTTP response", with
 * method, URL, status and duration) at debug level, so that an ordinary log
 * (info) shows what the service does rather than every request it answers.
 * @since 0.1.0
 */
import { HttpMiddleware } from "@effect/platform"
import { Effect, FiberRef, LogLevel } from "effect"

/**
 * `Effect.log` writes at the fiber's current level: the middleware's line is
 * written at debug, while the app inside it runs at the level the request
 * had, so its own logs keep theirs.
 * @category middleware
 */
export const atDebug = HttpMiddleware.make((app) =>
  Effect.flatMap(FiberRef.get(FiberRef.currentLogLevel), (level) =>
    HttpMiddleware.logger(Effect.locally(app, FiberRef.currentLogLevel, level)).pipe(
      Effect.locally(FiberRef.currentLogLevel, LogLevel.Debug)
    ))
)
