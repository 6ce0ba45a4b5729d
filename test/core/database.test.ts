import { Migrator, SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Layer, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { chmodSync, lstatSync, mkdtempSync, realpathSync, rmSync } from "node:fs"
import { type AddressInfo, createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import pg from "pg"
import * as Database from "../../src/Database.ts"
import * as EventBus from "../../src/bus/index.ts"
import * as Embedded from "../../src/internal/embeddedPostgres.ts"
import init from "../../src/migrations/0001_init.ts"
import { migrations, migrationsTable } from "../../src/migrations/index.ts"
import * as Claiming from "../../src/queue/Claiming.ts"
import { drainOnce } from "../../src/OutboxRelay.ts"
import { serverUrlVariable } from "../../src/testing/TestServer.ts"
import { TestDatabase } from "../../src/testing/index.ts"

const adminQuery = (url: string, text: string) =>
  Effect.promise(async () => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      return await client.query(text)
    } finally {
      await client.end()
    }
  })

/** An empty database (not cloned from the migrated template), dropped afterwards. */
const emptyDatabase = Effect.acquireRelease(
  Effect.gen(function*() {
    const server = process.env[serverUrlVariable]!
    const name = `runstream_empty_${randomBytes(5).toString("hex")}`
    yield* adminQuery(server, `CREATE DATABASE ${name}`)
    const url = new URL(server)
    url.pathname = `/${name}`
    return { server, name, url: url.toString() }
  }),
  ({ name, server }) => adminQuery(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
)

describe("Database", () => {
  it.scopedLive("migrations are safe when several processes start at once", () =>
    Effect.gen(function*() {
      const db = yield* emptyDatabase
      const urlLayer = Layer.succeed(Database.DatabaseUrl, { url: Redacted.make(db.url), description: "test" })
      // Four pools racing to migrate one empty database, as four processes would.
      yield* Effect.forEach(
        [1, 2, 3, 4],
        () => Effect.scoped(Layer.build(Database.layerClient({ maxConnections: 2, connectTimeout: TestDatabase.connectTimeout }).pipe(Layer.provide(urlLayer)))),
        { concurrency: 4, discard: true }
      )
      const ctx = yield* Layer.build(Database.layerClient({ maxConnections: 1, connectTimeout: TestDatabase.connectTimeout }).pipe(Layer.provide(urlLayer)))
      const sql = Context.get(ctx, SqlClient.SqlClient)
      const applied = yield* sql<{ migration_id: number }>`SELECT migration_id FROM runstream_migrations`
      // Each one once (9 was never released), every declared one.
      expect(applied.map((m) => m.migration_id)).toEqual(Object.keys(migrations).map((id) => Number(id.slice(0, 4))))
      expect(applied.length).toBeGreaterThanOrEqual(14)
      const tables = yield* sql<{ name: string }>`
        SELECT tablename AS name FROM pg_tables WHERE tablename LIKE 'runstream_%' ORDER BY 1`
      expect(tables.map((t) => t.name)).toEqual([
        "runstream_events",
        "runstream_jobs",
        "runstream_leases",
        "runstream_limits",
        "runstream_migrations",
        "runstream_outbox",
        "runstream_runs",
        "runstream_schedule_runs",
        "runstream_schedules",
        "runstream_signals"
      ])
    }))

  it.scopedLive("no index of runstream_runs covers a column a run's lifecycle updates, and its pages keep room: those updates are heap-only", () =>
    Effect.gen(function*() {
      const db = yield* emptyDatabase
      const urlLayer = Layer.succeed(Database.DatabaseUrl, { url: Redacted.make(db.url), description: "test" })
      const ctx = yield* Layer.build(Database.layerClient({ maxConnections: 1, connectTimeout: TestDatabase.connectTimeout }).pipe(Layer.provide(urlLayer)))
      const sql = Context.get(ctx, SqlClient.SqlClient)
      // Every column an index reads, its predicate and expressions included.
      const indexed = yield* sql<{ index: string; definition: string }>`
        SELECT indexrelid::regclass::text AS index, pg_get_indexdef(indexrelid) AS definition
        FROM pg_index WHERE indrelid = 'runstream_runs'::regclass`
      const updated = ["status", "attempt", "started_at", "finished_at", "output", "error", "last_seq", "run_at", "cancel_requested"]
      for (const { definition } of indexed) {
        for (const column of updated) expect(definition).not.toMatch(new RegExp(`\\b${column}\\b`))
      }
      const [table] = yield* sql<{ options: ReadonlyArray<string> | null }>`
        SELECT reloptions AS options FROM pg_class WHERE oid = 'runstream_runs'::regclass`
      expect(table!.options).toContain("fillfactor=50")
    }))

  it.scopedLive("outbox rows not yet published when 0002 is applied are carried over and published", () =>
    Effect.gen(function*() {
      const db = yield* emptyDatabase
      const urlLayer = Layer.succeed(Database.DatabaseUrl, { url: Redacted.make(db.url), description: "test" })
      const ctx = yield* Layer.build(
        Layer.merge(EventBus.layerMemory, Database.layerPool({ maxConnections: 1, connectTimeout: TestDatabase.connectTimeout })).pipe(
          Layer.provide(urlLayer)
        )
      )
      const sql = Context.get(ctx, SqlClient.SqlClient)
      // The schema as 0001 left it, with a run's two events waiting in the outbox in the old form.
      yield* Migrator.make({})({ loader: Migrator.fromRecord({ "0001_init": init }), table: migrationsTable }).pipe(
        Effect.provide(ctx)
      )
      const runId = "0190a000-0000-7000-8000-000000000001"
      yield* sql`INSERT INTO runstream_events (run_id, seq, type, data, at) VALUES
        (${runId}, 1, 'run.queued', '{}', now()), (${runId}, 2, 'run.started', '{}', now())`
      yield* sql`INSERT INTO runstream_outbox (run_id, task, seq_from, seq_to) VALUES (${runId}, 'old.task', 1, 2)`

      yield* Database.migrate.pipe(Effect.provide(ctx))
      const rows = yield* sql<{ run_ids: Array<string>; tasks: Array<string>; events: number }>`
        SELECT run_ids, tasks, events FROM runstream_outbox`
      expect(rows).toEqual([{ run_ids: [runId], tasks: ["old.task"], events: 2 }])
      const subscription = yield* Context.get(ctx, EventBus.EventBus).subscribe({})
      expect(yield* drainOnce(100).pipe(Effect.provide(ctx))).toBe(2)
      const [messages] = yield* subscription.takeAll
      expect([...messages].map((m) => m._tag === "Event" ? `${m.task} ${m.event.seq} ${m.event.type}` : m._tag)).toEqual([
        "old.task 1 run.queued",
        "old.task 2 run.started"
      ])
    }))

  it.scopedLive("runs waiting under a task's limits when 0012 is applied keep their key's counts and are claimed", () =>
    Effect.gen(function*() {
      const db = yield* emptyDatabase
      const urlLayer = Layer.succeed(Database.DatabaseUrl, { url: Redacted.make(db.url), description: "test" })
      const ctx = yield* Layer.build(
        Database.layerPool({ maxConnections: 1, connectTimeout: TestDatabase.connectTimeout }).pipe(Layer.provide(urlLayer))
      )
      const sql = Context.get(ctx, SqlClient.SqlClient)
      // The schema as 0011 left it, with two runs of a limited task waiting under the key "k".
      const before = Object.fromEntries(Object.entries(migrations).filter(([id]) => id < "0012"))
      yield* Migrator.make({})({ loader: Migrator.fromRecord(before), table: migrationsTable }).pipe(Effect.provide(ctx))
      const runIds = ["0190a000-0000-7000-8000-000000000001", "0190a000-0000-7000-8000-000000000002"]
      for (const id of runIds) {
        yield* sql`INSERT INTO runstream_runs (id, task, queue, status, input, max_attempts, priority, created_at, run_at, last_seq, attempt, concurrency_key)
          VALUES (${id}, 'old.task', 'default', 'queued', '{}', 3, 0, now(), now(), 1, 0, 'k')`
        yield* sql`INSERT INTO runstream_jobs (run_id, task, queue, priority, run_at, attempt, concurrency_key)
          VALUES (${id}, 'old.task', 'default', 0, now(), 0, 'k')`
      }
      yield* sql`INSERT INTO runstream_limits (task, key, waiting, max_running, served) VALUES ('old.task', 'k', 2, 1, now())`

      yield* Database.migrate.pipe(Effect.provide(ctx))
      expect(yield* sql`SELECT scope, key, running, waiting FROM runstream_limits`).toEqual([
        { scope: "task:old.task", key: "k", running: 0, waiting: 2 }
      ])
      expect(yield* sql`SELECT DISTINCT limit_scope FROM runstream_jobs`).toEqual([{ limit_scope: "task:old.task" }])
      // The claim serves the key under its new scope, one run at a time.
      const claims = yield* Claiming.claim(sql, {
        workerId: "w",
        leaseMs: 60_000,
        queues: ["default"],
        limit: 10,
        limitScopes: ["task:old.task"]
      })
      expect(claims.map((claim) => claim.runId)).toEqual([runIds[0]])
      expect(yield* sql`SELECT running, waiting FROM runstream_limits`).toEqual([{ running: 1, waiting: 1 }])
    }))

  it.scopedLive("without DATABASE_URL, starts an embedded Postgres in RUNSTREAM_DATA_DIR and stops it with the scope", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "runstream-db-test-"))
      // Postgres runs as its own user (when we are root): it must reach the directory.
      chmodSync(dir, 0o755)
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const config = ConfigProvider.fromMap(new Map([["RUNSTREAM_DATA_DIR", dir]]))
      const url = yield* Effect.scoped(Effect.gen(function*() {
        const ctx = yield* Layer.build(Database.layer)
        const sql = Context.get(ctx, SqlClient.SqlClient)
        const [row] = yield* sql<{ n: number }>`SELECT count(*)::integer AS n FROM runstream_runs`
        expect(row!.n).toBe(0)
        return Redacted.value(Context.get(ctx, Database.DatabaseUrl).url)
      })).pipe(Effect.withConfigProvider(config))
      // Stopped: the port no longer answers.
      const refused = yield* Effect.promise(() =>
        new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 }).connect().then(() => false, () => true)
      )
      expect(refused).toBe(true)
    }), 120_000)

  // Only root hands the server to another user.
  it.scopedLive.skipIf(process.getuid?.() !== 0)("as root, keeps the cluster where Postgres can reach it when RUNSTREAM_DATA_DIR is inside a private directory", () =>
    Effect.gen(function*() {
      // mkdtemp's directory is 0700: the postgres user cannot enter it.
      const dir = mkdtempSync(join(tmpdir(), "runstream-private-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const dataDir = join(dir, "data")
      const port = yield* Embedded.freePort
      const config = ConfigProvider.fromMap(new Map([["RUNSTREAM_DATA_DIR", dataDir], ["RUNSTREAM_EMBEDDED_PORT", String(port)]]))
      const session = (statement: string) =>
        Effect.scoped(Effect.gen(function*() {
          const ctx = yield* Layer.build(Database.layer)
          const sql = Context.get(ctx, SqlClient.SqlClient)
          yield* sql.unsafe(statement)
          return Context.get(ctx, Database.DatabaseUrl)
        })).pipe(Effect.withConfigProvider(config))
      const first = yield* session("CREATE TABLE kept (n integer)")
      expect(Redacted.value(first.url)).toContain(`@127.0.0.1:${port}/`)
      expect(first.description).toContain(`postgres://postgres@127.0.0.1:${port}/postgres`)
      expect(first.description).not.toContain("postgres:postgres@")
      const serverDir = realpathSync(join(dataDir, "pg"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(serverDir, { recursive: true, force: true })))
      expect(lstatSync(join(dataDir, "pg")).isSymbolicLink()).toBe(true)
      expect(serverDir.startsWith(tmpdir())).toBe(true)
      expect(first.description).toContain(serverDir)
      expect(first.description).toContain(`cannot enter ${dir}`)
      // The next start finds the same cluster through the link.
      yield* session("SELECT count(*) FROM kept")
    }), 180_000)

  it.scopedLive.skipIf(process.getuid?.() !== 0)("as root, where no place is reachable, start-up fails in one line with the cause and the fix", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "runstream-private-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      // The temporary directory itself private: nowhere to keep the cluster.
      const previous = process.env["TMPDIR"]
      yield* Effect.acquireRelease(
        Effect.sync(() => void (process.env["TMPDIR"] = join(dir, "tmp"))),
        () => Effect.sync(() => void (previous === undefined ? delete process.env["TMPDIR"] : process.env["TMPDIR"] = previous))
      )
      const error = yield* Effect.flip(Embedded.start({ dataDir: join(dir, "data"), persistent: false }))
      expect(error.message.split("\n")).toHaveLength(1)
      expect(error.message).toContain(`cannot enter ${dir}`)
      expect(error.message).toContain("give RUNSTREAM_DATA_DIR a directory it can reach")
    }))

  it.scopedLive("RUNSTREAM_EMBEDDED_PORT taken by another process: start-up fails naming the port and the variable", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "runstream-port-test-"))
      chmodSync(dir, 0o755)
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const blocker = yield* Effect.acquireRelease(
        Effect.async<Server>((resume) => {
          const server = createServer()
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const port = (blocker.address() as AddressInfo).port
      const config = ConfigProvider.fromMap(new Map([["RUNSTREAM_DATA_DIR", dir], ["RUNSTREAM_EMBEDDED_PORT", String(port)]]))
      const error = yield* Effect.flip(Effect.scoped(Layer.build(Database.layer)).pipe(Effect.withConfigProvider(config)))
      expect(error.message).toContain(`port ${port} on 127.0.0.1 is in use: set RUNSTREAM_EMBEDDED_PORT to a free port`)
    }), 120_000)
})
