/**
 * How long finished runs are kept: `RUNSTREAM_RETENTION`, or a task's own
 * `retention` (`Task.make`), as the retention (`Retention.ts`) reads them.
 * @since 0.3.0
 */
import { Duration, Option } from "effect"

/** The shortest retention: a follower of a finished run is long done with it. */
export const minRetention = Duration.minutes(1)
/** The longest retention (about a century, so that the cut-off stays a time). */
export const maxRetention = Duration.days(36_500)

/** What a retention may be, for error messages. */
export const retentionMessage =
  `must be a duration such as "7 days" or "12 hours", from ${Duration.format(minRetention)} to ${Duration.format(maxRetention)}, or "off"`

/** A retention as a task or the environment gives it: a duration, or `"off"` (kept for good). */
export type RetentionInput = Duration.DurationInput | "off"

/**
 * A retention as written (`"7 days"`, a `Duration`, `"off"`, `"0"` or `0`):
 * the duration, `none` to keep runs for good, or `undefined` when it is no
 * retention (unparseable, negative, out of bounds).
 */
export const parseRetention = (input: unknown): Option.Option<Duration.Duration> | undefined => {
  if (input === "off" || input === "0" || input === 0) return Option.none()
  // Duration reads "-1 days" as a negative duration: refused with the rest.
  const duration = Duration.decodeUnknown(input)
  if (Option.isNone(duration)) return undefined
  const d = duration.value
  return Duration.between(d, { minimum: minRetention, maximum: maxRetention }) ? Option.some(d) : undefined
}
