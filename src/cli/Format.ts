/**
 * Runs as people read them: times, durations, and a run's fields in a table
 * row or as a list of fields.
 * @since 0.1.0
 */
import { DateTime, Option } from "effect"
import type { Run } from "../domain/Run.ts"
import { type Cell, dim, statusAnsi } from "./Output.ts"

/** `2026-12-07 04:31:28` (UTC). */
export const time = (at: DateTime.Utc | null): string =>
  at === null ? "" : DateTime.formatIso(at).slice(0, 19).replace("T", " ")

/** `850ms`, `4.2s`, `3m12s`, `2h03m`. */
export const duration = (millis: number): string => {
  if (millis < 1000) return `${Math.max(0, Math.round(millis))}ms`
  if (millis < 60_000) return `${(millis / 1000).toFixed(1)}s`
  const seconds = Math.round(millis / 1000)
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`
  return `${Math.floor(seconds / 3600)}h${String(Math.floor(seconds / 60) % 60).padStart(2, "0")}m`
}

/** From start to finish, or to `now` while it runs; empty before it starts. */
export const runDuration = (run: Run, now: DateTime.Utc): string =>
  run.startedAt === null
    ? ""
    : duration(DateTime.distance(run.startedAt, run.finishedAt ?? now))

export const listColumns = [
  { header: "ID" },
  { header: "TASK" },
  { header: "QUEUE" },
  { header: "STATUS" },
  { header: "ATTEMPT", right: true },
  { header: "CREATED (UTC)" },
  { header: "DURATION", right: true }
] as const

export const listRow = (run: Run, now: DateTime.Utc): ReadonlyArray<Cell> => [
  { text: run.id },
  { text: run.task },
  { text: run.queue },
  { text: run.status, ansi: statusAnsi(run.status) },
  { text: `${run.attempt}/${run.maxAttempts}` },
  { text: time(run.createdAt), ansi: dim },
  { text: runDuration(run, now) }
]

const json = (value: unknown) => value === undefined ? "" : JSON.stringify(value)

/** A run's children as `runs get` shows them: how many (of those listed), by status. */
const childrenSummary = (run: Run): string => {
  const children = run.children ?? []
  if (children.length === 0) return ""
  const byStatus = new Map<string, number>()
  for (const child of children) byStatus.set(child.status, (byStatus.get(child.status) ?? 0) + 1)
  const counts = [...byStatus].map(([status, n]) => `${status} ${n}`).join(", ")
  return `${children.length}${run.moreChildren === true ? " (the first listed)" : ""}: ${counts}`
}

/** A run's fields, one per row, for `runs get`. */
export const fields = (run: Run, now: DateTime.Utc): ReadonlyArray<ReadonlyArray<Cell>> => {
  const rows: Array<[string, string, Cell["ansi"]?]> = [
    ["id", run.id],
    ["task", run.task],
    ["queue", run.queue],
    ["status", run.status, statusAnsi(run.status)],
    ["attempt", `${run.attempt} of ${run.maxAttempts}`],
    ["priority", String(run.priority)],
    ["idempotency key", run.idempotencyKey ?? ""],
    ["replay of", run.replayOf ?? ""],
    ["parent", run.parentId ?? ""],
    ["children", childrenSummary(run)],
    ["timeout", run.timeoutMs === null ? "" : duration(run.timeoutMs)],
    ["created", time(run.createdAt)],
    ["run at", time(run.runAt)],
    ["started", time(run.startedAt)],
    ["finished", time(run.finishedAt)],
    ["duration", runDuration(run, now)],
    ["events", String(run.lastSeq)],
    ["input", json(run.input)],
    ["output", run.output === null ? "" : json(run.output)],
    ["error", run.error === null ? "" : `${run.error.tag}: ${run.error.message}${run.error.retryable ? " (retryable)" : ""}`, statusAnsi("failed")]
  ]
  return rows
    .filter(([, value]) => value !== "")
    .map(([name, value, ansi]) => [{ text: name, ansi: dim }, { text: value, ansi }])
}

export const optionalText = (option: Option.Option<string>) => Option.getOrUndefined(option)
