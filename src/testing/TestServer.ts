/**
 * One Postgres server for a whole test run: `TEST_DATABASE_URL` when set, else
 * a testcontainers Postgres when a container runtime answers (and the optional
 * `testcontainers` and `@testcontainers/postgresql` packages are installed),
 * else an embedded Postgres in a temporary directory. Call it from vitest's `globalSetup`; it
 * publishes the server's admin URL as `RUNSTREAM_TEST_SERVER_URL` for the
 * test workers.
 * @since 0.1.0
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Redacted, Scope } from "effect"
import * as Embedded from "../internal/embeddedPostgres.ts"

export const serverUrlVariable = "RUNSTREAM_TEST_SERVER_URL"

export interface TestServer {
  readonly url: string
  readonly kind: "TEST_DATABASE_URL" | "testcontainers" | "embedded"
  readonly stop: () => Promise<void>
}

/**
 * Whether a container runtime may answer here: `DOCKER_HOST` or a Docker or
 * Podman socket in its usual place. Only then is `testcontainers` (an optional
 * peer dependency) imported, so the kit loads in an app without it.
 */
const containerRuntimeMayAnswer = (): boolean =>
  (process.env["DOCKER_HOST"] ?? "") !== "" ||
  [
    "/var/run/docker.sock",
    join(homedir(), ".docker", "run", "docker.sock"),
    `/run/user/${process.getuid?.() ?? 0}/podman/podman.sock`
  ].some((socket) => existsSync(socket))

const tryTestcontainers = async (): Promise<TestServer | undefined> => {
  if (!containerRuntimeMayAnswer()) return undefined
  try {
    // A variable specifier: an app that has not installed the package still type-checks and bundles this module.
    const testcontainers: string = "testcontainers"
    const { getContainerRuntimeClient } = await import(testcontainers) as typeof import("testcontainers")
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("no answer")), 5000))
    ])
    const postgresql: string = "@testcontainers/postgresql"
    const { PostgreSqlContainer } = await import(postgresql) as typeof import("@testcontainers/postgresql")
    const container = await new PostgreSqlContainer("postgres:17-alpine")
      .withCommand(["postgres", "-c", "max_connections=300", "-c", "fsync=off"])
      .start()
    return { url: container.getConnectionUri(), kind: "testcontainers", stop: async () => void (await container.stop()) }
  } catch {
    return undefined
  }
}

const startEmbedded = async (): Promise<TestServer> => {
  const dir = mkdtempSync(join(tmpdir(), "runstream-test-pg-"))
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    Embedded.start({
      dataDir: dir,
      persistent: false,
      maxConnections: 400,
      settings: { fsync: "off", synchronous_commit: "off", full_page_writes: "off" }
    }).pipe(Scope.extend(scope))
  )
  return {
    url: Redacted.value(server.url),
    kind: "embedded",
    stop: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** Starts (or finds) the server for this test run. */
export const start = async (): Promise<TestServer> => {
  const given = process.env["TEST_DATABASE_URL"]
  if (given !== undefined && given !== "") {
    return { url: given, kind: "TEST_DATABASE_URL", stop: async () => {} }
  }
  return (await tryTestcontainers()) ?? (await startEmbedded())
}

/**
 * A vitest `globalSetup`: starts the server once for the whole run and hands
 * its URL to the test workers. In a file named by `test.globalSetup`:
 * `import { TestServer } from "runstream/testing"; export default TestServer.globalSetup`.
 */
export const globalSetup = async (): Promise<() => Promise<void>> => {
  const server = await start()
  process.env[serverUrlVariable] = server.url
  console.log(`[runstream tests] Postgres: ${server.kind}`)
  return () => server.stop()
}
