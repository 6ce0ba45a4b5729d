import { TestServer } from "runstream/testing"

export default TestServer.globalSetup
