/**
 * Log lines that carry the ids of the span they were written in (`traceId`,
 * `spanId` annotations), so that a line leads to its trace in the collector,
 * and the lines of one span (a request, an attempt) are found together even
 * with no exporter (Effect's own spans have ids). A line's cost is one lookup
 * in its fiber's context.
 * @since 0.4.0
 */
import { Context, FiberRef, FiberRefs, HashMap, Logger, Option, Tracer } from "effect"

/** `logger`, each line annotated with the current span's ids when there is one. */
export const withTraceIds = <Message, Output>(logger: Logger.Logger<Message, Output>): Logger.Logger<Message, Output> =>
  Logger.mapInputOptions(logger, (options) => {
    const span = Context.getOption(FiberRefs.getOrDefault(options.context, FiberRef.currentContext), Tracer.ParentSpan)
    if (Option.isNone(span)) return options
    return {
      ...options,
      annotations: HashMap.set(HashMap.set(options.annotations, "traceId", span.value.traceId), "spanId", span.value.spanId)
    }
  })
