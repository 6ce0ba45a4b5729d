/**
 * A server-sent-events client that behaves like a browser's `EventSource` on
 * a run's stream: it reconnects by itself with `Last-Event-ID` when the
 * connection drops or the server fails, and stops at the terminal event or at
 * a `204` (resumed at or past the end). It can also drop its own connection
 * at a chosen event, to test resuming. Plain `node:http`, so that a thousand
 * of them fit in one process.
 */
import { request, type ClientRequest } from "node:http"

export interface SseEvent {
  readonly runId: string
  readonly seq: number
  readonly type: string
  readonly at: string
}

export interface FollowResult {
  /** Every seq received, in the order received (duplicates included). */
  readonly seqs: ReadonlyArray<number>
  /** Connections after the first (resumes). */
  readonly reconnects: number
  /** Connections this client dropped on purpose. */
  readonly dropped: number
  /** Answers other than 200/204 and connection errors, by kind. */
  readonly errors: Readonly<Record<string, number>>
  readonly ended: "terminal" | "204" | "deadline"
}

export interface FollowOptions {
  readonly baseUrl: string
  readonly runId: string
  /** Epoch ms after which the client gives up. */
  readonly deadline: number
  /** Called for each event, with when it arrived and when its connection opened. */
  readonly onEvent?: (event: SseEvent, receivedAt: number, connectedAt: number) => void
  /** Drop the connection right after receiving this many events in all (once each). */
  readonly dropAfter?: ReadonlyArray<number>
  /**
   * Called once with a function that drops the open connection now (as a
   * proxy or a network change would), as if received nothing more on it; the
   * client resumes as usual. The function tells whether there was one to drop.
   */
  readonly onStart?: (drop: () => boolean) => void
}

const terminal = new Set(["run.succeeded", "run.failed", "run.cancelled"])

/** Follows a run to its end (or the deadline); never rejects. */
export const follow = (options: FollowOptions): Promise<FollowResult> =>
  new Promise((resolve) => {
    const seqs: Array<number> = []
    const errors: Record<string, number> = {}
    const drops = [...(options.dropAfter ?? [])].sort((a, b) => a - b)
    let lastId: string | undefined
    let connections = 0
    let dropped = 0
    let done = false
    let retryMs = 250
    let current: ClientRequest | undefined

    const finish = (ended: FollowResult["ended"]) => {
      if (done) return
      done = true
      current?.destroy()
      resolve({ seqs, reconnects: Math.max(0, connections - 1), dropped, errors, ended })
    }
    const failed = (kind: string) => {
      errors[kind] = (errors[kind] ?? 0) + 1
    }
    const again = () => {
      if (done) return
      if (Date.now() > options.deadline) return finish("deadline")
      const wait = retryMs
      retryMs = Math.min(2000, retryMs * 2)
      setTimeout(connect, wait)
    }

    options.onStart?.(() => {
      if (done || current === undefined) return false
      dropped++
      current.destroy()
      return true
    })

    const connect = () => {
      if (done) return
      connections++
      const connectedAt = Date.now()
      let sawTerminal = false
      let buffer = ""
      let frame: { id?: string; data?: string } = {}
      const headers: Record<string, string> = { accept: "text/event-stream" }
      if (lastId !== undefined) headers["last-event-id"] = lastId
      const req = request(`${options.baseUrl}/v1/runs/${options.runId}/events`, { headers, agent: false })
      current = req
      const giveUp = setTimeout(() => req.destroy(new Error("deadline")), Math.max(0, options.deadline - Date.now()))
      req.on("response", (res) => {
        if (res.statusCode === 204) {
          res.resume()
          clearTimeout(giveUp)
          return finish("204")
        }
        if (res.statusCode !== 200) {
          failed(`HTTP ${res.statusCode}`)
          res.resume()
          return
        }
        retryMs = 250
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => {
          buffer += chunk
          let newline: number
          while ((newline = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, newline).replace(/\r$/, "")
            buffer = buffer.slice(newline + 1)
            if (line === "") {
              if (frame.data !== undefined) {
                const event = JSON.parse(frame.data) as SseEvent
                if (frame.id !== undefined) lastId = frame.id
                seqs.push(event.seq)
                options.onEvent?.(event, Date.now(), connectedAt)
                if (terminal.has(event.type)) sawTerminal = true
                if (drops.length > 0 && seqs.length >= drops[0]! && !sawTerminal) {
                  drops.shift()
                  dropped++
                  req.destroy()
                  return
                }
              }
              frame = {}
            } else if (!line.startsWith(":")) {
              const colon = line.indexOf(":")
              const field = colon < 0 ? line : line.slice(0, colon)
              const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "")
              if (field === "id") frame.id = value
              else if (field === "data") frame.data = frame.data === undefined ? value : `${frame.data}\n${value}`
            }
          }
        })
        res.on("error", () => {})
      })
      req.on("error", (error) => {
        if (!done && error.message !== "socket hang up" && !/aborted|ECONNRESET/.test(error.message)) failed(error.message.slice(0, 60))
      })
      req.on("close", () => {
        clearTimeout(giveUp)
        if (current === req) current = undefined
        if (sawTerminal) finish("terminal")
        else again()
      })
      req.end()
    }
    connect()
  })

/** Whether `seqs` is exactly 1..last, once each, in order; what is wrong otherwise. */
export const judge = (seqs: ReadonlyArray<number>, last: number) => {
  const unique = new Set(seqs)
  let outOfOrder = 0
  for (let i = 1; i < seqs.length; i++) if (seqs[i]! <= seqs[i - 1]!) outOfOrder++
  let missing = 0
  for (let s = 1; s <= last; s++) if (!unique.has(s)) missing++
  return { duplicates: seqs.length - unique.size, missing, outOfOrder, extra: seqs.filter((s) => s > last || s < 1).length }
}
