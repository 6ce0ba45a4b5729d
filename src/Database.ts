/**
 * The database: a `PgClient` pool on `DATABASE_URL`, or on an embedded Postgres
 * started and stopped with the layer's scope; migrated before anything uses it.
 * @since 0.1.0
 */
import { Migrator, SqlClient, SqlError } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Config, Context, Duration, Effect, Layer, Option, Redacted } from "effect"
import * as Embedded from "./internal/embeddedPostgres.ts"
import { CancelSafePool, Client, PreparingClientWithoutCancel } from "./internal/CancelSafePool.ts"
import { loader, migrationsTable } from "./migrations/index.ts"

/** Where the program's database is: its URL and a description for logs. */
export class DatabaseUrl extends Context.Tag("runstream/DatabaseUrl")<DatabaseUrl, {
  readonly url: Redacted.Redacted<string>
  readonly description: string
}>() {}

/**
 * The program's connection pool, as the metrics read it
 * (`runstream_db_pool_connections`): connections open, idle, and requests
 * waiting for one.
 */
export class DatabasePool extends Context.Tag("runstream/DatabasePool")<DatabasePool, {
  readonly totalCount: number
  readonly idleCount: number
  readonly waitingCount: number
}>() {}

/** @category config */
export const PoolConfig = Config.all({
  maxConnections: Config.integer("RUNSTREAM_DB_POOL_MAX").pipe(
    Config.validate({ message: "must be between 1 and 1000", validation: (n) => n >= 1 && n <= 1000 }),
    Config.withDefault(10)
  ),
  connectTimeout: Config.duration("RUNSTREAM_DB_CONNECT_TIMEOUT").pipe(Config.withDefault(Duration.seconds(5))),
  /**
   * Hot statements as named prepared statements (see `PreparingClient`). Off
   * for a connection pooler that does not keep them (PgBouncer in transaction
   * mode before 1.21).
   */
  prepare: Config.boolean("RUNSTREAM_DB_PREPARE").pipe(Config.withDefault(true))
})

/**
 * Runs the migrations. Safe when several processes start at once: an advisory
 * lock serializes the creation of the migrations table (the Migrator's own
 * `CREATE TABLE` races otherwise), then the Migrator locks that table.
 */
export const migrate = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.withTransaction(Effect.zipRight(
    sql`SELECT pg_advisory_xact_lock(hashtext('runstream.migrations'))`,
    sql`CREATE TABLE IF NOT EXISTS ${sql(migrationsTable)} (
      migration_id integer PRIMARY KEY,
      created_at timestamptz NOT NULL DEFAULT now(),
      name text NOT NULL
    )`
  ))
  return yield* Migrator.make({})({ loader, table: migrationsTable })
}).pipe(Effect.withSpan("Database.migrate"))

export interface PoolOptions {
  readonly maxConnections?: number | undefined
  readonly connectTimeout?: Duration.DurationInput | undefined
}

/** A pool on the given URL, with the configured bounds (`options` take precedence). */
export const layerPool = (options: PoolOptions = {}) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const { url } = yield* DatabaseUrl
    const config = yield* PoolConfig
    const connectTimeout = options.connectTimeout === undefined
      ? config.connectTimeout
      : Duration.decode(options.connectTimeout)
    // The pool as PgClient.layer makes it, but ours: its clients may prepare.
    const acquire = Effect.gen(function*() {
      const pool = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const pool = new CancelSafePool({
            connectionString: Redacted.value(url),
            connectionTimeoutMillis: Duration.toMillis(connectTimeout),
            idleTimeoutMillis: 30_000,
            max: options.maxConnections ?? config.maxConnections,
            application_name: "runstream",
            Client: config.prepare ? PreparingClientWithoutCancel : Client
          })
          // A connection's error fails the statement using it; an idle one's is only logged by pg.
          pool.on("error", () => {})
          return pool
        }),
        (pool) => Effect.promise(() => pool.end()).pipe(Effect.interruptible, Effect.timeoutOption(1000))
      )
      yield* Effect.tryPromise({
        try: () => pool.query("SELECT 1"),
        catch: (cause) => new SqlError.SqlError({ cause, message: "PgClient: Failed to connect" })
      }).pipe(Effect.timeoutFail({
        duration: connectTimeout,
        onTimeout: () => new SqlError.SqlError({ cause: new Error("Connection timed out"), message: "PgClient: Connection timed out" })
      }))
      return pool
    })
    // The pool lives in the layer's scope, so that the metrics can read it
    // too; the client borrows it (`layerFromPool` leaves its lifetime to `acquire`).
    const pool = yield* acquire
    return Layer.merge(
      PgClient.layerFromPool({ acquire: Effect.succeed(pool), applicationName: "runstream" }),
      Layer.succeed(DatabasePool, pool)
    )
  }))

/** A migrated pool on the program's `DatabaseUrl`. */
export const layerClient = (options: PoolOptions = {}) =>
  Layer.effectDiscard(migrate).pipe(Layer.provideMerge(layerPool(options)))

/**
 * The embedded server's settings: where its files live (kept between starts)
 * and its port on 127.0.0.1 (0, the default: any free one).
 * @category config
 */
export const EmbeddedConfig = Config.all({
  dataDir: Config.string("RUNSTREAM_DATA_DIR").pipe(Config.withDefault(".runstream")),
  port: Config.integer("RUNSTREAM_EMBEDDED_PORT").pipe(
    Config.validate({ message: "must be a port number from 0 to 65535 (0 picks a free one)", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(0)
  )
})

/**
 * `DATABASE_URL` when set; otherwise an embedded Postgres (see `EmbeddedConfig`)
 * whose URL, without its password, is logged at start.
 */
export const layerUrlFromConfig = Layer.scoped(
  DatabaseUrl,
  Effect.gen(function*() {
    const url = yield* Config.option(Config.redacted("DATABASE_URL"))
    if (Option.isSome(url)) {
      return { url: url.value, description: "DATABASE_URL" }
    }
    const { dataDir, port } = yield* EmbeddedConfig
    const server = yield* Embedded.start({ dataDir: `${dataDir}/pg`, persistent: true, port })
    const where = Option.match(server.relocatedFrom, {
      onNone: () => `data in ${server.databaseDir}`,
      onSome: (blocked) =>
        `data in ${server.databaseDir} (linked from ${dataDir}/pg: user postgres cannot enter ${blocked})`
    })
    yield* Effect.logInfo(`embedded Postgres at ${server.displayUrl}, ${where}`)
    return { url: server.url, description: `embedded Postgres at ${server.displayUrl} (${where})` }
  })
)

/** The program's database: URL from config (or embedded), pool, migrations. */
export const layer = layerClient().pipe(Layer.provideMerge(layerUrlFromConfig))
