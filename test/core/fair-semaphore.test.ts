/**
 * The semaphore that bounds a program's stream reads: at most n holders, in
 * the order they asked, and no permit lost to an interrupted waiter.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FiberId, Option } from "effect"
import * as FairSemaphore from "../../src/internal/FairSemaphore.ts"

describe("FairSemaphore", () => {
  it.effect("admits at most n holders, in the order they asked", () =>
    Effect.gen(function*() {
      const semaphore = yield* FairSemaphore.make(2)
      const gate = yield* Deferred.make<void>()
      let holding = 0
      let most = 0
      const order: Array<number> = []
      const fibers = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) =>
        semaphore.withPermit(Effect.gen(function*() {
          order.push(i)
          most = Math.max(most, ++holding)
          if (i < 2) yield* Deferred.await(gate)
          yield* Effect.yieldNow()
          holding--
        })).pipe(Effect.fork))
      yield* Effect.yieldNow()
      expect(yield* semaphore.waiting).toBe(198)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.joinAll(fibers)
      expect(most).toBe(2)
      expect(order).toEqual(Array.from({ length: 200 }, (_, i) => i))
      expect(yield* semaphore.waiting).toBe(0)
    }))

  it.effect("loses no permit to waiters interrupted before or right after their grant", () =>
    Effect.gen(function*() {
      const semaphore = yield* FairSemaphore.make(1)
      const gate = yield* Deferred.make<Fiber.RuntimeFiber<unknown>>()
      // The holder, on its way out, interrupts the first waiter: the interrupt
      // reaches that waiter before the permit the holder's release grants it.
      const holder = yield* Effect.fork(semaphore.withPermit(
        Effect.flatMap(Deferred.await(gate), (first) => Effect.sync(() => first.unsafeInterruptAsFork(FiberId.none)))
      ))
      yield* Effect.yieldNow()
      const waiters = yield* Effect.forEach(Array.from({ length: 10 }), () => Effect.fork(semaphore.withPermit(Effect.never)))
      yield* Effect.yieldNow()
      // These are interrupted while waiting.
      yield* Fiber.interruptAll(waiters.slice(1))
      expect(yield* semaphore.waiting).toBe(1)
      yield* Deferred.succeed(gate, waiters[0]!)
      yield* Fiber.join(holder)
      expect(Exit.isInterrupted(yield* Fiber.await(waiters[0]!))).toBe(true)
      // The one permit is free again.
      expect(yield* semaphore.withPermit(Effect.succeed("free")).pipe(Effect.timeoutOption("1 second"))).toEqual(Option.some("free"))
      expect(yield* semaphore.waiting).toBe(0)
    }))
})
