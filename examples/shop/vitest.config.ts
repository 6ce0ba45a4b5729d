import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One Postgres for the whole run (TEST_DATABASE_URL, a container, or an embedded server);
    // every test graph clones a fresh database on it.
    globalSetup: ["test/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000
  }
})
