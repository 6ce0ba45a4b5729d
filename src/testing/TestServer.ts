/**
 * One Postgres server for a whole test run: `TEST_DATABASE_URL` when set, else a
 * testcontainers Postgres when a container runtime answers, else an embedded
 * Postgres in a temporary directory. Call it from vitest's `globalSetup`; it
 * publishes the server's admin URL as `RUNSTREAM_TEST_SERVER_URL` for the
 * test workers.
 * @since 0.1.0
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Redacted, Scope } from "effect"
import * as Embedded from "../internal/embeddedPostgres.ts"

export const serverUrlVariable = "RUNSTREAM_TEST_SERVER_URL"

export interface TestServer {
  readonly url: string
  readonly kind: "TEST_DATABASE_URL" | "testcontainers" | "embedded"
  readonly stop: () => Promise<void>
}

const tryTestcontainers = async (): Promise<TestServer | undefined> => {
  try {
    const { getContainerRuntimeClient } = await import("testcontainers")
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("no answer")), 5000))
    ])
    const { PostgreSqlContainer } = await import("@testcontainers/postgresql")
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
