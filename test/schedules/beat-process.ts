/**
 * A worker program declaring one schedule: `beat`, every second, each tick a
 * run of `test.beat`, missed ticks all started (`catchUp: "all"`). Started
 * three times, on one database, by test/schedules/exactly-once.test.ts.
 */
import { Effect, Schema } from "effect"
import * as Main from "../../src/main/Main.ts"
import * as Programs from "../../src/main/Programs.ts"
import * as RunSchedule from "../../src/schedules/RunSchedule.ts"
import * as Task from "../../src/Task.ts"

export const Beat = Task.make("test.beat", {
  input: Schema.Null,
  output: Schema.Null,
  run: () => Effect.succeed(null)
})

Main.run(Programs.makeWorkerLayer([Beat], {
  schedules: [RunSchedule.every("beat", "1 second", Beat, null, { catchUp: "all" })]
}))
