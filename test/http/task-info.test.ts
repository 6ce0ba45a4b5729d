/**
 * What `GET /v1/tasks`, RPC `Tasks` and the OpenAPI document say of a task's
 * retention and of the input field its limits take a start's key from, and a
 * REST start of such a task: its key from its input, or a 400 naming the field.
 */
import { HttpServer } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import * as Server from "../../src/http/Server.ts"
import * as RunstreamClient from "../../src/rpc/RunstreamClient.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { BaseUrl, call, post, quiet } from "./support.ts"

const PerTenant = Task.make("test.per-tenant", {
  input: Schema.Struct({ tenant: Schema.optional(Schema.Union(Schema.String, Schema.Int)), n: Schema.Int }),
  output: Schema.Void,
  concurrency: { limit: 2, key: "tenant" },
  retention: "1 hour",
  run: () => Effect.void
})

const KeptForGood = Task.make("test.kept", {
  input: Schema.Struct({ user: Schema.String }),
  output: Schema.Void,
  rateLimit: { limit: 5, period: "1 second", key: "user" },
  retention: "off",
  run: () => Effect.void
})

const Plain = Task.make("test.plain", { input: Schema.Unknown, output: Schema.Void, run: () => Effect.void })

/** The API on a fresh program with these tasks and no workers (runs wait), on a free port. */
const program = Layer.effect(BaseUrl, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
  Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1" })),
  Layer.provideMerge(RunstreamTest.layer({
    tasks: [PerTenant, KeptForGood, Plain],
    workers: false,
    queues: { mail: { concurrency: { limit: 3 } }, bulk: { rateLimit: { limit: 50, period: "1 second" } } }
  })),
  Layer.provide(quiet)
)

const client = Layer.unwrapEffect(Effect.map(BaseUrl, (base) => RunstreamClient.layer({ url: `${base}/rpc` })))

const runCount = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_runs`, (rows) => rows[0]!.n))

describe("tasks' retention and limit keys over HTTP and RPC", () => {
  layer(Layer.provideMerge(client, program), { excludeTestServices: true })((it) => {
    it.effect("GET /v1/tasks and RPC Tasks show each task's own retention (null: the default) and its key's field", () =>
      Effect.gen(function*() {
        const expected = {
          "test.per-tenant": { concurrency: { limit: 2 }, rateLimit: null, concurrencyKeyField: "tenant", retention: { keepMs: 3_600_000 } },
          "test.kept": { concurrency: null, rateLimit: { limit: 5, periodMs: 1000 }, concurrencyKeyField: "user", retention: "off" },
          "test.plain": { concurrency: null, rateLimit: null, concurrencyKeyField: null, retention: null }
        }
        const { body, status } = yield* call("/v1/tasks")
        expect(status).toBe(200)
        const pick = (task: any) => [task.name, {
          concurrency: task.concurrency,
          rateLimit: task.rateLimit,
          concurrencyKeyField: task.concurrencyKeyField,
          retention: task.retention
        }]
        expect(Object.fromEntries(body.tasks.map(pick))).toEqual(expected)
        const rpc = yield* Effect.flatMap(RunstreamClient.RunstreamClient, (c) => c.tasks())
        expect(Object.fromEntries(rpc.tasks.map(pick))).toEqual(expected)
        // And the queues that declare limits.
        const queues = [
          { name: "mail", concurrency: { limit: 3 }, rateLimit: null },
          { name: "bulk", concurrency: null, rateLimit: { limit: 50, periodMs: 1000 } }
        ]
        expect(body.queues).toEqual(queues)
        expect(rpc.queues).toEqual(queues)
      }))

    it.effect("the OpenAPI document describes both fields", () =>
      Effect.gen(function*() {
        const { body } = yield* call("/openapi.json")
        const info = body.components.schemas.TaskInfo
        expect(info.required).toEqual(expect.arrayContaining(["concurrencyKeyField", "retention"]))
        expect(info.properties.concurrencyKeyField.description).toContain("The input field a start without `concurrencyKey` takes its key from")
        expect(info.properties.retention.description).toContain("null: the program's default (`RUNSTREAM_RETENTION`)")
        expect(body.paths["/v1/tasks"].get.description).toContain("concurrencyKeyField")
        expect(body.components.schemas.QueueInfo.description).toContain("Limits declared on a queue")
        expect(body.paths["/v1/runs"].post.description).toContain("takes the key from that field of the input")
      }))

    it.effect("a REST start takes its key from the input; one whose input lacks it is a 400 naming the field, nothing written", () =>
      Effect.gen(function*() {
        const keyed = yield* post("/v1/runs", { task: "test.per-tenant", input: { tenant: 7, n: 1 } })
        expect(keyed.status).toBe(201)
        expect(keyed.body.run.concurrencyKey).toBe("7")
        const own = yield* post("/v1/runs", { task: "test.per-tenant", input: { n: 2 }, concurrencyKey: "mine" })
        expect(own.body.run.concurrencyKey).toBe("mine")
        const before = yield* runCount
        const refused = yield* post("/v1/runs", { task: "test.per-tenant", input: { n: 3 } })
        expect(refused.status).toBe(400)
        expect(refused.body.error).toMatchObject({
          code: "invalid_input",
          message: "input of task 'test.per-tenant' is invalid: tenant: the key of the task's limits must be a string or an integer (actual: missing)",
          issues: [{ path: ["tenant"] }]
        })
        expect(yield* runCount).toBe(before)
      }))
  })
})
