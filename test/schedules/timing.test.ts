import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import type { CatchUp } from "../../src/domain/Schedule.ts"
import * as Timing from "../../src/schedules/Timing.ts"

const at = (iso: string) => new Date(iso)

const timing = (spec: Timing.TimingSpec) => {
  const parsed = Timing.parse("t", spec, at("2026-01-01T00:00:00Z"))
  if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
  return parsed.right
}

/** The first `n` ticks after `from`, as ISO strings. */
const ticks = (spec: Timing.TimingSpec, from: string, n: number) => {
  const t = timing(spec)
  const out: Array<string> = []
  let tick = at(from)
  for (let i = 0; i < n; i++) {
    tick = Timing.nextAfter(t, tick)
    out.push(tick.toISOString())
  }
  return out
}

const refusal = (spec: Timing.TimingSpec) => {
  const parsed = Timing.parse("bad", spec, at("2026-01-01T00:00:00Z"))
  return Either.isLeft(parsed) ? parsed.left.message : "accepted"
}

describe("cron ticks", () => {
  it("a 5-field expression ticks at second 0, in UTC without a time zone", () => {
    expect(ticks({ cron: "0 3 * * *" }, "2026-01-01T03:00:00Z", 2)).toEqual(["2026-01-02T03:00:00.000Z", "2026-01-03T03:00:00.000Z"])
  })

  it("a 6-field expression has seconds first", () => {
    expect(ticks({ cron: "*/20 * * * * *" }, "2026-01-01T00:00:00Z", 4)).toEqual([
      "2026-01-01T00:00:20.000Z",
      "2026-01-01T00:00:40.000Z",
      "2026-01-01T00:01:00.000Z",
      "2026-01-01T00:01:20.000Z"
    ])
    expect(ticks({ cron: "30 0 12 * * *", timezone: "Europe/Berlin" }, "2026-07-01T00:00:00Z", 1)).toEqual(["2026-07-01T10:00:30.000Z"])
  })

  it("America/New_York, spring forward (2026-03-08): 02:30 does not exist and ticks once at 03:30 EDT", () => {
    // 02:30 EST on the 7th is 07:30Z; on the 8th, 03:30 EDT is 07:30Z; on the 9th, 02:30 EDT is 06:30Z.
    expect(ticks({ cron: "30 2 * * *", timezone: "America/New_York" }, "2026-03-07T00:00:00Z", 3)).toEqual([
      "2026-03-07T07:30:00.000Z",
      "2026-03-08T07:30:00.000Z",
      "2026-03-09T06:30:00.000Z"
    ])
    // Hourly across the gap: 01:00 EST, then 03:00 EDT, one real hour apart.
    expect(ticks({ cron: "0 * * * *", timezone: "America/New_York" }, "2026-03-08T05:30:00Z", 3)).toEqual([
      "2026-03-08T06:00:00.000Z",
      "2026-03-08T07:00:00.000Z",
      "2026-03-08T08:00:00.000Z"
    ])
  })

  it("America/New_York, fall back (2026-11-01): 01:30 happens twice and ticks once, the first time", () => {
    expect(ticks({ cron: "30 1 * * *", timezone: "America/New_York" }, "2026-10-31T12:00:00Z", 3)).toEqual([
      "2026-11-01T05:30:00.000Z", // 01:30 EDT
      "2026-11-02T06:30:00.000Z", // 01:30 EST, next day: not 2026-11-01T06:30Z
      "2026-11-03T06:30:00.000Z"
    ])
  })

  it("Europe/Berlin, spring forward (2026-03-29): 02:30 ticks at 03:30 CEST", () => {
    expect(ticks({ cron: "30 2 * * *", timezone: "Europe/Berlin" }, "2026-03-28T00:00:00Z", 3)).toEqual([
      "2026-03-28T01:30:00.000Z", // 02:30 CET
      "2026-03-29T01:30:00.000Z", // 03:30 CEST
      "2026-03-30T00:30:00.000Z" // 02:30 CEST
    ])
  })

  it("Europe/Berlin, fall back (2026-10-25): the repeated hour ticks once", () => {
    expect(ticks({ cron: "30 2 * * *", timezone: "Europe/Berlin" }, "2026-10-24T12:00:00Z", 2)).toEqual([
      "2026-10-25T00:30:00.000Z", // 02:30 CEST, the first of the two
      "2026-10-26T01:30:00.000Z"
    ])
    // Wall-clock semantics: an hourly expression skips 02:00 CET (01:00Z), the second 02:00.
    expect(ticks({ cron: "0 * * * *", timezone: "Europe/Berlin" }, "2026-10-24T23:30:00Z", 3)).toEqual([
      "2026-10-25T00:00:00.000Z",
      "2026-10-25T02:00:00.000Z",
      "2026-10-25T03:00:00.000Z"
    ])
  })
})

describe("every ticks", () => {
  it("are the interval's multiples since the epoch, the same for every process", () => {
    expect(ticks({ every: "30 seconds" }, "2026-01-01T00:00:10Z", 3)).toEqual([
      "2026-01-01T00:00:30.000Z",
      "2026-01-01T00:01:00.000Z",
      "2026-01-01T00:01:30.000Z"
    ])
    expect(ticks({ every: "1 second" }, "2026-01-01T00:00:00.999Z", 2)).toEqual(["2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z"])
    // Strictly after: a tick is not its own next.
    expect(ticks({ every: "1 hour" }, "2026-01-01T05:00:00Z", 1)).toEqual(["2026-01-01T06:00:00.000Z"])
  })
})

describe("refused definitions", () => {
  it("name the problem", () => {
    expect(refusal({ cron: "0 3 * *" })).toMatch(/invalid cron expression '0 3 \* \*'.*segments/)
    expect(refusal({ cron: "61 3 * * *" })).toMatch(/invalid cron expression.*between 0 and 59/)
    expect(refusal({ cron: "0 0 31 2 *" })).toMatch(/never matches/)
    expect(refusal({ cron: "0 3 * * *", timezone: "Mars/Olympus" })).toMatch(/unknown time zone 'Mars\/Olympus'/)
    expect(refusal({ every: "500 millis" })).toMatch(/from 1 second/)
    expect(refusal({ every: "soon" })).toMatch(/not a duration/)
    expect(refusal({ every: "1 second", timezone: "UTC" })).toMatch(/cron schedules only/)
    expect(refusal({ cron: "* * * * *", every: "1 second" })).toMatch(/exactly one of cron and every/)
    expect(refusal({})).toMatch(/exactly one/)
    expect(refusal({ cron: "0 3 * * *", timezone: "America/New_York" })).toBe("accepted")
  })
})

describe("catch-up", () => {
  const everySecond = timing({ every: "1 second" })
  const hourly = timing({ cron: "0 * * * *" })
  const due = (t: Timing.Timing, first: string, now: string, catchUp: CatchUp) => {
    const d = Timing.due(t, at(first), at(now), catchUp)
    return { start: d.start.map((tick) => tick.toISOString()), skipped: d.skipped, next: d.next.toISOString() }
  }

  it("one tick due: it starts, whatever the rule", () => {
    for (const rule of ["latest", "none", "all"] as const) {
      expect(due(hourly, "2026-01-01T05:00:00Z", "2026-01-01T05:00:00.200Z", rule)).toEqual({
        start: ["2026-01-01T05:00:00.000Z"],
        skipped: 0,
        next: "2026-01-01T06:00:00.000Z"
      })
    }
  })

  it("latest: the latest missed tick starts once, older ones are skipped and counted", () => {
    expect(due(hourly, "2026-01-01T05:00:00Z", "2026-01-01T09:30:00Z", "latest")).toEqual({
      start: ["2026-01-01T09:00:00.000Z"],
      skipped: 4,
      next: "2026-01-01T10:00:00.000Z"
    })
    // Ticks at most 5 s late are on time (a busy ticker, not an outage): each starts; older ones are missed.
    expect(due(everySecond, "2026-01-01T00:00:01Z", "2026-01-01T00:00:10.500Z", "latest")).toEqual({
      start: ["2026-01-01T00:00:06.000Z", "2026-01-01T00:00:07.000Z", "2026-01-01T00:00:08.000Z", "2026-01-01T00:00:09.000Z", "2026-01-01T00:00:10.000Z"],
      skipped: 5,
      next: "2026-01-01T00:00:11.000Z"
    })
  })

  it("a pass late by a second or two (a busy ticker) starts every tick it finds due, whatever the rule", () => {
    for (const rule of ["latest", "none", "all"] as const) {
      expect(due(everySecond, "2026-01-01T00:00:01Z", "2026-01-01T00:00:02.400Z", rule)).toEqual({
        start: ["2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z"],
        skipped: 0,
        next: "2026-01-01T00:00:03.000Z"
      })
    }
    // The same by cron, walked tick by tick.
    expect(due(timing({ cron: "* * * * * *" }), "2026-01-01T00:00:01Z", "2026-01-01T00:00:03.100Z", "latest").start).toEqual([
      "2026-01-01T00:00:01.000Z",
      "2026-01-01T00:00:02.000Z",
      "2026-01-01T00:00:03.000Z"
    ])
  })

  it("none: with no tick on time, the latest starts if it is at most a minute late; older ones are skipped", () => {
    expect(due(hourly, "2026-01-01T05:00:00Z", "2026-01-01T09:30:00Z", "none")).toEqual({
      start: [],
      skipped: 5,
      next: "2026-01-01T10:00:00.000Z"
    })
    expect(due(hourly, "2026-01-01T05:00:00Z", "2026-01-01T05:00:50Z", "none").start).toEqual(["2026-01-01T05:00:00.000Z"])
    expect(due(everySecond, "2026-01-01T00:00:01Z", "2026-01-01T00:00:10.500Z", "none").start).toHaveLength(5)
  })

  it("all: each missed tick starts, up to the latest 100", () => {
    expect(due(hourly, "2026-01-01T05:00:00Z", "2026-01-01T07:00:00Z", "all").start).toEqual([
      "2026-01-01T05:00:00.000Z",
      "2026-01-01T06:00:00.000Z",
      "2026-01-01T07:00:00.000Z"
    ])
    const d = due(everySecond, "2026-01-01T00:00:01Z", "2026-01-01T00:10:00Z", "all")
    expect(d.start.length).toBe(Timing.catchUpAllBound)
    expect(d.start[0]).toBe("2026-01-01T00:08:21.000Z")
    expect(d.skipped).toBe(600 - 100)
    expect(d.next).toBe("2026-01-01T00:10:01.000Z")
  })

  it("a year down: a pass looks at a bounded number of cron ticks, and the count stays exact over passes", () => {
    const perSecond = timing({ cron: "* * * * * *" })
    let first = at("2026-01-01T00:00:00Z")
    const now = at("2026-01-01T06:00:00Z") // 21,601 ticks due
    let skipped = 0
    let passes = 0
    let started: ReadonlyArray<Date> = []
    while (first.getTime() <= now.getTime()) {
      const d = Timing.due(perSecond, first, now, "latest")
      expect(d.skipped + d.start.length).toBeLessThanOrEqual(Timing.ticksPerPass)
      skipped += d.skipped
      started = d.start
      first = d.next
      passes++
    }
    expect(passes).toBe(3)
    // The ticks of the last 5 s are on time; all before them were missed.
    expect(skipped).toBe(21_595)
    expect(started.map((tick) => tick.toISOString())).toEqual([
      "2026-01-01T05:59:55.000Z",
      "2026-01-01T05:59:56.000Z",
      "2026-01-01T05:59:57.000Z",
      "2026-01-01T05:59:58.000Z",
      "2026-01-01T05:59:59.000Z",
      "2026-01-01T06:00:00.000Z"
    ])
    expect(first.toISOString()).toBe("2026-01-01T06:00:01.000Z")
  })

  it("the tick's idempotency key names the schedule and the tick", () => {
    expect(Timing.idempotencyKey("nightly-report", at("2026-01-01T03:00:00Z"))).toBe("schedule:nightly-report:2026-01-01T03:00:00.000Z")
  })
})
