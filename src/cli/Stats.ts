/**
 * `runstream stats`: the runs by task and status, the queues, and the last
 * hour (runs ended per minute, queue wait and duration percentiles).
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import { DateTime, Effect, Schema } from "effect"
import { Stats } from "../domain/Stats.ts"
import { RunstreamClient } from "../rpc/RunstreamClient.ts"
import { duration } from "./Format.ts"
import { dim, Output, statusAnsi } from "./Output.ts"

const encodeStats = Schema.encodeSync(Stats)

const statuses = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"] as const

const bars = "▁▂▃▄▅▆▇█"

/** One character per minute, its height the number of runs ended then; a space for none. */
export const sparkline = (counts: ReadonlyArray<number>): string => {
  const max = Math.max(0, ...counts)
  return counts.map((n) => n === 0 ? " " : bars[Math.min(bars.length - 1, Math.floor((n / max) * (bars.length - 1)))]).join("")
}

const millis = (value: number | null) => value === null ? "-" : duration(value)

export const command = Command.make("stats", {
  json: Options.boolean("json").pipe(Options.withDescription("Print the server's figures as one JSON document."))
}, (options) =>
  Effect.gen(function*() {
    const client = yield* RunstreamClient
    const output = yield* Output
    const stats = yield* client.stats()
    if (options.json) return yield* output.json(encodeStats(stats))

    const tasks = [...new Set(stats.runs.map((row) => row.task))].sort()
    const count = (task: string, status: string) =>
      stats.runs.find((row) => row.task === task && row.status === status)?.count ?? 0
    yield* output.line(output.paint(`Runs now, and ended in the last hour (since ${DateTime.formatIso(stats.window.since).slice(11, 16)} UTC)`, dim))
    yield* output.table(
      [{ header: "TASK" }, ...statuses.map((status) => ({ header: status.toUpperCase(), right: true }))],
      tasks.map((task) => [
        task,
        ...statuses.map((status) => {
          const n = count(task, status)
          return { text: String(n), ansi: n === 0 ? dim : statusAnsi(status) }
        })
      ])
    )
    yield* output.line("")
    if (stats.queues.length === 0) yield* output.line(output.paint("No run is waiting or running.", dim))
    else {
      yield* output.table(
      [
        { header: "QUEUE" },
        { header: "WAITING", right: true },
        { header: "SCHEDULED", right: true },
        { header: "RUNNING", right: true },
        { header: "OLDEST WAITING", right: true }
      ],
      stats.queues.map((queue) => [
        queue.queue,
        String(queue.waiting),
        String(queue.scheduled),
        String(queue.running),
        queue.oldestWaitingSince === null ? "-" : duration(DateTime.distance(queue.oldestWaitingSince, stats.at))
      ])
    )
    }
    const minutes = stats.finishedPerMinute
    const total = (key: "succeeded" | "failed" | "cancelled") => minutes.reduce((sum, minute) => sum + minute[key], 0)
    yield* output.line("")
    yield* output.line(
      `Last hour: ${output.paint(`${total("succeeded")} succeeded`, statusAnsi("succeeded"))}, ` +
        `${output.paint(`${total("failed")} failed`, statusAnsi("failed"))}, ` +
        `${output.paint(`${total("cancelled")} cancelled`, statusAnsi("cancelled"))}` +
        (stats.window.truncated ? " (newest runs only)" : "")
    )
    yield* output.line(`  ended per minute  |${sparkline(minutes.map((m) => m.succeeded + m.failed + m.cancelled))}|`)
    yield* output.line(`  failed per minute |${output.paint(sparkline(minutes.map((m) => m.failed)), statusAnsi("failed"))}|`)
    yield* output.line(`  queue wait  p50 ${millis(stats.queueWaitMs.p50)}  p95 ${millis(stats.queueWaitMs.p95)}`)
    yield* output.line(`  duration    p50 ${millis(stats.durationMs.p50)}  p95 ${millis(stats.durationMs.p95)}`)
  })).pipe(Command.withDescription("Show the runs by task and status, the queues, and the last hour's figures."))
