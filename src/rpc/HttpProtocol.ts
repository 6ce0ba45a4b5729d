/**
 * The `@effect/rpc` server protocol over `POST /rpc` (NDJSON), bounded. One
 * request is one RPC client: its body is a series of messages, its answer the
 * stream of responses.
 *
 * The library's own HTTP protocol reads the whole body into one string, then
 * parses every line and starts every call in it: three bodies of 50,000 calls
 * took a server's heap. Here the body is read as it arrives, one line at a
 * time, and each line is checked (`RpcFrame`) and handed over before the next
 * is read:
 * - a line longer than `maxMessageBytes` is refused as soon as it passes the
 *   limit, never held whole;
 * - at most `maxCalls` calls are in flight per request; one more is refused;
 * - stream calls are admitted a few at a time across all requests, each in a
 *   turn of its own (see `Limits.streamSetups`);
 * - past `maxCalls` stream calls refused for the process's stream budget
 *   (`TooManyStreams`), the request is refused: each refusal is cheap, but a
 *   body of them never ends;
 * - the answer is a bounded mailbox: a client that does not read its answer
 *   holds its calls (and the reading of its body) back, not the server's memory.
 *
 * A refusal before anything was answered is an HTTP error with the API's JSON
 * body (400, 413, 429); after, a protocol `Defect` that ends the answer (the
 * client's calls fail with it), sent once the calls that write
 * (`answeredBeforeRefusal`) have their answers: a run started by the line
 * before a bad one is told to its client, not created unseen. Either way the rest of the body is read and
 * dropped for a moment, so the client reads the answer, then the connection
 * is closed.
 * @since 0.1.0
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest, NodeStream } from "@effect/platform-node"
import { type RpcMessage, RpcServer } from "@effect/rpc"
import { Deferred, Duration, Effect, Either, Mailbox, Option, Scope, Stream } from "effect"
import { IncomingMessage, ServerResponse } from "node:http"
import * as FairSemaphore from "../internal/FairSemaphore.ts"
import { CallSetup } from "./CallSetup.ts"
import * as RpcFrame from "./RpcFrame.ts"

export interface Limits {
  /** The largest message (one NDJSON line), in bytes. */
  readonly maxMessageBytes: number
  /** Calls in flight at once per request. */
  readonly maxCalls: number
  /**
   * Stream calls being set up at once, across all requests (default
   * `RUNSTREAM_STREAM_SETUPS`'s, 8).
   *
   * A call's setup (the RPC server's fiber, span and context, the handler's
   * subscription: a few ms of CPU) runs inside the step of the fiber that
   * reads the body, so a chunk of 16 `AllEvents` lines was one step of 16
   * setups, and ten such bodies held the event loop and every queued fiber
   * (`/healthz`'s too) behind 160 setups. Here a stream call first waits for
   * one of these places, in arrival order, then for a turn of the scheduler
   * of its own, and the body is read on once the call is set up (its handler
   * says so: `CallSetup`) or has answered: a fiber queued meanwhile waits
   * behind at most this many setups, and a body is read only as fast as its
   * calls are set up.
   */
  readonly streamSetups?: number | undefined
}

/** A stream call holds its place in the admission this long at most (it then waits on the database, not on this server). */
const setupTimeoutMs = 100

/** A refusal waits this long at most for the answers of the writing calls in flight. */
const writesGrace = Duration.seconds(5)

/**
 * Messages waiting to be written per request; past it, the calls producing
 * them wait. Small: one message can be a page of a run's log (up to
 * `RUNSTREAM_EVENT_PAGE_SIZE` events), and a client that does not read must
 * cost the server little.
 */
const answerBuffer = 4

/** A client whose answer has begun: what the protocol needs to route responses to it. */
interface Client {
  readonly answer: Mailbox.Mailbox<Uint8Array>
  /** Ids of the calls that have not ended yet. */
  readonly inFlight: Set<string>
  /** Among them, the calls that write (see `answeredBeforeRefusal`). */
  readonly writing: Set<string>
  /** Called when the last writing call in flight ends. */
  onWritesDone: (() => void) | undefined
  /** The stream call being set up (one at a time per client: the body is not read meanwhile), and how to say it is. */
  settingUp: { readonly id: string; readonly done: () => void } | undefined
  /** Stream calls refused for the stream budget so far. */
  overBudget: number
}

/** Resumes once no writing call of the client is in flight. */
const writesDone = (client: Client) =>
  Effect.async<void>((resume) => {
    if (client.writing.size === 0) return resume(Effect.void)
    client.onWritesDone = () => resume(Effect.void)
  })

const tooManyCalls = (limit: number) =>
  new RpcFrame.FrameRefused({
    status: 429,
    code: "too_many_calls",
    message: `more than ${limit} calls in flight in one request (RUNSTREAM_RPC_MAX_CALLS)`
  })

const tooManyStreams = (limit: number) =>
  new RpcFrame.FrameRefused({
    status: 503,
    code: "too_many_streams",
    message: `more than ${limit} stream calls of one request refused for the server's stream budget (RUNSTREAM_MAX_STREAMS)`
  })

const noMessage = RpcFrame.invalidMessage("the request body holds no RPC message")

const unreadable = new RpcFrame.FrameRefused({ status: 400, code: "invalid_body", message: "the request body could not be read" })

const encoder = new TextEncoder()

const frame = (message: unknown) => encoder.encode(`${JSON.stringify(message)}\n`)

/** The refusal as a protocol `Defect` (an `Error`'s shape, which the client decodes as one). */
const defectFrame = (refusal: RpcFrame.FrameRefused) =>
  frame({ _tag: "Defect", defect: { name: "RpcProtocolError", message: `${refusal.code}: ${refusal.message}` } })

const errorResponse = (refusal: RpcFrame.FrameRefused) =>
  HttpServerResponse.unsafeJson({ error: { code: refusal.code, message: refusal.message } }, { status: refusal.status })

const nodeSource = (request: HttpServerRequest.HttpServerRequest) =>
  Option.liftPredicate(NodeHttpServerRequest.toIncomingMessage(request) as unknown, (source) => source instanceof IncomingMessage)

/**
 * A refused body: how much more of it is read and dropped (so that a client
 * that sends all before it reads gets its answer), and how long after the
 * answer the connection stays open before it is closed.
 *
 * `chunks` bounds the drop too: Node's HTTP parser calls into JavaScript for
 * each chunk of a chunked body, and a client writing one byte per chunk (an
 * endless body of newlines) made a megabyte of drop a million calls (6 MB on
 * the wire), read in bursts of up to 32 socket reads of 64 KB per turn of the
 * loop: 140-320 ms with nothing else served (fault scenario 6, "huge ids").
 * A client's own chunks are kilobytes: a megabyte is a few dozen of them.
 */
const linger = { bytes: 1024 * 1024, chunks: 256, ms: 5000 }

/**
 * Reads and drops the rest of a refused body, up to `linger.bytes` or
 * `linger.chunks`, then stops reading the socket: a client that never stops
 * sending (a flood, an endless line) then waits on its own writes, at no cost
 * here. `linger.ms` after the answer is sent, the connection is closed;
 * closing at once could reset it before the client has read the answer.
 */
const dropRest = (source: IncomingMessage, response: unknown, answered: boolean) => {
  let bytes = 0
  let chunks = 0
  const count = (chunk: Buffer) => {
    bytes += chunk.length
    chunks += 1
    if (bytes <= linger.bytes && chunks <= linger.chunks) return
    source.off("data", count)
    source.pause()
    // The socket at once: the message alone would stop it only once its buffer is full, a callback per chunk later.
    source.socket.pause()
  }
  source.on("data", count)
  // Refused before any answer (an HTTP error follows): the connection is not kept for another request.
  if (!answered && response instanceof ServerResponse && !response.headersSent) response.shouldKeepAlive = false
  const closeLater = () => {
    const timer = setTimeout(() => {
      if (!source.readableEnded) source.socket.destroy()
    }, linger.ms)
    source.once("end", () => clearTimeout(timer))
  }
  if (!(response instanceof ServerResponse) || response.writableFinished) closeLater()
  else response.once("finish", closeLater)
}

/**
 * The body's chunks. On Node, the request stays open when reading stops, so
 * that the rest can be dropped (`drop`) while the client reads the answer.
 */
const bodyOf = (request: HttpServerRequest.HttpServerRequest) =>
  Option.match(nodeSource(request), {
    onNone: () => ({ chunks: request.stream as Stream.Stream<Uint8Array, unknown>, drop: (_answered: boolean) => Effect.void }),
    onSome: (source) => ({
      chunks: NodeStream.fromReadable<unknown, Uint8Array>(() => source, (error) => error, { closeOnDone: false }),
      drop: (answered: boolean) => Effect.sync(() => dropRest(source, NodeHttpServerRequest.toServerResponse(request), answered))
    })
  })

/**
 * Sends the answer's status line and headers now. Node holds them until the
 * first bytes of the body, and a stream with nothing to say yet (`AllEvents`)
 * would leave its client without even a status.
 */
const flushHeaders = (request: HttpServerRequest.HttpServerRequest) =>
  Stream.execute(Effect.sync(() => {
    const response = NodeHttpServerRequest.toServerResponse(request) as unknown
    // `headersSent` is already true here: `writeHead` only buffers them.
    if (response instanceof ServerResponse) response.flushHeaders()
  }))

const concat = (parts: ReadonlyArray<Uint8Array>, size: number) => {
  const out = new Uint8Array(size)
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/**
 * Splits chunks into lines of at most `limit` bytes (without the newline),
 * calling `onLine` for each that is not blank before reading on; a longer line is refused as soon
 * as its bytes pass the limit. `flush` hands over a last line without newline.
 */
const makeLineReader = <E>(limit: number, onLine: (line: Uint8Array) => Effect.Effect<void, E | RpcFrame.FrameRefused>) => {
  let pending: Array<Uint8Array> = []
  let pendingBytes = 0
  const take = (tail: Uint8Array) => {
    const line = pendingBytes === 0 ? tail : concat([...pending, tail], pendingBytes + tail.length)
    pending = []
    pendingBytes = 0
    return line
  }
  const onChunk = (chunk: Uint8Array) =>
    Effect.gen(function*() {
      let start = 0
      while (true) {
        // Blank lines cost a byte's look each, not an effect: a body of newlines must stay cheap.
        if (pendingBytes === 0) while (start < chunk.length && chunk[start] === 10) start++
        const newline = chunk.indexOf(10, start)
        if (newline === -1) break
        if (pendingBytes + newline - start > limit) return yield* RpcFrame.tooLarge(limit)
        const line = take(chunk.subarray(start, newline))
        start = newline + 1
        if (!RpcFrame.isBlank(line)) yield* onLine(line)
      }
      if (start < chunk.length) {
        if (pendingBytes + chunk.length - start > limit) return yield* RpcFrame.tooLarge(limit)
        pending.push(chunk.subarray(start))
        pendingBytes += chunk.length - start
      }
    })
  const flush = Effect.suspend(() => {
    if (pendingBytes === 0) return Effect.void
    const line = take(new Uint8Array(0))
    return RpcFrame.isBlank(line) ? Effect.void : onLine(line)
  })
  return { onChunk, flush }
}

/**
 * The protocol and the HTTP app that feeds it. Run an `RpcServer` with the
 * protocol (`RpcServer.make(group).pipe(Effect.provideService(RpcServer.Protocol, protocol))`)
 * and mount the app at `POST /rpc`.
 */
export const make = (options: Limits & {
  readonly tags: ReadonlySet<string>
  /** Tags of the calls whose answers a refusal of a later line waits for (the calls that write). */
  readonly answeredBeforeRefusal: ReadonlySet<string>
  /** Tags of the stream calls, admitted a few at a time (`streamSetups`). */
  readonly streamTags: ReadonlySet<string>
}) =>
  Effect.gen(function*() {
    const setups = yield* FairSemaphore.make(Math.max(1, Math.floor(options.streamSetups ?? 8)))
    const disconnects = yield* Mailbox.make<number>()
    const clients = new Map<number, Client>()
    let nextClientId = 0
    let writeRequest: (clientId: number, message: RpcMessage.FromClientEncoded) => Effect.Effect<void> = () =>
      Effect.void

    const protocol = yield* RpcServer.Protocol.make((write) => {
      writeRequest = write
      return Effect.succeed({
        disconnects,
        send: (clientId: number, response: RpcMessage.FromServerEncoded) =>
          Effect.suspend(() => {
            const client = clients.get(clientId)
            if (client === undefined) return Effect.void
            // A refusal waiting for the writes is let go once this exit is in the answer, before its `Defect`.
            let lastWrite = false
            // A call that answers (a first chunk, a failure) is set up.
            if (client.settingUp !== undefined && "requestId" in response && response.requestId === client.settingUp.id) {
              client.settingUp.done()
            }
            if (response._tag === "Exit") {
              client.inFlight.delete(response.requestId)
              lastWrite = client.writing.delete(response.requestId) && client.writing.size === 0
            }
            let bytes: Uint8Array
            try {
              bytes = frame(response)
            } catch (cause) {
              bytes = frame({ _tag: "Defect", defect: { name: "EncodeError", message: String(cause).slice(0, 500) } })
            }
            const offered = Effect.asVoid(client.answer.offer(bytes))
            return lastWrite ? Effect.zipRight(offered, Effect.sync(() => client.onWritesDone?.())) : offered
          }),
        end: (clientId: number) => Effect.suspend(() => clients.get(clientId)?.answer.end ?? Effect.void),
        clientIds: Effect.sync(() => new Set(clients.keys())),
        initialMessage: Effect.succeedNone,
        supportsAck: false,
        supportsTransferables: false,
        supportsSpanPropagation: false
      })
    })

    const httpApp = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const scope = yield* Effect.scope
      const clientId = nextClientId++
      const client: Client = {
        answer: yield* Mailbox.make<Uint8Array>({ capacity: answerBuffer, strategy: "suspend" }),
        inFlight: new Set(),
        writing: new Set(),
        onWritesDone: undefined,
        settingUp: undefined,
        overBudget: 0
      }
      clients.set(clientId, client)
      yield* Scope.addFinalizer(
        scope,
        Effect.sync(() => {
          clients.delete(clientId)
          // The server interrupts the client's calls still running.
          disconnects.unsafeOffer(clientId)
        })
      )
      const requestHeaders = Object.entries(request.headers)
      // Done with the first message handed over (the answer begins), or failed with a refusal before it.
      const started = yield* Deferred.make<void, RpcFrame.FrameRefused>()

      const handOver = (message: RpcMessage.FromClientEncoded) => {
        switch (message._tag) {
          case "Eof":
            // Sent at the end of the body; a client's own is redundant.
            return Effect.void
          case "Request":
            if (client.inFlight.has(message.id)) {
              return Effect.fail(RpcFrame.invalidMessage(`request id ${message.id} is already in flight`))
            }
            if (client.inFlight.size >= options.maxCalls) return Effect.fail(tooManyCalls(options.maxCalls))
            client.inFlight.add(message.id)
            if (options.answeredBeforeRefusal.has(message.tag)) client.writing.add(message.id)
            return options.streamTags.has(message.tag)
              ? setUpStream(message.id, { ...message, headers: requestHeaders.concat(message.headers) })
              : writeRequest(clientId, { ...message, headers: requestHeaders.concat(message.headers) })
          default:
            return writeRequest(clientId, message)
        }
      }
      /**
       * Hands a stream call over in a turn of its own, holding a place of the
       * admission until the call is set up (see `Limits.streamSetups`).
       */
      const setUpStream = (id: string, message: RpcMessage.FromClientEncoded) =>
        setups.withPermit(Effect.suspend(() => {
          let isDone = false
          let wake: (() => void) | undefined
          const done = () => {
            if (isDone) return
            isDone = true
            client.settingUp = undefined
            const resume = wake
            wake = undefined
            resume?.()
          }
          client.settingUp = { id, done }
          return Effect.yieldNow().pipe(
            Effect.zipRight(Effect.provideService(writeRequest(clientId, message), CallSetup, {
              done: Effect.sync(done),
              overBudget: Effect.sync(() => {
                client.overBudget += 1
              })
            })),
            // Set up within the hand-over (it runs the call's first steps), or later.
            Effect.zipRight(Effect.async<void>((resume) => {
              if (isDone) return resume(Effect.void)
              const timer = setTimeout(done, setupTimeoutMs)
              wake = () => {
                clearTimeout(timer)
                resume(Effect.void)
              }
              return Effect.sync(() => {
                wake = undefined
                clearTimeout(timer)
              })
            })),
            Effect.ensuring(Effect.sync(done)),
            // The refusal's own answer is on its way: the body is not read further.
            Effect.zipRight(Effect.suspend(() =>
              client.overBudget > options.maxCalls ? Effect.fail(tooManyStreams(options.maxCalls)) : Effect.void
            ))
          )
        }))

      const onLine = (line: Uint8Array) =>
        Either.match(RpcFrame.decode(line, options.tags), {
          onLeft: Effect.fail,
          onRight: (message) => Effect.zipRight(handOver(message), Deferred.succeed(started, undefined))
        })

      const body = bodyOf(request)
      const lines = makeLineReader(options.maxMessageBytes, onLine)
      const read = Stream.runForEach(body.chunks, lines.onChunk).pipe(
        Effect.mapError((error) => error instanceof RpcFrame.FrameRefused ? error : unreadable),
        Effect.zipRight(lines.flush),
        Effect.zipRight(Effect.flatMap(Deferred.isDone(started), (isStarted) => isStarted ? Effect.void : Effect.fail(noMessage))),
        Effect.zipRight(writeRequest(clientId, { _tag: "Eof" })),
        Effect.catchAll((refusal) =>
          Effect.gen(function*() {
            yield* body.drop(yield* Deferred.isDone(started))
            if (yield* Deferred.fail(started, refusal)) return
            yield* writesDone(client).pipe(Effect.timeoutOption(writesGrace))
            yield* client.answer.offer(defectFrame(refusal))
            yield* client.answer.end
          })
        )
      )
      yield* Effect.forkIn(read, scope)

      return yield* Deferred.await(started).pipe(
        Effect.match({
          onFailure: errorResponse,
          onSuccess: () =>
            HttpServerResponse.stream(Stream.concat(flushHeaders(request), Mailbox.toStream(client.answer)), {
              contentType: "application/ndjson"
            })
        })
      )
    }).pipe(Effect.interruptible, Effect.withUnhandledErrorLogLevel(Option.none()))

    return { protocol, httpApp }
  })
