/**
 * `POST /v1/runs/:id/signals/:name` (issue 20): a signal to a run of
 * `demo.approval` wakes it; what the API refuses (bad data, names, bodies,
 * unknown and finished runs) is answered with a JSON error and writes nothing.
 */
import { describe, expect, layer } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Option, Stream } from "effect"
import type { RunId } from "../../src/domain/Ids.ts"
import { RunstreamClient } from "../../src/rpc/RunstreamClient.ts"
import * as Client from "../../src/rpc/RunstreamClient.ts"
import { Runs } from "../../src/Runs.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { BaseUrl, call, post, program } from "./support.ts"

/** Waits, in-process, for the run's first event of `type`. */
const waitFor = (runId: string, type: string) =>
  Effect.flatMap(Runs, (runs) =>
    runs.events(runId as RunId).pipe(
      Stream.filter((event) => event.type === type),
      Stream.runHead,
      Effect.map(Option.getOrThrow),
      Effect.timeout("40 seconds"),
      Effect.orDie
    ))

/** What the tables hold that a refused signal must leave alone. */
const counts = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql<{ signals: number; events: number }>`
      SELECT (SELECT count(*)::integer FROM runstream_signals) AS signals,
        (SELECT count(*)::integer FROM runstream_events) AS events`,
    (rows) => rows[0]!
  ))

const startApproval = Effect.map(post("/v1/runs", { task: "demo.approval", input: { document: "memo" } }), (answer) => {
  expect(answer.status).toBe(201)
  return answer.body.run.id as string
})

describe("HTTP API: signals", () => {
  layer(program({ maxBodyBytes: 4096 }), { excludeTestServices: true })((it) => {
    it.effect("a signal to a run not waiting yet is kept (202); a second of the name is ignored (200)", () =>
      Effect.gen(function*() {
        // No worker serves this queue: the run stays queued.
        const queued = yield* post("/v1/runs", { task: "demo.approval", input: { document: "later" }, queue: "elsewhere" })
        const id = queued.body.run.id as string
        const sent = yield* post(`/v1/runs/${id}/signals/approve`, { data: { approved: true, by: "ada" } })
        expect(sent).toMatchObject({ status: 202, body: { runId: id, name: "approve", created: true } })
        const again = yield* post(`/v1/runs/${id}/signals/approve`, { data: { approved: false, by: "bob" } })
        expect(again).toMatchObject({ status: 200, body: { runId: id, name: "approve", created: false } })
        // Absent data is null, which this schema refuses.
        expect((yield* post(`/v1/runs/${id}/signals/approve`, {})).status).toBe(400)
        expect((yield* post(`/v1/runs/${id}/cancel`, {})).body.run.status).toBe("cancelled")
      }))

    it.effect("a signal wakes a waiting run (202); the run finishes with its data; a finished run answers 409", () =>
      Effect.gen(function*() {
        const id = yield* startApproval
        yield* waitFor(id, "run.waiting")
        expect((yield* call(`/v1/runs/${id}`)).body.run.status).toBe("waiting")
        const sent = yield* post(`/v1/runs/${id}/signals/approve`, { data: { approved: true, by: "ada" } })
        expect(sent).toMatchObject({ status: 202, body: { runId: id, name: "approve", created: true } })
        const done = yield* RunstreamTest.waitForRunCompletion(id as RunId, "40 seconds")
        expect(done.status).toBe("succeeded")
        expect(done.output).toEqual({ document: "memo", approved: true, by: "ada" })
        // Finished: 409, nothing kept.
        const late = yield* post(`/v1/runs/${id}/signals/other`, { data: null })
        expect(late).toMatchObject({ status: 409, body: { error: { code: "run_already_finished" } } })
      }))

    it.effect("refuses bad data, undeclared and bad names, bodies over the limit, non-JSON, unknown runs: nothing written", () =>
      Effect.gen(function*() {
        const id = yield* startApproval
        yield* waitFor(id, "run.waiting")
        const before = yield* counts
        const badData = yield* post(`/v1/runs/${id}/signals/approve`, { data: { approved: "yes" } })
        expect(badData.status).toBe(400)
        expect(badData.body.error.code).toBe("invalid_input")
        expect(badData.body.error.message).toContain("the data of signal 'approve' is invalid")
        expect(badData.body.error.issues.map((issue: { path: Array<string> }) => issue.path)).toEqual([["approved"], ["by"]])
        const undeclared = yield* post(`/v1/runs/${id}/signals/reject`, { data: null })
        expect(undeclared).toMatchObject({
          status: 400,
          body: { error: { code: "invalid_input", message: "task 'demo.approval' declares no signal 'reject'" } }
        })
        const badName = yield* post(`/v1/runs/${id}/signals/${"x".repeat(101)}`, { data: null })
        expect(badName).toMatchObject({ status: 400, body: { error: { code: "invalid_input" } } })
        const spaced = yield* post(`/v1/runs/${id}/signals/a%20b`, { data: null })
        expect(spaced).toMatchObject({ status: 400, body: { error: { code: "invalid_input" } } })
        const unknownKey = yield* post(`/v1/runs/${id}/signals/approve`, { data: { approved: true, by: "ada" }, extra: 1 })
        expect(unknownKey).toMatchObject({ status: 400, body: { error: { code: "invalid_input" } } })
        const huge = yield* post(`/v1/runs/${id}/signals/approve`, { data: { approved: true, by: "x".repeat(5000) } })
        expect(huge).toMatchObject({ status: 413, body: { error: { code: "payload_too_large" } } })
        const text = yield* call(`/v1/runs/${id}/signals/approve`, { method: "POST", body: "approve", headers: { "content-type": "text/plain" } })
        expect(text.status).toBe(415)
        const missing = yield* post("/v1/runs/00000000-0000-7000-8000-000000000000/signals/approve", { data: null })
        expect(missing).toMatchObject({ status: 404, body: { error: { code: "run_not_found" } } })
        expect(yield* counts).toEqual(before)
        expect((yield* call(`/v1/runs/${id}`)).body.run.status).toBe("waiting")
        // Still waiting for a good one.
        expect((yield* post(`/v1/runs/${id}/signals/approve`, { data: { approved: false, by: "eve" } })).status).toBe(202)
        const done = yield* RunstreamTest.waitForRunCompletion(id as RunId, "40 seconds")
        expect(done.output).toEqual({ document: "memo", approved: false, by: "eve" })
      }))

    it.effect("over RPC: RunstreamClient.signal wakes the run; typed errors for bad data and a finished run", () =>
      Effect.gen(function*() {
        const base = yield* BaseUrl
        const client = Context.get(yield* Layer.build(Client.layer({ url: `${base}/rpc` })), RunstreamClient)
        const { run } = yield* client.start("demo.approval", { document: "rpc" })
        yield* waitFor(run.id, "run.waiting")
        const bad = yield* Effect.flip(client.signal(run.id, "approve", { approved: 1, by: "x" }))
        expect(bad._tag).toBe("InvalidInput")
        expect(yield* client.signal(run.id, "approve", { approved: true, by: "rpc" })).toEqual({
          runId: run.id,
          name: "approve",
          created: true
        })
        const done = yield* RunstreamTest.waitForRunCompletion(run.id, "40 seconds")
        expect(done.output).toEqual({ document: "rpc", approved: true, by: "rpc" })
        expect(yield* Effect.flip(client.signal(run.id, "approve", { approved: true, by: "rpc" }))).toMatchObject({
          _tag: "RunAlreadyFinished",
          status: "succeeded"
        })
        expect((yield* Effect.flip(client.signal("nope", "approve", null)))._tag).toBe("RunNotFound")
      }).pipe(Effect.scoped))

    it.effect("the OpenAPI document describes the route; GET /v1/tasks lists a task's signals with their schemas", () =>
      Effect.gen(function*() {
        const tasks = (yield* call("/v1/tasks")).body.tasks as Array<{ name: string; signals: Record<string, any> }>
        const approval = tasks.find((task) => task.name === "demo.approval")!
        expect(Object.keys(approval.signals)).toEqual(["approve"])
        expect(approval.signals["approve"].required).toEqual(["approved", "by"])
        expect(tasks.find((task) => task.name === "demo.echo")!.signals).toEqual({})
        const { body } = yield* call("/openapi.json")
        const route = body.paths["/v1/runs/{id}/signals/{name}"].post
        expect(Object.keys(route.responses).sort()).toEqual(expect.arrayContaining(["200", "202", "400", "404", "409", "413", "415"]))
        expect(route.requestBody.content["application/json"].schema).toEqual({ $ref: "#/components/schemas/Signal" })
      }))
  })
})
