/**
 * Schedules over RPC through the typed client: the same operations, checks
 * and errors as REST (test/http/schedules.test.ts).
 */
import { HttpRouter, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { createServer } from "node:http"
import * as Demo from "../../src/demo/tasks.ts"
import { InvalidInput, UnknownTask } from "../../src/domain/Errors.ts"
import { InvalidSchedule, ScheduleDeclaredInCode, ScheduleExists, ScheduleNotFound } from "../../src/domain/Schedule.ts"
import * as ReadTokens from "../../src/http/ReadTokens.ts"
import * as Streams from "../../src/http/Streams.ts"
import * as RpcServer from "../../src/rpc/RpcServer.ts"
import * as RunstreamClient from "../../src/rpc/RunstreamClient.ts"
import * as RunSchedule from "../../src/schedules/RunSchedule.ts"
import * as Stats from "../../src/Stats.ts"
import { RunstreamTest } from "../../src/testing/index.ts"

const RpcHttpServer = Layer.unwrapScoped(Effect.map(RpcServer.httpApp, (app) =>
  HttpRouter.empty.pipe(HttpRouter.post("/rpc", app), HttpServer.serve()))).pipe(
  Layer.provide(Streams.layer({ maxStreams: 100 })),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
)

const clientLayer = Layer.unwrapEffect(
  HttpServer.addressFormattedWith((address) => Effect.succeed(RunstreamClient.layer({ url: `${address}/rpc` })))
)

describe("RPC: schedules", () => {
  layer(
    clientLayer.pipe(
      Layer.provideMerge(RpcHttpServer),
      Layer.provideMerge(Layer.merge(Stats.layer(), ReadTokens.layer(undefined))),
      Layer.provideMerge(RunstreamTest.layer({
        tasks: Demo.all,
        workers: false,
        schedules: [RunSchedule.cron("declared", "0 3 * * *", Demo.Count, { to: 1 }, { timezone: "Asia/Tokyo" })]
      }))
    ),
    { excludeTestServices: true }
  )((it) => {
    it.effect("create, get, list, update, pause, resume and delete", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const created = yield* client.createSchedule({
          name: "rpc-heartbeat",
          task: "demo.echo",
          input: { ping: 1 },
          every: "30 seconds",
          catchUp: "none"
        })
        expect(created).toMatchObject({ name: "rpc-heartbeat", every: "30 seconds", everyMs: 30_000, catchUp: "none", source: "api" })
        expect(created.nextTickAt.epochMillis % 30_000).toBe(0)

        const detail = yield* client.getSchedule("rpc-heartbeat")
        expect(detail.schedule).toEqual(created)
        expect(detail.runs).toEqual([])

        const page = yield* client.listSchedules({ limit: 10 })
        expect(page.schedules.map((s) => s.name)).toEqual(["declared", "rpc-heartbeat"])
        expect(page.nextCursor).toBeNull()

        const updated = yield* client.updateSchedule("rpc-heartbeat", { cron: "0 9 * * 1-5", timezone: "Europe/Paris" })
        expect(updated).toMatchObject({ cron: "0 9 * * 1-5", every: null, timezone: "Europe/Paris", input: { ping: 1 } })
        expect((yield* client.pauseSchedule("rpc-heartbeat")).paused).toBe(true)
        expect((yield* client.resumeSchedule("rpc-heartbeat")).paused).toBe(false)
        yield* client.deleteSchedule("rpc-heartbeat")
        expect(yield* Effect.flip(client.getSchedule("rpc-heartbeat"))).toEqual(new ScheduleNotFound({ name: "rpc-heartbeat" }))
      }))

    it.effect("refusals arrive as the domain's errors", () =>
      Effect.gen(function*() {
        const client = yield* RunstreamClient.RunstreamClient
        const badCron = yield* Effect.flip(client.createSchedule({ name: "x", task: "demo.echo", cron: "0 3 * * * * *" }))
        expect(badCron).toBeInstanceOf(InvalidSchedule)
        expect(badCron.message).toMatch(/invalid cron expression/)
        const zone = yield* Effect.flip(client.createSchedule({ name: "x", task: "demo.echo", cron: "0 3 * * *", timezone: "Moon/Base" }))
        expect(zone.message).toMatch(/unknown time zone 'Moon\/Base'/)
        expect(yield* Effect.flip(client.createSchedule({ name: "x", task: "no.task", every: "1 minute" }))).toBeInstanceOf(UnknownTask)
        const input = yield* Effect.flip(client.createSchedule({ name: "x", task: "demo.count", input: { to: -1 }, every: "1 minute" }))
        expect(input).toBeInstanceOf(InvalidInput)
        expect(yield* Effect.flip(client.createSchedule({ name: "declared", task: "demo.echo", every: "1 minute" }))).toBeInstanceOf(ScheduleExists)
        const owned = yield* Effect.flip(client.updateSchedule("declared", { input: { to: 2 } }))
        expect(owned).toBeInstanceOf(ScheduleDeclaredInCode)
        expect(yield* Effect.flip(client.deleteSchedule("declared"))).toBeInstanceOf(ScheduleDeclaredInCode)
        expect((yield* client.getSchedule("declared")).schedule.timezone).toBe("Asia/Tokyo")
        expect(yield* Effect.flip(client.pauseSchedule("nope"))).toBeInstanceOf(ScheduleNotFound)
      }))
  })
})
