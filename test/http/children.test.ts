/**
 * Child runs over HTTP: `GET /v1/runs/:id` gives a parent its children
 * (`{ id, task, status }`) and a child its `parentId`; the OpenAPI document
 * describes both.
 */
import { HttpServer } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import * as Server from "../../src/http/Server.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { BaseUrl, call, post, quiet } from "./support.ts"

const Leaf = Task.make("test.http.leaf", {
  input: Schema.Struct({ n: Schema.Int }),
  output: Schema.Int,
  run: ({ n }) => Effect.succeed(n + 1)
})

const Parent = Task.make("test.http.parent", {
  input: Schema.Null,
  output: Schema.Array(Schema.Int),
  run: (_, ctx) =>
    Effect.gen(function*() {
      const a = yield* ctx.start(Leaf, { n: 1 }, { name: "a" })
      const b = yield* ctx.start(Leaf, { n: 2 }, { name: "b" })
      return yield* ctx.all([a, b])
    })
})

const program = Layer.effect(BaseUrl, HttpServer.addressFormattedWith(Effect.succeed)).pipe(
  Layer.provideMerge(Server.layer({ port: 0, host: "127.0.0.1" })),
  Layer.provideMerge(RunstreamTest.layer({ tasks: [Leaf, Parent], workers: { lease: "30 seconds", shutdownGrace: "1 second" } })),
  Layer.provide(quiet)
)

describe("child runs over HTTP", () => {
  it.live("GET /v1/runs/:id lists a parent's children and gives a child its parentId", () =>
    Effect.gen(function*() {
      const started = yield* post("/v1/runs", { task: Parent.name, input: null })
      expect(started.status).toBe(201)
      const id = started.body.run.id as string
      const done = yield* RunstreamTest.waitForRunCompletion(id as never, "40 seconds")
      expect(done.output).toEqual([2, 3])

      const parent = yield* call(`/v1/runs/${id}`)
      expect(parent.status).toBe(200)
      expect(parent.body.run.parentId).toBeUndefined()
      expect(parent.body.run.moreChildren).toBe(false)
      expect(parent.body.run.children).toHaveLength(2)
      for (const child of parent.body.run.children) {
        expect(child).toEqual({ id: expect.any(String), task: Leaf.name, status: "succeeded" })
        const got = yield* call(`/v1/runs/${child.id}`)
        expect(got.body.run.parentId).toBe(id)
        expect(got.body.run.children).toBeUndefined()
      }

      const openapi = yield* call("/openapi.json")
      const run = JSON.stringify(openapi.body)
      expect(run).toContain("\"parentId\"")
      expect(run).toContain("\"moreChildren\"")
      expect(run).toContain("RunChild")
    }).pipe(Effect.provide(program)))
})
