/**
 * A TCP proxy on loopback, between some processes and Postgres, that can
 * stall the link (bytes are held both ways, connections stay open, new ones
 * hang before they reach the server) and cut it (every connection reset at
 * once). Closed with its scope.
 */
import { Effect } from "effect"
import { createConnection, createServer, type Socket } from "node:net"
import { FaultError } from "./common.ts"

export interface Proxy {
  readonly port: number
  /** Holds every byte, both ways, until `resume`. */
  readonly stall: () => void
  readonly resume: () => void
  /** Resets every open connection (the next ones go through, unless stalled). */
  readonly cut: () => number
  readonly stats: () => { readonly connections: number; readonly open: number; readonly cuts: number }
}

interface Pair {
  readonly client: Socket
  upstream: Socket | undefined
  /** Bytes held while stalled, in order, with their direction. */
  readonly held: Array<readonly [to: "upstream" | "client", chunk: Buffer]>
}

export const make = (target: { readonly host: string; readonly port: number }) =>
  Effect.gen(function*() {
    const pairs = new Set<Pair>()
    let stalled = false
    let connections = 0
    let cuts = 0

    const connectUpstream = (pair: Pair) => {
      const upstream = createConnection({ host: target.host, port: target.port })
      pair.upstream = upstream
      upstream.setNoDelay(true)
      upstream.on("data", (chunk) => {
        if (stalled) pair.held.push(["client", chunk])
        else pair.client.write(chunk)
      })
      upstream.on("error", () => close(pair))
      upstream.on("close", () => close(pair))
      flush(pair)
    }

    const flush = (pair: Pair) => {
      if (pair.upstream === undefined) return
      for (const [to, chunk] of pair.held.splice(0)) {
        if (to === "upstream") pair.upstream.write(chunk)
        else pair.client.write(chunk)
      }
    }

    const close = (pair: Pair) => {
      if (!pairs.delete(pair)) return
      pair.client.destroy()
      pair.upstream?.destroy()
    }

    const server = createServer((client) => {
      connections++
      client.setNoDelay(true)
      const pair: Pair = { client, upstream: undefined, held: [] }
      pairs.add(pair)
      client.on("data", (chunk) => {
        if (stalled || pair.upstream === undefined) pair.held.push(["upstream", chunk])
        else pair.upstream.write(chunk)
      })
      client.on("error", () => close(pair))
      client.on("close", () => close(pair))
      // A connection opened during a stall reaches the server only after it.
      if (!stalled) connectUpstream(pair)
    })

    const port = yield* Effect.acquireRelease(
      Effect.async<number, FaultError>((resume) => {
        server.once("error", (cause) => resume(Effect.fail(new FaultError({ message: "proxy: cannot listen", cause }))))
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const pair of [...pairs]) close(pair)
          server.close(() => resume(Effect.void))
        })
    )

    return {
      port,
      stall: () => {
        stalled = true
      },
      resume: () => {
        stalled = false
        for (const pair of [...pairs]) {
          if (pair.upstream === undefined) connectUpstream(pair)
          else flush(pair)
        }
      },
      cut: () => {
        cuts++
        const open = [...pairs]
        for (const pair of open) {
          pairs.delete(pair)
          pair.client.resetAndDestroy()
          pair.upstream?.resetAndDestroy()
        }
        return open.length
      },
      stats: () => ({ connections, open: pairs.size, cuts })
    } satisfies Proxy
  })
