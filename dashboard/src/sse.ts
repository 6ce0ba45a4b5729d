/**
 * Server-sent events over `fetch`, because `EventSource` cannot send an
 * `Authorization` header. Behaves as `EventSource` does: reconnects after a
 * dropped connection (after the server's `retry:` delay) with
 * `Last-Event-ID`, and stops on `204 No Content` (a finished run's stream has
 * nothing more), on a 4xx, or when closed.
 */
import { authHeaders, keyNeeded } from "./session.ts"

export interface Message {
  readonly id: string | undefined
  readonly event: string
  readonly data: string
}

export interface Handlers {
  readonly onMessage: (message: Message) => void
  /** Called on each (re)connection and each loss; `error` set when the stream gave up. */
  readonly onState?: (state: "connecting" | "open" | "closed", error?: string) => void
}

/** Splits a stream of text into SSE messages (the WHATWG parsing rules, `retry:` included). */
export const makeParser = (emit: (message: Message) => void, onRetry: (ms: number) => void) => {
  let buffer = ""
  let data: Array<string> = []
  let event = ""
  let id: string | undefined
  let dispatchedId: string | undefined
  const line = (text: string) => {
    if (text === "") {
      dispatchedId = id
      if (data.length > 0) emit({ id, event: event === "" ? "message" : event, data: data.join("\n") })
      data = []
      event = ""
      return
    }
    if (text.startsWith(":")) return
    const colon = text.indexOf(":")
    const field = colon === -1 ? text : text.slice(0, colon)
    let value = colon === -1 ? "" : text.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    if (field === "data") data.push(value)
    else if (field === "event") event = value
    else if (field === "id" && !value.includes("\0")) id = value
    else if (field === "retry" && /^\d+$/.test(value)) onRetry(Number(value))
  }
  return {
    push: (chunk: string) => {
      buffer += chunk
      let start = 0
      for (;;) {
        const match = /\r\n|\r|\n/g
        match.lastIndex = start
        const found = match.exec(buffer)
        // A lone \r at the end may be the first half of \r\n: wait for more.
        if (found === null || (found[0] === "\r" && found.index === buffer.length - 1)) break
        line(buffer.slice(start, found.index))
        start = found.index + found[0].length
      }
      buffer = buffer.slice(start)
    },
    /** The id of the last message dispatched, for `Last-Event-ID`. */
    lastId: () => dispatchedId
  }
}

/** Follows `path`; returns a function that closes the stream. */
export const follow = (path: string, handlers: Handlers, options: { readonly lastEventId?: string } = {}) => {
  const controller = new AbortController()
  let retryMs = 3000
  let lastId = options.lastEventId
  const run = async () => {
    for (;;) {
      handlers.onState?.("connecting")
      let failure: string | undefined
      try {
        const response = await fetch(path, {
          headers: {
            accept: "text/event-stream",
            ...authHeaders(),
            ...(lastId === undefined ? {} : { "last-event-id": lastId })
          },
          signal: controller.signal
        })
        if (response.status === 204) return handlers.onState?.("closed")
        if (response.status === 401) keyNeeded()
        if (response.status >= 400 && response.status < 500) {
          const body = await response.json().catch(() => null)
          return handlers.onState?.("closed", body?.error?.message ?? `${response.status} ${response.statusText}`)
        }
        if (!response.ok || response.body === null) throw new Error(`${response.status} ${response.statusText}`)
        handlers.onState?.("open")
        const parser = makeParser(handlers.onMessage, (ms) => (retryMs = ms))
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          parser.push(value)
          lastId = parser.lastId() ?? lastId
        }
      } catch (error) {
        if (controller.signal.aborted) return
        failure = error instanceof Error ? error.message : String(error)
      }
      if (controller.signal.aborted) return
      handlers.onState?.("connecting", failure)
      await new Promise((resolve) => setTimeout(resolve, retryMs))
      if (controller.signal.aborted) return
    }
  }
  void run()
  return () => controller.abort()
}
