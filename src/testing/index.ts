export * as RunstreamTest from "./RunstreamTest.ts"
export * as TestDatabase from "./TestDatabase.ts"
export * as TestServer from "./TestServer.ts"
