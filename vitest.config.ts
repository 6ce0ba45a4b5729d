import pg from "pg"
import { defineConfig } from "vitest/config"

/** Test files at once where the server has room: 4 (the embedded server allows 400 connections). */
const maxForks = 4
/**
 * Connections one test file may hold at its peak: its tests run concurrently,
 * each graph on its own database and pool (test/core/isolation.test.ts, the
 * most, holds about 60).
 */
const connectionsPerFile = 60

/**
 * On a `TEST_DATABASE_URL` server, as many files at once as its free
 * connections allow (a stock Postgres allows 100: one file at a time), so
 * that a run never fails with "too many clients"; unreachable, the global
 * setup says so.
 */
const forksFor = async (url: string | undefined) => {
  if (url === undefined || url === "") return maxForks
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  client.on("error", () => {})
  try {
    await client.connect()
    const { rows } = await client.query<{ free: number }>(
      "SELECT current_setting('max_connections')::integer - (SELECT count(*)::integer FROM pg_stat_activity) AS free"
    )
    const forks = Math.max(1, Math.min(maxForks, Math.floor(rows[0]!.free / connectionsPerFile)))
    if (forks < maxForks) {
      console.log(`[runstream tests] TEST_DATABASE_URL has ${rows[0]!.free} free connections: ${forks} test file(s) at once (${maxForks} need ${maxForks * connectionsPerFile})`)
    }
    return forks
  } catch {
    return maxForks
  } finally {
    await client.end().catch(() => {})
  }
}

export default defineConfig(async () => ({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/globalSetup.ts"],
    // Files run in parallel, in separate processes: what one leaks, another would see.
    pool: "forks",
    poolOptions: { forks: { minForks: 1, maxForks: await forksFor(process.env["TEST_DATABASE_URL"]) } },
    testTimeout: 60_000,
    hookTimeout: 120_000
  }
}))
