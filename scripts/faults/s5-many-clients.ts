/**
 * Scenario 5, many clients. One server and one worker (production entry
 * points; the worker runs 100 at a time). 100 runs of `demo.count` (100 ticks,
 * 100 ms apart) are started with a `runAt` a few seconds ahead, and 1,000 SSE
 * clients (10 per run) connect while they wait, so that every run is followed
 * live. Half of the clients drop their connection once or twice at random
 * and resume with `Last-Event-ID`.
 *
 * Every client must end with the whole log, once, in order. Figures: the
 * server's memory (RSS before the clients and at its peak) and the delivery
 * latency of live events (from the event's `at`, stamped by the worker before
 * its commit, to its arrival at the client; same machine, same clock).
 * The full version also checks issue 17's target: p99 live delivery at most
 * 250 ms with 1,000 clients.
 */
import { join } from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { Context, DateTime, Effect, Fiber, Layer, Mailbox, Stream } from "effect"
import { Runs } from "../../src/Runs.ts"
import { checkRuns, countLines, freshDatabase, percentile, query, randomInt, seconds, startEntry, waitAllFinished } from "./common.ts"
import { asFault, driverProgram, type Scenario } from "./harness.ts"
import { makeChecks } from "./report.ts"
import { startRunsOverHttp } from "./s1-worker-kill.ts"
import { follow, judge } from "./sse.ts"

/** Issue 17's target for live delivery with 1,000 clients (the full version). */
const p99TargetMs = 250

export const scenario: Scenario = {
  id: 5,
  name: "Many clients",
  run: (ctx) =>
    Effect.gen(function*() {
      const began = Date.now()
      const runCount = ctx.quick ? 20 : 100
      const clientCount = ctx.quick ? 200 : 1000
      const ticks = 100
      const db = yield* freshDatabase(ctx.serverUrl)
      const [server, worker] = yield* Effect.all([
        startEntry({ name: "s5-server", entry: "server", url: db.url, logDir: ctx.logDir, env: { RUNSTREAM_MAX_STREAMS: String(clientCount * 2) } }),
        startEntry({ name: "s5-worker", entry: "worker", url: db.url, logDir: ctx.logDir, env: { RUNSTREAM_WORKER_CONCURRENCY: String(runCount) } })
      ], { concurrency: "unbounded" })

      // The raw bus, seen from another process (the suite's own program): how
      // much of the latency is before the server's streams.
      const program = yield* Layer.build(driverProgram(db.url, { maxConnections: 2 }))
      const busLatencies: Array<number> = []
      yield* Mailbox.toStream(yield* Context.get(program, Runs).subscribeAll()).pipe(
        Stream.runForEach((event) => Effect.sync(() => busLatencies.push(Date.now() - DateTime.toEpochMillis(event.at)))),
        Effect.forkScoped
      )

      // The suite's own event loop, so that latency is not blamed on the server wrongly.
      const lag = monitorEventLoopDelay({ resolution: 20 })
      lag.enable()
      yield* Effect.addFinalizer(() => Effect.sync(() => lag.disable()))
      const rss: Array<number> = []
      const sampler = setInterval(() => rss.push(server.rssMB()), 250)
      yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(sampler)))
      const baselineMB = server.rssMB()
      const cpuBefore = { server: server.cpuSeconds(), worker: worker.cpuSeconds(), suite: process.cpuUsage() }
      const wallBefore = Date.now()

      // Runs due a little later, so that every client is connected when they go live.
      const leadMs = ctx.quick ? 5000 : 15_000
      const runAt = new Date(Date.now() + leadMs).toISOString()
      const ids = yield* startRunsOverHttp(server.baseUrl, runCount, () => ({ task: "demo.count", input: { to: ticks, delayMs: 100 }, runAt }))
      const lastSeq = ticks + 3
      const latencies: Array<number> = []
      const deadline = Date.now() + leadMs + (ctx.quick ? 120_000 : 300_000)
      const clients = yield* Effect.forEach(Array.from({ length: clientCount }, (_, i) => i), (i) => {
        const runId = ids[i % runCount]!
        const dropAfter = i % 2 === 0 ? [] : Array.from({ length: randomInt(1, 2) }, () => randomInt(1, lastSeq - 1))
        return Effect.map(
          Effect.forkScoped(Effect.promise(() =>
            follow({
              baseUrl: server.baseUrl,
              runId,
              deadline,
              dropAfter,
              onEvent: (event, receivedAt, connectedAt) => {
                const at = Date.parse(event.at)
                if (at >= connectedAt) latencies.push(receivedAt - at)
              }
            })
          )),
          (fiber) => ({ runId, fiber })
        )
      })
      const connectedMB = server.rssMB()

      yield* waitAllFinished(db.url, ctx.quick ? "150 seconds" : "400 seconds")
      const results = yield* Effect.forEach(clients, ({ fiber, runId }) => Effect.map(Fiber.join(fiber), (result) => ({ runId, result })))
      clearInterval(sampler)
      const wall = (Date.now() - wallBefore) / 1000
      const suiteCpu = process.cpuUsage(cpuBefore.suite)
      const serverCpuSeconds = server.cpuSeconds() - cpuBefore.server
      const cpu = `server ${(serverCpuSeconds / wall * 100).toFixed(0)}%, worker ${((worker.cpuSeconds() - cpuBefore.worker) / wall * 100).toFixed(0)}%, the suite's clients ${((suiteCpu.user + suiteCpu.system) / 1e6 / wall * 100).toFixed(0)}% of a core over ${wall.toFixed(0)} s`
      const check = yield* checkRuns(db.url, ids)
      const lastSeqs = new Map((yield* query<{ id: string; last_seq: number }>(db.url, "SELECT id, last_seq FROM runstream_runs")).map((r) => [r.id, r.last_seq]))

      let wrong = 0
      let duplicates = 0
      let missing = 0
      let outOfOrder = 0
      let reconnects = 0
      let dropped = 0
      let delivered = 0
      const answers: Record<string, number> = {}
      for (const { result, runId } of results) {
        const verdict = judge(result.seqs, lastSeqs.get(runId) ?? 0)
        duplicates += verdict.duplicates
        missing += verdict.missing
        outOfOrder += verdict.outOfOrder
        delivered += result.seqs.length
        if (verdict.duplicates + verdict.missing + verdict.outOfOrder + verdict.extra > 0 || result.ended !== "terminal") wrong++
        reconnects += result.reconnects
        dropped += result.dropped
        for (const [kind, n] of Object.entries(result.errors)) answers[kind] = (answers[kind] ?? 0) + n
      }
      const peakMB = Math.max(baselineMB, ...rss)
      const serverLog = countLines(join(ctx.logDir, "s5-server.log"), {
        endedEarly: /event stream of .* ended early/,
        noConnection: /Failed to acquire connection/,
        databaseError: /database error/
      })

      const { expect, failures } = makeChecks()
      expect(wrong === 0, `every client ends with the whole log, once, in order (${wrong} did not: ${duplicates} duplicates, ${missing} missing, ${outOfOrder} out of order)`)
      expect(check.lost === 0 && check.gaps === 0 && check.badTerminal === 0, `runs finish with contiguous logs (${check.lost} lost, ${check.gaps} gaps)`)
      expect(server.alive(), "the server is alive")
      const p99 = percentile(latencies, 99)
      if (!ctx.quick) {
        expect(p99 <= p99TargetMs, `live events reach the clients within ${p99TargetMs} ms at p99 (${p99.toFixed(0)} ms; the bus itself ${percentile(busLatencies, 99).toFixed(0)} ms)`)
      }
      expect(serverLog["noConnection"] === 0, `the server never runs out of database connections while Postgres is healthy (${serverLog["noConnection"]} times "Failed to acquire connection": ${serverLog["endedEarly"]} streams ended early, ${serverLog["databaseError"]} requests answered 503)`)

      return {
        id: 5,
        name: "Many clients",
        load: `${clientCount} SSE clients on ${runCount} live runs × ${lastSeq} events (10/s each)`,
        faults: `${dropped} client disconnects (half the clients, 1-2 each), resumed with Last-Event-ID`,
        lost: String(missing),
        duplicated: String(duplicates),
        recovery: `p99 delivery ${seconds(percentile(latencies, 99))}`,
        passed: failures.length === 0,
        durationMs: Date.now() - began,
        figures: [
          ["clients", `${clientCount}: ${wrong} without the whole ordered log (${duplicates} duplicates, ${missing} missing, ${outOfOrder} out of order); ${delivered} events delivered; ${dropped} drops, ${reconnects} reconnects; failed answers: ${Object.entries(answers).map(([k, n]) => `${n} × ${k}`).join(", ") || "none"}`],
          ["delivery latency (live events, at → client)", `p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms, max ${Math.max(...latencies).toFixed(0)} ms over ${latencies.length} deliveries`],
          ["the suite's own event-loop delay (its 1,000 clients)", `p99 ${(lag.percentile(99) / 1e6).toFixed(0)} ms, max ${(lag.max / 1e6).toFixed(0)} ms`],
          ["bus latency (at → the suite's own subscriber, no SSE)", `p50 ${percentile(busLatencies, 50).toFixed(0)} ms, p99 ${percentile(busLatencies, 99).toFixed(0)} ms over ${busLatencies.length} events`],
          ["server memory (RSS)", `${baselineMB.toFixed(0)} MB before the clients, ${connectedMB.toFixed(0)} MB with them connected, peak ${peakMB.toFixed(0)} MB`],
          ["CPU", `${cpu}; the server's per event delivered: ${(serverCpuSeconds * 1e6 / Math.max(1, delivered)).toFixed(0)} µs`],
          ["server log", `${serverLog["endedEarly"]} streams ended early, ${serverLog["databaseError"]} requests answered 503 "database error", ${serverLog["noConnection"]} × "Failed to acquire connection" (pool of 10)`],
          ["runs", `${check.succeeded} succeeded, ${check.failed} failed, ${check.lost} lost; ${check.gaps} gaps`]
        ],
        failures
      }
    }).pipe(asFault)
}
