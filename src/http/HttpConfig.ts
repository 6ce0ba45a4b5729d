/**
 * Settings of the HTTP API, from the environment; every one can be overridden
 * in code (tests, embedding).
 * @since 0.1.0
 */
import { Config, ConfigError, Duration, Either, Option, Redacted } from "effect"

export interface HttpOptions {
  /** Keys accepted in `Authorization: Bearer <key>`; empty: no authentication. */
  readonly apiKeys: ReadonlyArray<Redacted.Redacted<string>>
  /** The largest request body read, in bytes. */
  readonly maxBodyBytes: number
  /** Open event streams (SSE and RPC streams) per process; more are refused. */
  readonly maxStreams: number
  /** Calls in flight at once in one `POST /rpc` request; one more is refused (429, or the answer ends). */
  readonly maxRpcCalls: number
  /**
   * Requests that may open an event stream (`POST /rpc`, SSE) set up at once;
   * the others wait their turn in arrival order (`StreamAdmission`).
   */
  readonly streamSetups: number
  /** How often an idle SSE connection gets a comment line (proxies close silent ones). */
  readonly keepAlive: Duration.Duration
  /** The reconnection delay suggested to SSE clients (`retry:`). */
  readonly retry: Duration.Duration
  /**
   * The secret read tokens are signed with (`POST /v1/tokens`), the same on
   * every server process; none: tokens are disabled (minting answers 501).
   */
  readonly tokenSecret?: Redacted.Redacted<string> | undefined
  /** `GET /metrics` answers without a key even when keys are set (`RUNSTREAM_METRICS_OPEN`). */
  readonly metricsOpen?: boolean | undefined
}

const apiKeys = Config.option(Config.redacted("RUNSTREAM_API_KEYS")).pipe(
  Config.mapOrFail(Option.match({
    onNone: () => Either.right<ReadonlyArray<Redacted.Redacted<string>>>([]),
    onSome: (value) => {
      const keys = Redacted.value(value).split(",").map((key) => key.trim()).filter((key) => key.length > 0)
      // Set but empty is refused rather than read as "no authentication".
      return keys.length === 0
        ? Either.left(ConfigError.InvalidData(["RUNSTREAM_API_KEYS"], "is set but lists no key; unset it to run without authentication"))
        : Either.right(keys.map((key) => Redacted.make(key)))
    }
  }))
)

/** At least 32 characters: an HMAC key any shorter is guessable offline from one token. */
const tokenSecret = Config.option(Config.redacted("RUNSTREAM_TOKEN_SECRET")).pipe(
  Config.mapOrFail(Option.match({
    onNone: () => Either.right<Redacted.Redacted<string> | undefined>(undefined),
    onSome: (value) =>
      Redacted.value(value).length >= 32
        ? Either.right(value)
        : Either.left(ConfigError.InvalidData(["RUNSTREAM_TOKEN_SECRET"], "must be at least 32 characters (e.g. `openssl rand -hex 32`)"))
  }))
)

/**
 * A validated variable. The check sits inside the name (`nested`): a
 * validation outside it reports no variable, only "must be ...".
 */
const checked = <A>(
  name: string,
  config: Config.Config<A>,
  check: { readonly message: string; readonly validation: (a: A) => boolean },
  fallback: A
) => config.pipe(Config.validate(check), Config.nested(name), Config.withDefault(fallback))

/** The defaults of the limits below, for code that builds an app without the environment. */
export const httpDefaults = { maxBodyBytes: 1024 * 1024, maxStreams: 1000, maxRpcCalls: 16, streamSetups: 8 } as const

/** @category config */
export const HttpConfig: Config.Config<HttpOptions> = Config.all({
  apiKeys,
  maxBodyBytes: checked("RUNSTREAM_MAX_BODY_BYTES", Config.integer(), {
    message: "must be between 1024 and 268435456",
    validation: (n) => n >= 1024 && n <= 256 * 1024 * 1024
  }, httpDefaults.maxBodyBytes),
  maxStreams: checked("RUNSTREAM_MAX_STREAMS", Config.integer(), {
    message: "must be between 1 and 1000000",
    validation: (n) => n >= 1 && n <= 1_000_000
  }, httpDefaults.maxStreams),
  maxRpcCalls: checked("RUNSTREAM_RPC_MAX_CALLS", Config.integer(), {
    message: "must be between 1 and 10000",
    validation: (n) => n >= 1 && n <= 10_000
  }, httpDefaults.maxRpcCalls),
  streamSetups: checked("RUNSTREAM_STREAM_SETUPS", Config.integer(), {
    message: "must be between 1 and 10000",
    validation: (n) => n >= 1 && n <= 10_000
  }, httpDefaults.streamSetups),
  keepAlive: checked("RUNSTREAM_SSE_KEEPALIVE", Config.duration(), {
    message: "must be at least 10 millis",
    validation: (d) => Duration.toMillis(d) >= 10
  }, Duration.seconds(15)),
  retry: Config.duration("RUNSTREAM_SSE_RETRY").pipe(Config.withDefault(Duration.seconds(3))),
  tokenSecret,
  metricsOpen: Config.boolean("RUNSTREAM_METRICS_OPEN").pipe(Config.withDefault(false))
})

/** A TCP port; 0 picks a free one. */
export const portConfig = (name: string) =>
  Config.integer().pipe(
    Config.validate({ message: "must be a port number from 0 to 65535 (0 picks a free one)", validation: (n) => n >= 0 && n <= 65535 }),
    Config.nested(name)
  )

/** Where the server listens. */
export interface ListenOptions {
  readonly port: number
  readonly host: string
}

/** @category config */
export const ListenConfig: Config.Config<ListenOptions> = Config.all({
  port: portConfig("PORT").pipe(Config.withDefault(3000)),
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1"))
})
