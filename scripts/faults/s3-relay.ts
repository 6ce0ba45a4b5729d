/**
 * Scenario 3, relay crash and duplicates. The worker process has no relay of
 * its own; three relays drain its outbox rows at once: a relay process (poll
 * 100 ms), the suite's own (poll 500 ms), and a chaotic relay process (poll
 * 5 ms, so it takes most batches) whose bus publishes each batch at once on a separate connection
 * (like a broker outside the transaction) and which then kills itself with
 * SIGKILL on a random batch, after publishing and before its drain transaction
 * commits: the outbox rows stay and another relay publishes them again, so
 * the same events reach the bus twice. Two such processes run at a time; the
 * suite replaces each one that dies.
 *
 * Subscribers (`Runs.events`, from the start and joining mid-run) must see
 * every event once, in order; the raw bus is counted too, to show that
 * duplicates were really delivered to it.
 */
import { Context, Duration, Effect, Fiber, Layer, Mailbox, Option, type Scope, Stream } from "effect"
import type { RunId } from "../../src/domain/Ids.ts"
import { Runs } from "../../src/Runs.ts"
import { checkRuns, type Child, type FaultError, freshDatabase, query, randomInt, seconds, percentile, startNode, waitAllFinished } from "./common.ts"
import { asFault, driverProgram, type Scenario } from "./harness.ts"
import { makeChecks } from "./report.ts"

export const scenario: Scenario = {
  id: 3,
  name: "Relay crash and duplicates",
  run: (ctx) =>
    Effect.gen(function*() {
      const began = Date.now()
      const maxRuns = ctx.quick ? 400 : 2000
      const wave = 1
      const ticks = 20
      const kills = ctx.quick ? 4 : 20
      const db = yield* freshDatabase(ctx.serverUrl)
      const program = yield* Layer.build(driverProgram(db.url))
      const runs = Context.get(program, Runs)

      // The raw bus, as it is delivered: (run, seq) -> arrival times.
      const arrivals = new Map<string, Array<number>>()
      const raw = Mailbox.toStream(yield* runs.subscribeAll())
      yield* raw.pipe(
        Stream.runForEach((event) =>
          Effect.sync(() => {
            const key = `${event.runId}/${event.seq}`
            const times = arrivals.get(key)
            if (times === undefined) arrivals.set(key, [Date.now()])
            else times.push(Date.now())
          })
        ),
        Effect.forkScoped
      )

      yield* startNode({
        name: "s3-worker",
        role: "worker",
        url: db.url,
        logDir: ctx.logDir,
        env: { RUNSTREAM_WORKER_CONCURRENCY: "20", RUNSTREAM_LEASE: "5 seconds", FAULTS_NO_RELAY: "1" }
      })
      yield* startNode({ name: "s3-relay-honest", role: "relay", url: db.url, logDir: ctx.logDir, env: { RUNSTREAM_RELAY_POLL: "100 millis" } })
      const restarts: Array<number> = []
      const startRelay = (incarnation: number): Effect.Effect<Child, FaultError, Scope.Scope> =>
        Effect.timed(startNode({
          name: `s3-relay-${incarnation}`,
          role: "relay",
          url: db.url,
          logDir: ctx.logDir,
          env: { FAULTS_KILL_AFTER: String(randomInt(1, 4)), RUNSTREAM_RELAY_POLL: "5 millis" }
        })).pipe(Effect.map(([took, child]) => {
          restarts.push(Duration.toMillis(took))
          return child
        }))

      // Load: waves of runs until the kills are done (so a relay always has
      // rows to drain), each followed from the start and a fourth of them
      // also joined mid-run.
      const ids: Array<RunId> = []
      const seen = new Map<string, Array<number>>()
      const follow = (name: string, runId: RunId, after: number) =>
        runs.events(runId, { after }).pipe(
          Stream.runForEach((event) =>
            Effect.sync(() => {
              const list = seen.get(name) ?? []
              list.push(event.seq)
              seen.set(name, list)
            })
          ),
          Effect.as({ name, runId, after })
        )
      const followers: Array<Fiber.RuntimeFiber<{ name: string; runId: RunId; after: number }, unknown>> = []
      let stopLoad = false
      const load = yield* Effect.gen(function*() {
        while (!stopLoad && ids.length < maxRuns) {
          const created = yield* runs.startMany(Array.from({ length: wave }, () => ({ task: "demo.count", input: { to: ticks, delayMs: 10 } })))
          for (const { run } of created) {
            ids.push(run.id)
            followers.push(yield* Effect.forkScoped(follow(`${run.id}@0`, run.id, 0)))
            if (ids.length % 4 === 0) {
              followers.push(yield* Effect.gen(function*() {
                yield* Effect.sleep(randomInt(200, 2000))
                const after = Math.floor((yield* runs.get(run.id)).lastSeq / 2)
                return yield* follow(`${run.id}@${after}`, run.id, after)
              }).pipe(Effect.forkScoped))
            }
          }
          yield* Effect.sleep("200 millis")
        }
      }).pipe(Effect.forkScoped)

      // Two chaotic relays at a time; each one that dies is replaced, until
      // `kills` deaths (a slot gives up after 60 s without one).
      const deaths: Array<{ at: number; key: string | undefined; events: number }> = []
      let incarnations = 0
      const slot = Effect.gen(function*() {
        while (deaths.length < kills) {
          const relay = yield* startRelay(incarnations++)
          const dying = yield* Effect.either(relay.next("dying", "60 seconds"))
          if (dying._tag === "Left") return
          deaths.push({ at: Date.now(), key: dying.right["first"] as string | undefined, events: Number(dying.right["events"]) })
          yield* relay.kill("SIGKILL")
        }
      })
      yield* Effect.all([slot, slot], { concurrency: 2, discard: true })

      stopLoad = true
      yield* Fiber.join(load)
      yield* waitAllFinished(db.url, ctx.quick ? "90 seconds" : "300 seconds")
      const streams = yield* Effect.either(
        Effect.forEach(followers, Fiber.join).pipe(Effect.timeout(ctx.quick ? "30 seconds" : "60 seconds"))
      )
      const logs = new Map<string, number>(
        (yield* query<{ id: string; last_seq: number }>(db.url, "SELECT id, last_seq FROM runstream_runs")).map((r) => [r.id, r.last_seq])
      )
      const check = yield* checkRuns(db.url, ids)

      let duplicates = 0
      let outOfOrder = 0
      let missing = 0
      let incomplete = 0
      for (const fiber of followers) {
        const done = yield* Fiber.poll(fiber)
        if (Option.isNone(done) || done.value._tag === "Failure") {
          incomplete++
          continue
        }
        const { after, name, runId } = done.value.value
        const seqs = seen.get(name) ?? []
        const unique = new Set(seqs)
        duplicates += seqs.length - unique.size
        for (let i = 1; i < seqs.length; i++) if (seqs[i]! <= seqs[i - 1]!) outOfOrder++
        const last = logs.get(runId) ?? 0
        for (let s = after + 1; s <= last; s++) if (!unique.has(s)) missing++
      }
      let rawDuplicates = 0
      for (const times of arrivals.values()) rawDuplicates += times.length - 1
      const republished = deaths.flatMap((d) => {
        const times = d.key === undefined ? undefined : arrivals.get(d.key)
        return times !== undefined && times.length > 1 ? [times[1]! - d.at] : []
      })

      const { expect, failures } = makeChecks()
      expect(deaths.length >= kills, `the relay died ${kills} times between publishing and committing (${deaths.length})`)
      expect(duplicates === 0, `no subscriber gets an event twice (${duplicates} duplicates)`)
      expect(outOfOrder === 0, `every subscriber gets events in order (${outOfOrder} out of order)`)
      expect(missing === 0, `no subscriber misses an event (${missing} missing)`)
      expect(incomplete === 0 && streams._tag === "Right", `every subscriber's stream ends after the terminal event (${incomplete} did not)`)
      expect(check.lost === 0 && check.gaps === 0 && check.badTerminal === 0, `runs finish with contiguous logs (${check.lost} lost, ${check.gaps} gaps, ${check.badTerminal} bad terminal)`)

      return {
        id: 3,
        name: "Relay crash and duplicates",
        load: `${ids.length} runs × ${ticks + 3} events, ${followers.length} subscribers, 3 relays`,
        faults: `${deaths.length} relay kills after publishing, before commit (${deaths.reduce((n, d) => n + d.events, 0)} events re-published)`,
        lost: String(check.lost + missing),
        duplicated: String(duplicates),
        recovery: republished.length === 0 ? "n/a" : `≤ ${seconds(Math.max(...republished))} (re-published)`,
        passed: failures.length === 0,
        durationMs: Date.now() - began,
        figures: [
          ["runs", `${check.succeeded} succeeded, ${check.failed} failed, ${check.lost} lost; logs: ${check.gaps} with a gap, ${check.badTerminal} with a bad terminal event`],
          ["subscribers", `${followers.length} (${ids.length} from seq 0, ${followers.length - ids.length} joining mid-run); ${duplicates} duplicates, ${outOfOrder} out of order, ${missing} missing, ${incomplete} not ended`],
          ["raw bus", `${arrivals.size} distinct events, ${rawDuplicates} delivered more than once (the injected duplicates)`],
          ["relay kills", `${deaths.length}, each after publishing a batch (${deaths.map((d) => d.events).join(", ")} events) and before its commit`],
          ["relay process start (spawn to ready)", `p50 ${seconds(percentile(restarts, 50))}, max ${seconds(Math.max(...restarts))}`],
          ["time to re-publication after a kill", republished.length === 0 ? "n/a" : `p50 ${seconds(percentile(republished, 50))}, max ${seconds(Math.max(...republished))}`]
        ],
        failures
      }
    }).pipe(asFault)
}
