/**
 * A process of the fault suite: a Runstream program composed from the
 * production layers on `DATABASE_URL`, with the suite's tasks registered.
 * Role (`FAULTS_ROLE`):
 * - `worker`: runtime + workers (postgres bus), like `npm run worker`;
 * - `server`: runtime + the HTTP API on a free loopback port (with workers
 *   too when `FAULTS_WITH_WORKERS=1`), like `npm run server`;
 * - `relay`: runtime only (a process whose only job is its outbox relay);
 *   with `FAULTS_KILL_AFTER=n`, its relay publishes through a leaky bus (see
 *   below) and it kills itself with SIGKILL right after publishing its n-th
 *   batch, before the drain transaction commits.
 *
 * It tells the suite `{type: "ready", ...}` over IPC once built, answers
 * `{type: "ping"}` with its memory, and shuts down gracefully on SIGTERM.
 * `FAULTS_NO_RELAY=1` makes a worker without an outbox relay (its rows are
 * published by other processes' relays). `FAULTS_FLOW_CONTROL=1` registers
 * scenario 8's tasks too and declares its schedule (`worker` and `server`).
 * Worker settings come from the usual `RUNSTREAM_*` variables.
 */
import { HttpServer } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Config, Context, Effect, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import pg from "pg"
import * as Database from "../../src/Database.ts"
import * as EventBus from "../../src/bus/index.ts"
import * as PostgresBus from "../../src/bus/PostgresBus.ts"
import * as EventLog from "../../src/EventLog.ts"
import * as Outbox from "../../src/Outbox.ts"
import * as OutboxRelay from "../../src/OutboxRelay.ts"
import * as PgListener from "../../src/PgListener.ts"
import * as LeaseReclaim from "../../src/queue/LeaseReclaim.ts"
import * as QueueLimits from "../../src/queue/QueueLimits.ts"
import * as RunQueue from "../../src/queue/RunQueue.ts"
import * as Runs from "../../src/Runs.ts"
import * as Schedules from "../../src/schedules/Schedules.ts"
import * as RunFollowers from "../../src/RunFollowers.ts"
import * as Runstream from "../../src/Runstream.ts"
import * as RunStore from "../../src/RunStore.ts"
import * as Task from "../../src/Task.ts"
import * as Workers from "../../src/Workers.ts"
import * as Tasks from "./tasks.ts"

const toParent = (message: Record<string, unknown>) =>
  Effect.async<void>((resume) => {
    process.send!(message, undefined, undefined, () => resume(Effect.void))
  })

/**
 * The relay's bus in the `relay` role. It publishes each batch at once on a
 * connection of its own (outside the drain transaction, so the subscribers
 * get it even if that transaction never commits: what a non-transactional
 * broker does), then, on the configured batch, dies before the commit. The
 * outbox rows stay, another relay publishes them again: duplicates on the bus.
 */
const layerLeakyBus = (killAfter: number) =>
  Layer.scoped(
    EventBus.EventBus,
    Effect.gen(function*() {
      const real = yield* EventBus.EventBus
      const sql = yield* SqlClient.SqlClient
      const { url } = yield* Database.DatabaseUrl
      const client = yield* Effect.acquireRelease(
        Effect.promise(async () => {
          const client = new pg.Client({ connectionString: Redacted.value(url), application_name: "faults-leaky-bus" })
          client.on("error", () => {})
          await client.connect()
          return client
        }),
        (client) => Effect.promise(() => client.end().catch(() => undefined))
      )
      let batches = 0
      // The postgres bus's own NOTIFY statement, sent on this connection (committed at once).
      const notifyElsewhere = (events: ReadonlyArray<EventBus.BusEvent>) =>
        Effect.promise(async () => {
          const [text, params] = PostgresBus.publishStatement(sql, events).compile()
          await client.query(text, [...params])
          batches++
          if (batches >= killAfter) {
            const first = events[0]?.event
            await new Promise((resolve) =>
              process.send!({ type: "dying", events: events.length, first: first && `${first.runId}/${first.seq}` }, undefined, undefined, resolve)
            )
            process.kill(process.pid, "SIGKILL")
          }
        })
      return EventBus.EventBus.of({
        subscribe: real.subscribe,
        publish: real.publish,
        // Published before the drain transaction commits (then it dies).
        publishDrained: (drain) =>
          Effect.flatMap(drain.take, ({ events, taken }) => Effect.as(events.length === 0 ? Effect.void : notifyElsewhere(events), taken))
            .pipe(sql.withTransaction)
      })
    })
  ).pipe(Layer.provide(EventBus.layerPostgres))

/**
 * `Runstream.layerRuntime({ bus: EventBus.layerPostgres })` as it composes it, with the
 * bus swapped for the leaky one or the relay left out.
 */
const layerRuntimeWith = (options: { readonly leakyBusKillAfter?: number | undefined; readonly relay: boolean }) => {
  const bus = options.leakyBusKillAfter === undefined ? EventBus.layerPostgres : layerLeakyBus(options.leakyBusKillAfter)
  const infra = Layer.mergeAll(Outbox.layer, EventLog.layer, RunQueue.layer, QueueLimits.layer(), bus).pipe(
    Layer.provideMerge(PgListener.layer)
  )
  const runs = options.relay ? Layer.mergeAll(Runs.layer, OutboxRelay.layer, LeaseReclaim.layer()) : Layer.merge(Runs.layer, LeaseReclaim.layer())
  return Schedules.layer().pipe(
    Layer.provideMerge(runs),
    Layer.provideMerge(RunFollowers.layer),
    Layer.provideMerge(RunStore.layer),
    Layer.provideMerge(infra)
  )
}

const program = Effect.gen(function*() {
  const role = yield* Config.literal("worker", "server", "relay")("FAULTS_ROLE")
  const withWorkers = yield* Config.boolean("FAULTS_WITH_WORKERS").pipe(Config.withDefault(false))
  const killAfter = yield* Config.option(Config.integer("FAULTS_KILL_AFTER"))
  const flowControl = yield* Config.boolean("FAULTS_FLOW_CONTROL").pipe(Config.withDefault(false))
  const tasks = flowControl ? [...Tasks.all, ...Tasks.flowControl] : Tasks.all
  const schedules = flowControl ? Tasks.flowControlSchedules : []
  const queues = flowControl ? Tasks.flowControlQueues : {}
  const base = Task.layerRegistry(...tasks).pipe(Layer.provideMerge(Database.layer))
  const noRelay = yield* Config.boolean("FAULTS_NO_RELAY").pipe(Config.withDefault(false))
  const runtime = role === "relay"
    ? layerRuntimeWith({ leakyBusKillAfter: Option.getOrUndefined(killAfter), relay: true })
    : noRelay
    ? Workers.layer().pipe(Layer.provideMerge(layerRuntimeWith({ relay: false })))
    : role === "worker" || withWorkers
    ? Runstream.layerWithWorkers({ bus: EventBus.layerPostgres, schedules, queues })
    : Runstream.layerRuntime({ bus: EventBus.layerPostgres, schedules, queues })
  const context = yield* Layer.build(runtime.pipe(Layer.provideMerge(base)))
  const workers = Context.getOption(context as Context.Context<unknown>, Workers.Workers)
  let url: string | undefined
  if (role === "server") {
    // Imported here: the other roles need not load the HTTP stack.
    const Server = yield* Effect.promise(() => import("../../src/http/Server.ts"))
    const server = yield* Layer.build(Server.layer({ port: 0, host: "127.0.0.1" }).pipe(Layer.provide(Layer.succeedContext(context))))
    url = yield* HttpServer.addressFormattedWith(Effect.succeed).pipe(Effect.provide(server))
  }
  process.on("message", (message: { type?: string }) => {
    if (message.type === "ping") {
      const memory = process.memoryUsage()
      process.send?.({ type: "pong", rss: memory.rss, heapUsed: memory.heapUsed })
    }
  })
  yield* toParent({
    type: "ready",
    pid: process.pid,
    url,
    workerId: workers._tag === "Some" ? workers.value.workerId : undefined
  })
  return yield* Effect.never
})

const level = process.env["FAULTS_LOG_LEVEL"] === "debug" ? LogLevel.Debug : process.env["FAULTS_LOG_LEVEL"] === "warning" ? LogLevel.Warning : LogLevel.Info

program.pipe(
  Effect.scoped,
  Effect.tapErrorCause((cause) => Effect.logError("fault-suite process failed", cause)),
  Logger.withMinimumLogLevel(level),
  NodeRuntime.runMain
)
