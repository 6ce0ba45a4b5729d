/**
 * The `runstream` command itself: the server it talks to (`--url` /
 * `RUNSTREAM_URL`) and the key it sends (`--api-key` / `RUNSTREAM_API_KEY`).
 * Subcommands read them with `yield* Root.command`; `main.ts` gives them the
 * client built from them.
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import { Config, Effect, Layer, Option, Redacted } from "effect"
import * as RunstreamClient from "../rpc/RunstreamClient.ts"
import { InvalidArgument } from "./CliError.ts"

export const defaultUrl = "http://127.0.0.1:3000"

const url = Options.text("url").pipe(
  Options.withDescription(`The server's base URL (env RUNSTREAM_URL; default ${defaultUrl}).`),
  Options.withFallbackConfig(Config.string("RUNSTREAM_URL")),
  Options.withDefault(defaultUrl)
)

const apiKey = Options.redacted("api-key").pipe(
  Options.withDescription("An API key of the server (env RUNSTREAM_API_KEY)."),
  Options.withFallbackConfig(Config.redacted("RUNSTREAM_API_KEY")),
  Options.optional
)

export const command = Command.make("runstream", { url, apiKey }).pipe(
  Command.withDescription("Start, list, follow and cancel the runs of a Runstream server, manage its schedules; `dev` runs one.")
)

/** The base URL without a trailing slash; an error naming `--url` when it is not an http(s) URL. */
export const baseUrl = (text: string): Effect.Effect<string, InvalidArgument> => {
  const parsed = URL.canParse(text) ? new URL(text) : undefined
  return parsed === undefined || (parsed.protocol !== "http:" && parsed.protocol !== "https:")
    ? Effect.fail(new InvalidArgument({ message: `--url: '${text}' is not an http(s) URL` }))
    : Effect.succeed(text.replace(/\/+$/, ""))
}

/** The typed client of the server named by the root options (an empty key counts as none). */
export const clientLayer = (options: { readonly url: string; readonly apiKey: Option.Option<Redacted.Redacted> }) =>
  Layer.unwrapEffect(Effect.map(baseUrl(options.url), (base) =>
    RunstreamClient.layer({
      url: `${base}/rpc`,
      apiKey: Option.getOrUndefined(Option.filter(options.apiKey, (key) => Redacted.value(key) !== ""))
    })))
