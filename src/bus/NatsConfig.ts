/**
 * The NATS bus's settings, apart from the driver so that a program can read
 * (and report) them without loading the NATS client.
 * @since 0.1.0
 */
import { Config, Option } from "effect"

const isServerUrl = (text: string) => {
  try {
    return ["nats:", "tls:"].includes(new URL(text).protocol)
  } catch {
    return false
  }
}

const serversOf = (text: string) => text.split(",").map((url) => url.trim()).filter((url) => url !== "")

/** One or more dot-separated tokens of letters, digits, `_` and `-`: no wildcard, no space. */
export const isSubjectPrefix = (text: string) => /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(text)

/** @category config */
export const NatsConfig = Config.all({
  /** The server, or several separated by commas (one cluster): `nats://host:4222`, `tls://…`. */
  servers: Config.string("RUNSTREAM_NATS_URL").pipe(
    // Validated before the split: a validation after a map loses the variable's name.
    Config.validate({
      message: "must be nats:// or tls:// URLs, separated by commas",
      validation: (text) => serversOf(text).length > 0 && serversOf(text).every(isServerUrl)
    }),
    Config.withDefault("nats://127.0.0.1:4222"),
    Config.map(serversOf)
  ),
  /**
   * The first tokens of every subject, so that programs on different
   * databases share a NATS server without seeing each other's events. By
   * default `runstream.<database name>`: every program on one database agrees
   * on it with no setting.
   */
  subjectPrefix: Config.option(
    Config.string("RUNSTREAM_NATS_SUBJECT_PREFIX").pipe(
      Config.validate({ message: "must be dot-separated tokens of letters, digits, _ and -", validation: isSubjectPrefix })
    )
  ).pipe(Config.map(Option.getOrUndefined))
})

/** What the NATS bus connects to and where it publishes (`NatsConfig` reads them from the environment). */
export interface NatsOptions {
  readonly servers: ReadonlyArray<string>
  readonly subjectPrefix?: string | undefined
}
