/**
 * The drivers under the bus contract (test/bus/contract.test.ts), and the
 * programs and tasks the contract runs them with.
 */
import { SqlClient } from "@effect/sql"
import { connect } from "@nats-io/transport-node"
import { createConnection, createServer, type Socket } from "node:net"
import { ConfigProvider, Context, Effect, Layer, Mailbox, Queue, Schema, type Scope } from "effect"
import type { BusMessage } from "../../src/bus/EventBus.ts"
import * as EventBus from "../../src/bus/index.ts"
import * as NatsBus from "../../src/bus/NatsBus.ts"
import * as Database from "../../src/Database.ts"
import type { RunEvent } from "../../src/domain/RunEvent.ts"
import * as Runstream from "../../src/Runstream.ts"
import * as Task from "../../src/Task.ts"
import { TestDatabase } from "../../src/testing/index.ts"
import type { TestBus } from "../../src/testing/RunstreamTest.ts"

/** Steps released by the test, one per event `Ticker` emits. */
export class Gate extends Context.Tag("test/bus/Gate")<Gate, Queue.Queue<void>>() {}

/** Emits `n` `tick` events, one each time the test opens the gate. */
export const Ticker = Task.make("test.bus.ticker", {
  input: Schema.Struct({ n: Schema.Int }),
  output: Schema.Struct({ n: Schema.Int }),
  run: ({ n }, ctx) =>
    Effect.gen(function*() {
      const gate = yield* Gate
      for (let i = 1; i <= n; i++) {
        yield* Queue.take(gate)
        yield* ctx.emit("tick", { i })
      }
      return { n }
    })
})

/** Emits, in one append (one outbox row, one drained batch), one event per size: `{ i, pad }` of about that many bytes. */
export const Sized = Task.make("test.bus.sized", {
  input: Schema.Struct({ sizes: Schema.Array(Schema.Int) }),
  output: Schema.Struct({ n: Schema.Int }),
  run: ({ sizes }, ctx) =>
    Effect.as(
      Effect.forEach(sizes, (size, i) => ctx.emit("sized", { i, pad: "x".repeat(size) }), { concurrency: "unbounded", discard: true }),
      { n: sizes.length }
    )
})

export const natsUrl = process.env["RUNSTREAM_TEST_NATS_URL"] ?? "nats://127.0.0.1:4222"

/** Whether a NATS server answers at `natsUrl` within a second. */
export const natsAnswers = (): Promise<boolean> =>
  connect({ servers: natsUrl, timeout: 1000, reconnect: false }).then(
    (nc) => nc.close().then(() => true),
    () => false
  )

/**
 * A driver under the contract. `connect` makes the bus layer of a program;
 * with `cuttable`, it also returns a way to cut that program's bus connection
 * (held down until `restore`), so that what is published meanwhile is lost.
 */
export interface Driver {
  readonly name: "memory" | "postgres" | "nats"
  /** Whether programs of one database share events (a memory bus does not leave its program). */
  readonly shared: boolean
  readonly connect: Effect.Effect<{ readonly bus: TestBus; readonly cut?: Link | undefined }, never, Scope.Scope>
}

export interface Link {
  /** Cuts the program's bus connection and keeps it down until `restore`. */
  readonly cut: Effect.Effect<void, unknown, SqlClient.SqlClient>
  readonly restore: Effect.Effect<void>
}

export const drivers: ReadonlyArray<Driver> = [
  { name: "memory", shared: false, connect: Effect.succeed({ bus: EventBus.layerMemory }) },
  {
    name: "postgres",
    shared: true,
    connect: Effect.succeed({
      bus: EventBus.layerPostgres,
      // The listeners of the database are cut; each reconnects at once, and
      // what was NOTIFYed in between is lost.
      cut: {
        cut: Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.flatMap(
            sql<{ ok: boolean }>`
              SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
              WHERE application_name = 'runstream-listen' AND datname = current_database()`,
            (rows) => rows.length > 0 ? Effect.void : Effect.dieMessage("no LISTEN connection to cut")
          )),
        restore: Effect.void
      }
    })
  },
  {
    name: "nats",
    shared: true,
    // Through a proxy that delays what the client sends (so that a SUB not yet
    // on the server when `subscribe` returns would miss what is published
    // right after), and can cut the link and hold reconnects.
    connect: Effect.gen(function*() {
      const target = new URL(natsUrl)
      const proxy = yield* makeProxy({ host: target.hostname, port: Number(target.port || 4222) }, 25)
      return {
        bus: NatsBus.layerWith({ servers: [`nats://127.0.0.1:${proxy.port}`] }),
        cut: { cut: Effect.sync(proxy.cut), restore: Effect.sync(proxy.restore) }
      }
    })
  }
]

/**
 * A TCP proxy on loopback that delays each chunk from client to server by
 * `delayMs` (in order), and can cut every connection and hold new ones until
 * `restore`. Closed with the scope.
 */
const makeProxy = (target: { readonly host: string; readonly port: number }, delayMs: number) =>
  Effect.gen(function*() {
    const open = new Set<readonly [Socket, Socket]>()
    const held: Array<Socket> = []
    let down = false
    const pipe = (client: Socket) => {
      const upstream = createConnection(target)
      const pair = [client, upstream] as const
      open.add(pair)
      client.setNoDelay(true)
      upstream.setNoDelay(true)
      client.on("data", (chunk) => setTimeout(() => upstream.write(chunk), delayMs))
      upstream.on("data", (chunk) => client.write(chunk))
      const close = () => {
        open.delete(pair)
        client.destroy()
        upstream.destroy()
      }
      client.on("error", close).on("close", close)
      upstream.on("error", close).on("close", close)
    }
    const server = createServer((client) => {
      if (down) held.push(client)
      else pipe(client)
    })
    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as { port: number }).port)))
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const [client, upstream] of [...open, ...held.map((c) => [c, c] as const)]) {
            client.destroy()
            upstream.destroy()
          }
          server.close(() => resume(Effect.void))
        })
    )
    return {
      port,
      cut: () => {
        down = true
        for (const [client, upstream] of [...open]) {
          client.resetAndDestroy()
          upstream.resetAndDestroy()
        }
        open.clear()
      },
      restore: () => {
        down = false
        for (const client of held.splice(0)) pipe(client)
      }
    }
  })

/** Worker timings for tests: fast polls, a lease that survives a busy machine. */
const workers = { lease: "10 seconds", reclaimInterval: "200 millis", pollInterval: "200 millis", shutdownGrace: "500 millis" } as const

/**
 * Settings over the environment's: events up to 4 MiB (larger than NATS's
 * 1 MiB `max_payload`), and, with `idle: false`, no idle-check Resync for an
 * hour, so that only the bus's own Resync can bring back what it lost.
 */
const settings = (options: { readonly idle: boolean }) =>
  ConfigProvider.fromMap(
    new Map([
      ["RUNSTREAM_MAX_EVENT_BYTES", String(4 * 1024 * 1024)],
      ...(options.idle ? [] : [["RUNSTREAM_STREAM_IDLE_CHECK", "1 hour"] as const])
    ])
  ).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))

/** A program with `bus` on the database of the `DatabaseUrl` in context, with workers or not. */
export const buildProgram = (
  bus: TestBus,
  options: { readonly workers: boolean; readonly gate: Queue.Queue<void>; readonly idle?: boolean }
) => {
  const runtime = options.workers
    ? Runstream.layerWithWorkers({ bus, workers })
    : Runstream.layerRuntime({ bus })
  return Layer.build(
    runtime.pipe(
      Layer.provideMerge(Task.layerRegistry(Ticker, Sized)),
      Layer.provideMerge(Database.layerClient({ maxConnections: 4, connectTimeout: TestDatabase.connectTimeout })),
      Layer.provideMerge(Layer.succeed(Gate, options.gate))
    )
  ).pipe(Effect.withConfigProvider(settings({ idle: options.idle ?? true })))
}

/** Takes messages until `done` says so of the events so far; the events (Resyncs counted apart). */
export const collect = (
  mailbox: Mailbox.ReadonlyMailbox<BusMessage>,
  done: (events: ReadonlyArray<RunEvent>, resyncs: number) => boolean
) =>
  Effect.gen(function*() {
    const events: Array<RunEvent> = []
    let resyncs = 0
    while (!done(events, resyncs)) {
      const [batch] = yield* mailbox.takeAll
      for (const message of batch) {
        if (message._tag === "Resync") resyncs++
        else events.push(message.event)
      }
    }
    return { events, resyncs }
  })
