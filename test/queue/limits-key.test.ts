/**
 * The key of a task's limits from its input (`domain/LimitKey.ts`):
 * `concurrency: { limit, key: "tenant" }` makes a start without a
 * `concurrencyKey` count under its input's `tenant`; a start's own key wins;
 * an input without a usable value is refused naming the field, nothing
 * written; a bad declaration stops the registry.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, type Duration, Effect, Exit, Layer, Schema } from "effect"
import type { InvalidInput } from "../../src/domain/Errors.ts"
import * as Limits from "../../src/queue/Limits.ts"
import { RunQueue } from "../../src/queue/RunQueue.ts"
import { Runs } from "../../src/Runs.ts"
import * as RunSchedule from "../../src/schedules/RunSchedule.ts"
import { Schedules } from "../../src/schedules/Schedules.ts"
import * as Task from "../../src/Task.ts"
import { RunstreamTest } from "../../src/testing/index.ts"
import { fastWorkers, patience, rowCounts, withWorkers } from "./support.ts"

/** Each key's row of `runstream_limits`. */
const limitRows = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ key: string; running: number; waiting: number }>`
    SELECT key, running, waiting FROM runstream_limits ORDER BY key`
  return Object.fromEntries(rows.map((row) => [row.key, { running: row.running, waiting: row.waiting }]))
})

/** A claim by a worker that takes runs and never runs them. */
const claimAs = (workerId: string, limit: number, limitedTasks: ReadonlyArray<string>) =>
  Effect.flatMap(RunQueue, (queue) => queue.claim({ workerId, queues: ["default"], limit, leaseMs: 60_000, limitScopes: limitedTasks.map(Limits.taskScope) }))

/** A tenant as a name or a number; optional, so that the input's schema lets a start without it reach the key's check. */
const Tenant = Schema.optional(Schema.Union(Schema.String, Schema.Number, Schema.Boolean, Schema.Null))

const PerTenant = Task.make("test.per-tenant", {
  input: Schema.Struct({ tenant: Tenant, n: Schema.Int }),
  output: Schema.Int,
  concurrency: { limit: 1, key: "tenant" },
  run: ({ n }) => Effect.succeed(n)
})

describe.concurrent("the key of a task's limits from its input", () => {
  it.live("a start without concurrencyKey counts under its input's field (an integer as its text); its own key wins", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const typed = yield* runs.start(PerTenant, { tenant: "acme", n: 1 })
      const [json, numbered, own] = yield* runs.startMany([
        { task: PerTenant.name, input: { tenant: "acme", n: 2 } },
        { task: PerTenant.name, input: { tenant: 42, n: 3 } },
        { task: PerTenant.name, input: { tenant: "acme", n: 4 }, options: { concurrencyKey: "own" } }
      ])
      expect([typed, json!.run, numbered!.run, own!.run].map((run) => run.concurrencyKey)).toEqual(["acme", "acme", "42", "own"])
      expect((yield* runs.get(typed.id)).concurrencyKey).toBe("acme")
      expect(yield* limitRows).toEqual({ "42": { running: 0, waiting: 1 }, acme: { running: 0, waiting: 2 }, own: { running: 0, waiting: 1 } })
      // The limit of 1 holds per key from the input: one of acme's two runs is claimed, one of each other key.
      const claimed = yield* claimAs("one", 10, [PerTenant.name])
      expect(claimed.map((claim) => claim.runId).sort()).toEqual([typed.id, numbered!.run.id, own!.run.id].sort())
      expect(yield* limitRows).toEqual({ "42": { running: 1, waiting: 0 }, acme: { running: 1, waiting: 1 }, own: { running: 1, waiting: 0 } })
      // A replay keeps the key its original was given by its input.
      expect((yield* runs.replay(json!.run.id)).run.concurrencyKey).toBe("acme")
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [PerTenant], workers: false }))))

  it.live("workers run at most `limit` runs of a tenant at once, the tenant read from each input", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const bothIn = yield* Deferred.make<void>()
      const live = new Map<string, number>()
      const most = new Map<string, number>()
      const Gated = Task.make("test.gated-tenant", {
        input: Schema.Struct({ tenant: Schema.String, n: Schema.Int }),
        output: Schema.Int,
        // Declared on the rate limit only: it keys both limits.
        concurrency: { limit: 1 },
        rateLimit: { limit: 100, period: "1 second", key: "tenant" },
        run: ({ n, tenant }) =>
          Effect.gen(function*() {
            const now = (live.get(tenant) ?? 0) + 1
            live.set(tenant, now)
            most.set(tenant, Math.max(most.get(tenant) ?? 0, now))
            if (Array.from(live.values()).reduce((a, b) => a + b, 0) === 2) yield* Deferred.succeed(bothIn, undefined)
            yield* Deferred.await(gate)
            live.set(tenant, live.get(tenant)! - 1)
            return n
          })
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        const started = yield* runs.startMany(
          ["a", "b"].flatMap((tenant) => [1, 2, 3].map((n) => ({ task: Gated.name, input: { tenant, n } })))
        )
        const done = yield* Effect.gen(function*() {
          yield* Deferred.await(bothIn).pipe(
            Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error("no run of each tenant ran at once") })
          )
          expect(yield* limitRows).toEqual({ a: { running: 1, waiting: 2 }, b: { running: 1, waiting: 2 } })
          expect(Object.fromEntries(live)).toEqual({ a: 1, b: 1 })
          yield* Deferred.succeed(gate, undefined)
          return yield* Effect.forEach(started, ({ run }) => RunstreamTest.waitForRunCompletion(run.id, patience))
        }).pipe(withWorkers({ ...fastWorkers, concurrency: 6 }))
        expect(done.map((run) => run.status)).toEqual(Array(6).fill("succeeded"))
        expect(Object.fromEntries(most)).toEqual({ a: 1, b: 1 })
        // Every slot came back (the rows stay while they hold the rate's recent starts).
        expect(yield* limitRows).toEqual({ a: { running: 0, waiting: 0 }, b: { running: 0, waiting: 0 } })
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [Gated], workers: false })))
    }))

  it.live("an input without a usable key is refused as InvalidInput naming the field, and nothing is written", () =>
    Effect.gen(function*() {
      const runs = yield* Runs
      const before = yield* rowCounts
      const cases: ReadonlyArray<readonly [unknown, RegExp]> = [
        [{ n: 1 }, /tenant: the key of the task's limits must be a string or an integer \(actual: missing\)/],
        [{ tenant: 1.5, n: 1 }, /must be a string or an integer \(actual: number\)/],
        [{ tenant: true, n: 1 }, /\(actual: boolean\)/],
        [{ tenant: null, n: 1 }, /\(actual: object\)/],
        [{ tenant: "", n: 1 }, /tenant: the key of the task's limits is refused: .*at least 1 character/],
        [{ tenant: "t".repeat(201), n: 1 }, /at most 200 character/]
      ]
      for (const [input, pattern] of cases) {
        const error = (yield* Effect.flip(runs.startMany([{ task: PerTenant.name, input }]))) as InvalidInput
        expect(error._tag).toBe("InvalidInput")
        expect(error.message).toMatch(/^input of task 'test\.per-tenant' is invalid: tenant: /)
        expect(error.message).toMatch(pattern)
        expect(error.issues?.map((issue) => issue.path)).toEqual([["tenant"]])
      }
      // In a batch, one refused start refuses them all.
      const batch = yield* Effect.flip(runs.startMany([
        { task: PerTenant.name, input: { tenant: "fine", n: 1 } },
        { task: PerTenant.name, input: { n: 2 } }
      ]))
      expect(batch._tag).toBe("InvalidInput")
      expect(yield* rowCounts).toEqual(before)
      expect(yield* limitRows).toEqual({})
      // A start's own key needs no field.
      expect((yield* runs.start(PerTenant, { n: 3 }, { concurrencyKey: "given" })).concurrencyKey).toBe("given")
    }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [PerTenant], workers: false }))))

  it.live("an input that is no struct (a record) is read per start", () =>
    Effect.gen(function*() {
      const ByRecord = Task.make("test.by-record", {
        input: Schema.Record({ key: Schema.String, value: Schema.String }),
        output: Schema.Void,
        concurrency: { limit: 1, key: "user" },
        run: () => Effect.void
      })
      yield* Effect.gen(function*() {
        const runs = yield* Runs
        expect((yield* runs.start(ByRecord, { user: "u1", other: "x" })).concurrencyKey).toBe("u1")
        const error = yield* Effect.flip(runs.start(ByRecord, { other: "x" }))
        expect(error).toMatchObject({ _tag: "InvalidInput", issues: [{ path: ["user"] }] })
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [ByRecord], workers: false })))
    }))
})

describe.concurrent("limit key definitions", () => {
  const Input = Schema.Struct({ tenant: Schema.String, user: Schema.String })
  const define = (limits: {
    readonly concurrency?: { readonly limit: number; readonly key?: string }
    readonly rateLimit?: { readonly limit: number; readonly period: Duration.DurationInput; readonly key?: string }
  }) => Task.make("test.keyed", { input: Input, output: Schema.Void, run: () => Effect.void, ...limits })

  it.effect("a key that names no field, two different fields, or a field a struct input lacks stop the registry, naming the task", () =>
    Effect.gen(function*() {
      const cases = [
        [define({ concurrency: { limit: 1, key: "" } }), "task 'test.keyed': concurrency.key must name a field of the input (1-200 characters), got \"\""],
        [define({ rateLimit: { limit: 1, period: "1 second", key: 7 as never } }), "rateLimit.key must name a field of the input (1-200 characters), got number"],
        [
          define({ concurrency: { limit: 1, key: "tenant" }, rateLimit: { limit: 1, period: "1 second", key: "user" } }),
          "concurrency.key ('tenant') and rateLimit.key ('user') must name the same input field: both limits count runs in one row per key"
        ],
        [define({ concurrency: { limit: 1, key: "tenantId" } }), "concurrency.key 'tenantId' is not a field of the input (its fields: tenant, user)"],
        // The limit itself is checked first.
        [define({ concurrency: { limit: 0, key: "tenant" } }), "concurrency.limit must be an integer from 1 to 100000 (got 0)"]
      ] as const
      for (const [task, message] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(Layer.build(Task.layerRegistry(task))))
        expect(Exit.isFailure(exit) && String(exit.cause)).toContain(message)
      }
      for (
        const fine of [
          define({ concurrency: { limit: 1, key: "tenant" }, rateLimit: { limit: 1, period: "1 second", key: "tenant" } }),
          define({ concurrency: { limit: 1 }, rateLimit: { limit: 1, period: "1 second", key: "user" } })
        ]
      ) {
        expect(Exit.isSuccess(yield* Effect.exit(Effect.scoped(Layer.build(Task.layerRegistry(fine)))))).toBe(true)
      }
    }))

  it("Task.describe shows the key's field and the task's own retention", () => {
    expect(Task.describe(define({ rateLimit: { limit: 1, period: "1 second", key: "user" } }))).toMatchObject({
      rateLimit: { limit: 1, periodMs: 1000 },
      concurrencyKeyField: "user",
      retention: null
    })
    expect(Task.describe(define({ concurrency: { limit: 2 } }))).toMatchObject({ concurrencyKeyField: null })
    const kept = (retention: Task.Any["retention"]) =>
      Task.describe(Task.make("test.kept", { input: Input, output: Schema.Void, retention, run: () => Effect.void })).retention
    expect(kept("30 days")).toEqual({ keepMs: 30 * 24 * 3600 * 1000 })
    expect(kept("off")).toBe("off")
    expect(kept(undefined)).toBeNull()
  })
})

describe("the key of a scheduled task's limits", () => {
  it.live("a schedule whose input lacks the key's field is refused when declared and when created; one with it is kept", () =>
    Effect.gen(function*() {
      const lacking = RunSchedule.every("no-tenant", "1 hour", PerTenant, { n: 1 })
      const declared = yield* Effect.scoped(Layer.build(RunstreamTest.layer({ tasks: [PerTenant], workers: false, schedules: [lacking] }))).pipe(Effect.exit)
      expect(Exit.isFailure(declared)).toBe(true)
      expect(String(Exit.isFailure(declared) ? Cause.squash(declared.cause) : "")).toMatch(/no-tenant.*tenant: the key of the task's limits must be a string or an integer/)

      yield* Effect.gen(function*() {
        const schedules = yield* Schedules
        const refused = yield* schedules.create({ name: "api-no-tenant", task: PerTenant.name, input: { n: 1 }, every: "1 hour" }).pipe(Effect.flip)
        expect(refused._tag).toBe("InvalidInput")
        expect(refused.message).toMatch(/tenant: the key of the task's limits/)
        const kept = yield* schedules.create({ name: "api-tenant", task: PerTenant.name, input: { tenant: "acme", n: 1 }, every: "1 hour" })
        expect(kept.name).toBe("api-tenant")
        expect((yield* schedules.list({})).schedules.map((schedule) => schedule.name)).toEqual(["api-tenant"])
      }).pipe(Effect.provide(RunstreamTest.layer({ tasks: [PerTenant], workers: false })))
    }))
})
