/**
 * A worker program with the five-step workflow (`StepsWorkflow.ts`), started
 * and killed by test/e2e/steps.test.ts.
 */
import * as Main from "../../src/main/Main.ts"
import * as Programs from "../../src/main/Programs.ts"
import { Workflow5 } from "./StepsWorkflow.ts"

Main.run(Programs.makeWorkerLayer([Workflow5]))
