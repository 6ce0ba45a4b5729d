/**
 * Child runs over HTTP: `GET /v1/runs/:id` gives a parent its children
 * (`{ id, task, status }`) and a child its `parentId`; `GET /v1/runs?parentId=`
 * pages through all of them; the OpenAPI document describes both.
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

      // All of them, a page at a time, newest first: `?parentId=`.
      const first = yield* call(`/v1/runs?parentId=${id}&limit=1`)
      expect(first.status).toBe(200)
      expect(first.body.runs).toHaveLength(1)
      expect(first.body.nextCursor).toEqual(expect.any(String))
      const second = yield* call(`/v1/runs?parentId=${id}&limit=1&cursor=${first.body.nextCursor}`)
      expect(second.body.runs).toHaveLength(1)
      expect(second.body.nextCursor).toBeNull()
      const listed = [...first.body.runs, ...second.body.runs]
      expect(listed.map((run: any) => run.id)).toEqual(parent.body.run.children.map((child: any) => child.id).reverse())
      for (const run of listed) expect(run.parentId).toBe(id)
      // A run without children lists none; what is not a run id is refused.
      expect((yield* call(`/v1/runs?parentId=${listed[0].id}`)).body.runs).toEqual([])
      const refused = yield* call("/v1/runs?parentId=nope")
      expect(refused.status).toBe(400)
      expect(refused.body.error.code).toBe("invalid_input")
      expect(refused.body.error.message).toContain("parentId")

      const openapi = yield* call("/openapi.json")
      const run = JSON.stringify(openapi.body)
      expect(run).toContain("\"parentId\"")
      expect(run).toContain("\"moreChildren\"")
      expect(run).toContain("RunChild")
    }).pipe(Effect.provide(program)))
})
