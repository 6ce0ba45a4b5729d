import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { describeConfigError } from "../../src/main/Main.ts"
import * as Programs from "../../src/main/Programs.ts"

const read = (env: Record<string, string>) =>
  Programs.BusConfig("postgres").pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))

describe("RUNSTREAM_BUS", () => {
  it.effect("picks the bus and its NATS settings, with defaults", () =>
    Effect.gen(function*() {
      expect(yield* read({})).toEqual({ kind: "postgres", nats: { servers: ["nats://127.0.0.1:4222"], subjectPrefix: undefined } })
      expect(yield* read({ RUNSTREAM_BUS: "nats", RUNSTREAM_NATS_URL: "nats://a:4222, tls://b:4222", RUNSTREAM_NATS_SUBJECT_PREFIX: "acme.prod" }))
        .toEqual({ kind: "nats", nats: { servers: ["nats://a:4222", "tls://b:4222"], subjectPrefix: "acme.prod" } })
    }))

  it.effect("reports every bad value at once, by variable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(read({ RUNSTREAM_BUS: "redis", RUNSTREAM_NATS_URL: "http://x", RUNSTREAM_NATS_SUBJECT_PREFIX: "a.*" }))
      const text = describeConfigError(error)
      expect(text).toContain(`RUNSTREAM_BUS: Expected one of (memory, postgres, nats) but received "redis"`)
      expect(text).toContain("RUNSTREAM_NATS_URL: must be nats:// or tls:// URLs, separated by commas")
      expect(text).toContain("RUNSTREAM_NATS_SUBJECT_PREFIX: must be dot-separated tokens")
    }))
})
