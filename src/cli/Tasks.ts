/**
 * `runstream tasks`: the tasks the server starts, with their input schemas,
 * retry policies, timeouts, limits and signals, and the queues that declare limits.
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import { Effect, Schema } from "effect"
import { type TaskInfo, TaskList } from "../domain/TaskInfo.ts"
import { RunstreamClient } from "../rpc/RunstreamClient.ts"
import { duration } from "./Format.ts"
import { Output } from "./Output.ts"

const encodeTasks = Schema.encodeSync(TaskList)

/** Longer summaries are cut in the table; `--json` has the schemas whole. */
const summaryWidth = 80

type JsonSchema = { readonly [key: string]: any }

/**
 * A JSON Schema in a few words, for a table cell: `{to: integer 0..1000000, delayMs?: integer}`,
 * `string | null`, `number[]`; `any` for the unknown. References are followed in `$defs`, a few levels deep.
 */
export const summary = (root: JsonSchema | null | undefined): string => {
  if (root === null || root === undefined) return "-"
  const defs: JsonSchema = root["$defs"] ?? root["definitions"] ?? {}
  const go = (schema: JsonSchema | undefined, depth: number): string => {
    if (schema === undefined || typeof schema !== "object") return "any"
    if (depth > 4) return "…"
    const ref = typeof schema["$ref"] === "string" ? defs[schema["$ref"].split("/").at(-1)!] : undefined
    const merged: JsonSchema = ref === undefined ? schema : { ...ref, ...schema, $ref: undefined }
    const range = merged["minimum"] !== undefined || merged["maximum"] !== undefined
      ? ` ${merged["minimum"] ?? ""}..${merged["maximum"] ?? ""}`
      : ""
    for (const key of ["anyOf", "oneOf"]) {
      if (Array.isArray(merged[key])) return merged[key].map((s: JsonSchema) => go(s, depth + 1)).join(" | ")
    }
    if (Array.isArray(merged["enum"])) return merged["enum"].map((v: unknown) => JSON.stringify(v)).join(" | ")
    if ("const" in merged) return JSON.stringify(merged["const"])
    switch (merged["type"]) {
      case "object": {
        const required = new Set<string>(merged["required"] ?? [])
        const fields = Object.entries<JsonSchema>(merged["properties"] ?? {}).map(([name, field]) =>
          `${name}${required.has(name) ? "" : "?"}: ${go(field, depth + 1)}`
        )
        return `{${fields.join(", ")}}`
      }
      case "array":
        return `${go(merged["items"], depth + 1)}[]`
      case undefined:
        return "any"
      default:
        return `${Array.isArray(merged["type"]) ? merged["type"].join(" | ") : merged["type"]}${range}`
    }
  }
  const text = go(root, 0)
  return text.length > summaryWidth ? `${text.slice(0, summaryWidth - 1)}…` : text
}

export const command = Command.make("tasks", {
  json: Options.boolean("json").pipe(Options.withDescription("Print the tasks, their JSON Schemas whole, as one JSON document."))
}, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const output = yield* Output
    const list = yield* client.tasks()
    if (options.json) return yield* output.json(encodeTasks(list))
    yield* output.table(
      [
        { header: "TASK" },
        { header: "ATTEMPTS", right: true },
        { header: "BACKOFF" },
        { header: "TIMEOUT" },
        { header: "LIMITS" },
        { header: "INPUT" },
        { header: "SIGNALS" }
      ],
      list.tasks.map((task) => [
        task.name,
        String(task.retry.maxAttempts),
        `${duration(task.retry.initialDelayMs)}..${duration(task.retry.maxDelayMs)} x${task.retry.factor}`,
        task.timeoutMs === null ? "-" : duration(task.timeoutMs),
        limits(task, task.concurrencyKeyField),
        summary(task.input as JsonSchema | null),
        signals(task.signals)
      ])
    )
    if (list.queues.length > 0) {
      yield* output.line("")
      yield* output.table(
        [{ header: "QUEUE" }, { header: "LIMITS" }],
        list.queues.map((queue) => [queue.name, limits(queue, null)])
      )
    }
  })).pipe(Command.withDescription("List the tasks the server starts, with their input schemas, retry policies, limits and signals."))

/** The signals a task's runs wait for, each with its data in a few words: `approve: {approved: boolean}`; `-` without any. */
const signals = (declared: TaskInfo["signals"]): string => {
  const entries = Object.entries(declared)
  return entries.length === 0 ? "-" : entries.map(([name, data]) => `${name}: ${summary(data as JsonSchema | null)}`).join("; ")
}

/** A task's or a queue's limits in a few words: `2 running, 10 per 1.0s, per tenant`; `-` without any. */
const limits = (
  declared: Pick<TaskInfo, "concurrency" | "rateLimit">,
  keyField: string | null
): string => {
  const parts = [
    ...(declared.concurrency === null ? [] : [`${declared.concurrency.limit} running`]),
    ...(declared.rateLimit === null ? [] : [`${declared.rateLimit.limit} per ${duration(declared.rateLimit.periodMs)}`])
  ]
  if (parts.length === 0) return "-"
  return [...parts, keyField === null ? "per key" : `per ${keyField}`].join(", ")
}
