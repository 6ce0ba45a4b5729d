/**
 * A `pg` pool on which an interrupted statement can never cancel another
 * fiber's statement.
 *
 * @effect/sql-pg (0.53, the 3.x line) cancels an interrupted statement with
 * `SELECT pg_cancel_backend(<pid>)` on another pooled connection. A cancel
 * names a backend, not a statement: when the interrupted statement finishes
 * just before the interruption is processed, its connection is already back
 * in the pool and running the next fiber's statement, which the late cancel
 * then kills ("canceling statement due to user request", a 503 for a valid
 * request). The fault suite's fuzzer hit it; a loop that times out statements
 * beside honest ones on a pool of 2 gets about one stray cancel per 15
 * honest statements (Effect-TS/effect#8068, fixed for Effect 4 only).
 *
 * So the clients keep their backend's pid from sql-pg (which then sends no
 * cancel, its own branch for clients without one), and the pool hands a
 * connection released while its statement still runs to nobody until that
 * statement is done. An interrupted statement runs to its end on the server:
 * Runstream's statements are short (a claim, a page of the log, a batch of
 * deletes), and the pool's end on shutdown is bounded.
 */
import * as Pg from "pg"
import { PreparingClient } from "./PreparingClient.ts"

/** What of pg's client this module reads (pg 8 keeps these as fields). */
interface ClientState {
  readonly _activeQuery: unknown
  readonly _queryQueue: ReadonlyArray<unknown>
}

const running = (client: Pg.PoolClient) => {
  const state = client as unknown as ClientState
  return state._activeQuery != null || state._queryQueue.length > 0
}

/** Keeps the pid (pg's `processID`) where sql-pg does not look for it. */
const hidePid = (prototype: object) =>
  Object.defineProperty(prototype, "processID", {
    get: () => undefined,
    set(this: { backendPid?: number }, pid: number) {
      this.backendPid = pid
    }
  })

export class Client extends Pg.Client {}
hidePid(Client.prototype)

export class PreparingClientWithoutCancel extends PreparingClient {}
hidePid(PreparingClientWithoutCancel.prototype)

type Release = (client: Pg.PoolClient, idleListener: unknown, error?: Error) => void

/** pg-pool's own release (the method every client's `release()` calls). */
const poolRelease = (): Release => {
  const release = (Pg.Pool.prototype as unknown as { _release?: Release })._release
  if (typeof release !== "function") {
    throw new Error("CancelSafePool: this pg-pool has no _release method (it was written for pg-pool 3); check it before upgrading pg")
  }
  return release
}
const release = poolRelease()

export class CancelSafePool extends Pg.Pool {
  /** A connection released while its statement runs rejoins the pool when the statement is done. */
  _release(client: Pg.PoolClient, idleListener: unknown, error?: Error) {
    if (error !== undefined || !running(client)) return release.call(this, client, idleListener, error)
    const settle = (failure?: Error) => {
      client.off("drain", onDrain)
      client.off("error", onError)
      client.off("end", onEnd)
      release.call(this, client, idleListener, failure)
    }
    const onDrain = () => settle()
    const onError = (failure: Error) => settle(failure)
    const onEnd = () => settle(new Error("the connection ended while its interrupted statement ran"))
    client.on("drain", onDrain)
    client.on("error", onError)
    client.on("end", onEnd)
  }
}
