/**
 * The HTTP API as the dashboard uses it: JSON calls with the tab's key, and
 * the shapes they answer (see the server's `/openapi.json`).
 */
import { authHeaders, keyNeeded } from "./session.ts"

export type RunStatus = "queued" | "running" | "waiting" | "succeeded" | "failed" | "cancelled"
export const statuses: ReadonlyArray<RunStatus> = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
export const isFinished = (status: RunStatus) => status === "succeeded" || status === "failed" || status === "cancelled"

export interface RunError {
  readonly tag: string
  readonly message: string
  readonly retryable: boolean
}

export interface Run {
  readonly id: string
  readonly task: string
  readonly queue: string
  readonly status: RunStatus
  readonly input: unknown
  readonly output: unknown
  readonly error: RunError | null
  readonly attempt: number
  readonly maxAttempts: number
  readonly priority: number
  readonly timeoutMs: number | null
  readonly idempotencyKey: string | null
  readonly createdAt: string
  readonly runAt: string
  readonly startedAt: string | null
  readonly finishedAt: string | null
  readonly lastSeq: number
  readonly replayOf?: string | null
  /** The run whose body started this one (`ctx.start`). */
  readonly parentId?: string
  /** Its children, oldest first, at most 100 (`GET /v1/runs/:id` alone); `moreChildren` when it has more. */
  readonly children?: ReadonlyArray<{ readonly id: string; readonly task: string; readonly status: RunStatus }>
  readonly moreChildren?: boolean
}

export interface RunEvent {
  readonly runId: string
  readonly seq: number
  readonly type: string
  readonly data: unknown
  readonly at: string
}

export interface Issue {
  readonly path: ReadonlyArray<string | number>
  readonly message: string
}

export interface RunPage {
  readonly runs: ReadonlyArray<Run>
  readonly nextCursor: string | null
}

export interface Stats {
  readonly at: string
  readonly runs: ReadonlyArray<{ readonly task: string; readonly status: RunStatus; readonly count: number }>
  readonly queues: ReadonlyArray<{
    readonly queue: string
    readonly waiting: number
    readonly scheduled?: number
    readonly running?: number
    readonly oldestWaitingSince: string | null
  }>
  readonly finishedPerMinute: ReadonlyArray<{ readonly minute: string; readonly succeeded: number; readonly failed: number; readonly cancelled?: number }>
  readonly queueWaitMs: { readonly p50: number | null; readonly p95: number | null }
  readonly durationMs: { readonly p50: number | null; readonly p95: number | null }
}

export type JsonSchema = Record<string, unknown> | boolean

export interface TaskInfo {
  readonly name: string
  readonly queue: string
  /** null when the task's schema has no JSON Schema form. */
  readonly input: JsonSchema | null
  readonly output: JsonSchema | null
  readonly retry: { readonly maxAttempts: number; readonly initialDelayMs: number; readonly maxDelayMs: number; readonly factor: number }
  readonly timeoutMs: number | null
}

/** A refused call: the server's `{"error": {code, message, issues?}}`, or a network failure (status 0). */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly issues: ReadonlyArray<Issue> = []
  ) {
    super(message)
  }
}

/** Calls the API; resolves with the JSON body of a 2xx, rejects with an `ApiFailure`. */
export const call = async <A>(path: string, init: RequestInit = {}): Promise<A> => {
  let response: Response
  try {
    response = await fetch(path, {
      ...init,
      headers: { accept: "application/json", ...authHeaders(), ...(init.headers as Record<string, string> | undefined) }
    })
  } catch (error) {
    if (init.signal?.aborted === true) throw error
    throw new ApiFailure(0, "network", "the server cannot be reached")
  }
  const text = await response.text()
  let body: any = null
  try {
    body = text === "" ? null : JSON.parse(text)
  } catch {
    body = null
  }
  if (response.ok) return body as A
  if (response.status === 401) keyNeeded()
  const error = body?.error
  throw new ApiFailure(
    response.status,
    typeof error?.code === "string" ? error.code : "http_" + response.status,
    typeof error?.message === "string" ? error.message : `${response.status} ${response.statusText}`,
    Array.isArray(error?.issues) ? error.issues : []
  )
}

const post = <A>(path: string, body?: unknown) =>
  call<A>(path, {
    method: "POST",
    ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
  })

export interface RunFilters {
  readonly status?: string
  readonly task?: string
  readonly queue?: string
  readonly q?: string
  /** A run's id: its children. */
  readonly parentId?: string
}

/** The query string of filters, without empty ones. */
export const query = (params: Record<string, string | number | undefined>) => {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== "") search.set(key, String(value))
  }
  const text = search.toString()
  return text === "" ? "" : `?${text}`
}

export const listRuns = (filters: RunFilters, limit: number, cursor: string | undefined, signal?: AbortSignal) =>
  call<RunPage>(`/v1/runs${query({ ...filters, limit, cursor })}`, signal === undefined ? {} : { signal })

export const getRun = (id: string, signal?: AbortSignal) =>
  call<{ run: Run }>(`/v1/runs/${encodeURIComponent(id)}`, signal === undefined ? {} : { signal }).then((r) => r.run)

export const cancelRun = (id: string) => post<{ run: Run }>(`/v1/runs/${encodeURIComponent(id)}/cancel`).then((r) => r.run)

export const replayRun = (id: string) =>
  post<{ run: Run; created: boolean }>(`/v1/runs/${encodeURIComponent(id)}/replay`, {})

export const startRun = (body: Record<string, unknown>) => post<{ run: Run }>("/v1/runs", body).then((r) => r.run)

export const getStats = (signal?: AbortSignal) => call<Stats>("/v1/stats", signal === undefined ? {} : { signal })

export const getTasks = (signal?: AbortSignal) =>
  call<{ tasks: ReadonlyArray<TaskInfo> }>("/v1/tasks", signal === undefined ? {} : { signal }).then((r) => r.tasks)
