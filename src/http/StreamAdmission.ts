/**
 * Admission of the requests that set up event streams (`POST /rpc`, SSE),
 * a few at a time, before the Effect runtime sees them.
 *
 * Setting up a stream costs the server a few milliseconds of CPU (the HTTP
 * stack, the RPC server, a bus subscription). A thousand clients connecting
 * at once would all be set up at once: the runtime's scheduler takes their
 * fibers' steps in turn, so every one of them (and `/healthz`, and every
 * other request) waits for all of them, and the heap holds a thousand
 * half-built streams. Here at most `concurrency` such requests are past the
 * gate, from their arrival to their answer's head; the others wait in
 * arrival order as Node's own request objects, which cost the runtime
 * nothing. A request leaves the gate after 100 ms even if not set up, so
 * that clients sending their requests slowly cannot hold it. Other requests
 * are not held. Past `maxWaiting` waiting, a new one
 * is answered 503 `server_busy` at once.
 * @since 0.2.0
 */
import { type IncomingMessage, Server, type ServerResponse } from "node:http"

export interface StreamAdmissionOptions {
  /** Stream requests being set up at once. */
  readonly concurrency: number
  /** Stream requests waiting to be set up; past it, refused. */
  readonly maxWaiting: number
  /**
   * How long a request may hold its place in the gate (default 100 ms): its
   * setup's work is done by then unless it waits on its client.
   */
  readonly setupTimeoutMs?: number | undefined
}

/** Requests that may open an event stream: any RPC request, and SSE. */
const isStreamSetup = (request: IncomingMessage) =>
  request.url === "/rpc" || (request.method === "GET" && (request.headers.accept ?? "").includes("text/event-stream"))

const busy = JSON.stringify({
  error: { code: "server_busy", message: "too many event streams are waiting to be set up; try again later" }
})

/**
 * A Node HTTP server whose `request` events for stream setups pass the gate
 * first (`emit` is where Node hands a request to its listeners, the
 * platform's handler among them).
 */
export class StreamAdmissionServer extends Server {
  private inSetup = 0
  private readonly waiting: Array<readonly [IncomingMessage, ServerResponse]> = []
  private readonly leavers = new Map<readonly [IncomingMessage, ServerResponse], () => void>()

  constructor(private readonly admission: StreamAdmissionOptions) {
    super()
  }

  /** Stream requests being set up now, and waiting (diagnostics). */
  get setups(): { readonly inProgress: number; readonly waiting: number } {
    return { inProgress: this.inSetup, waiting: this.waiting.length }
  }

  override emit(event: string | symbol, ...args: Array<any>): boolean {
    if (event !== "request" || !isStreamSetup(args[0])) return super.emit(event as string, ...args)
    const [request, response] = args as [IncomingMessage, ServerResponse]
    if (this.inSetup < this.admission.concurrency) {
      this.admit(request, response)
    } else if (this.waiting.length < this.admission.maxWaiting) {
      this.wait(request, response)
    } else {
      response.writeHead(503, { "content-type": "application/json", "retry-after": "1" }).end(busy)
    }
    return true
  }

  /** In line; a client that leaves meanwhile leaves the line at once (its place counts toward `maxWaiting`). */
  private wait(request: IncomingMessage, response: ServerResponse) {
    const entry = [request, response] as const
    const leave = () => {
      const index = this.waiting.indexOf(entry)
      if (index >= 0) this.waiting.splice(index, 1)
    }
    this.waiting.push(entry)
    this.leavers.set(entry, leave)
    request.socket.once("close", leave)
  }

  private admit(request: IncomingMessage, response: ServerResponse) {
    this.inSetup++
    let done = false
    const release = () => {
      if (done) return
      done = true
      clearTimeout(timer)
      this.inSetup--
      // The next ones are let in later, not from inside the caller: a response's
      // `writeHead` runs in the middle of a fiber's step, and requests handed
      // to the app from there were lost (23 of 1,000 SSE clients never answered).
      setImmediate(() => this.next())
    }
    // A setup that takes longer waits on its client (a body sent slowly, say),
    // not on this server: it leaves the gate, so that slow clients cannot hold it.
    const timer = setTimeout(release, this.admission.setupTimeoutMs ?? 100)
    // Set up once its head is written (a stream's comes before its first event), or gone.
    const writeHead = response.writeHead
    response.writeHead = function(this: ServerResponse, ...head: Array<any>) {
      release()
      return writeHead.apply(this, head as Parameters<typeof writeHead>)
    } as typeof writeHead
    response.once("close", release)
    super.emit("request", request, response)
  }

  private next() {
    while (this.inSetup < this.admission.concurrency && this.waiting.length > 0) {
      const entry = this.waiting.shift()!
      const [request, response] = entry
      request.socket.off("close", this.leavers.get(entry)!)
      this.leavers.delete(entry)
      this.admit(request, response)
    }
  }
}
