import * as TestServer from "../src/testing/TestServer.ts"

/** One Postgres server for the whole run; each test graph clones its own database on it. */
export default TestServer.globalSetup
