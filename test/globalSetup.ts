import * as TestServer from "../src/testing/TestServer.ts"

/** One Postgres server for the whole run; each test graph clones its own database on it. */
export default async function setup() {
  const server = await TestServer.start()
  process.env[TestServer.serverUrlVariable] = server.url
  console.log(`[runstream tests] Postgres: ${server.kind}`)
  return () => server.stop()
}
