/** The shop's tasks: registered by both the server (to check starts) and the worker (to run them). */
import { Effect, Schema } from "effect"
import { Task } from "runstream"

const OrderLine = Schema.Struct({
  sku: Schema.NonEmptyTrimmedString,
  quantity: Schema.Int.pipe(Schema.between(1, 1000)),
  unitCents: Schema.Int.pipe(Schema.nonNegative())
})

/** Totals an order line by line, emitting a `line` event for each, as a dashboard would follow it. */
export const Invoice = Task.make("shop.invoice", {
  input: Schema.Struct({ orderId: Schema.NonEmptyTrimmedString, lines: Schema.Array(OrderLine).pipe(Schema.minItems(1)) }),
  output: Schema.Struct({ orderId: Schema.String, totalCents: Schema.Int }),
  timeout: "30 seconds",
  run: ({ lines, orderId }, ctx) =>
    Effect.gen(function*() {
      let totalCents = 0
      for (const line of lines) {
        totalCents += line.quantity * line.unitCents
        yield* ctx.emit("line", { sku: line.sku, cents: line.quantity * line.unitCents })
      }
      return { orderId, totalCents }
    })
})

/** Sends a receipt. An address that can never work ends the run at once; anything else is retried. */
export const SendReceipt = Task.make("shop.send-receipt", {
  input: Schema.Struct({ email: Schema.String, orderId: Schema.String }),
  output: Schema.Struct({ sentTo: Schema.String }),
  retry: { maxAttempts: 5, initialDelay: "1 second", maxDelay: "1 minute" },
  run: ({ email }, ctx) =>
    Effect.gen(function*() {
      if (!email.includes("@")) return yield* new Task.PermanentError({ message: `'${email}' is not an address` })
      yield* ctx.emit("sent", { email })
      return { sentTo: email }
    })
})

export const tasks = [Invoice, SendReceipt] as const
