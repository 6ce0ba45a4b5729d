/**
 * What commands print on stdout: aligned tables and coloured statuses on a
 * terminal, the same text without ANSI codes when piped (or with `NO_COLOR`),
 * and JSON documents or lines for scripts.
 * @since 0.1.0
 */
import * as Doc from "@effect/printer/Doc"
import * as Ansi from "@effect/printer-ansi/Ansi"
import * as AnsiDoc from "@effect/printer-ansi/AnsiDoc"
import { Config, Console, Context, Effect, Layer } from "effect"
import { printable } from "./CliError.ts"

export interface Column {
  readonly header: string
  /** Right-aligned (numbers). */
  readonly right?: boolean
}

/** A table cell: its text, and the colour it has on a terminal. */
export interface Cell {
  readonly text: string
  readonly ansi?: Ansi.Ansi | undefined
}

export class Output extends Context.Tag("runstream/cli/Output")<Output, {
  /** Whether text may carry ANSI codes. */
  readonly colour: boolean
  readonly paint: (text: string, ansi: Ansi.Ansi | undefined) => string
  /** One line of text (control characters escaped). */
  readonly line: (text: string) => Effect.Effect<void>
  /** One JSON document on one line. */
  readonly json: (value: unknown) => Effect.Effect<void>
  /** Aligned columns; no header line when every header is empty. */
  readonly table: (columns: ReadonlyArray<Column>, rows: ReadonlyArray<ReadonlyArray<Cell | string>>) => Effect.Effect<void>
}>() {}

/** The colour of a run status, or of an event type that ends a run. */
export const statusAnsi = (status: string): Ansi.Ansi | undefined => {
  switch (status) {
    case "succeeded":
    case "run.succeeded":
      return Ansi.green
    case "failed":
    case "run.failed":
      return Ansi.red
    case "cancelled":
    case "run.cancelled":
      return Ansi.yellow
    case "running":
    case "run.started":
      return Ansi.cyan
    case "run.retrying":
      return Ansi.magenta
    case "waiting":
    case "run.waiting":
      return Ansi.blue
    default:
      return undefined
  }
}

/** Grey, for what matters less (times, ids in a stream). */
export const dim = Ansi.blackBright

export const make = (options: { readonly colour: boolean }) => {
  const paint = (text: string, ansi: Ansi.Ansi | undefined) =>
    options.colour && ansi !== undefined
      ? AnsiDoc.render(Doc.annotate(Doc.text(text), ansi), { style: "pretty" })
      : text
  return Output.of({
    colour: options.colour,
    paint,
    line: (text) => Console.log(text),
    json: (value) => Console.log(JSON.stringify(value)),
    table: (columns, rows) => {
      const cells = rows.map((row) => row.map((cell): Cell => typeof cell === "string" ? { text: cell } : cell))
      const texts = cells.map((row) => row.map((cell) => printable(cell.text)))
      const widths = columns.map((column, i) => Math.max(column.header.length, ...texts.map((row) => row[i]?.length ?? 0)))
      const pad = (text: string, i: number) =>
        columns[i]!.right === true ? text.padStart(widths[i]!) : text.padEnd(widths[i]!)
      const header = columns.map((column, i) => paint(pad(column.header, i), Ansi.bold)).join("  ").trimEnd()
      const lines = texts.map((row, r) =>
        row.map((text, i) => paint(pad(text, i), cells[r]![i]!.ansi)).join("  ").trimEnd()
      )
      const withHeader = columns.some((column) => column.header !== "")
      return Console.log((withHeader ? [header, ...lines] : lines).join("\n"))
    }
  })
}

/**
 * Colours when stdout is a terminal and `NO_COLOR` is unset or empty
 * (https://no-color.org).
 * @category layers
 */
export const layer = Layer.effect(
  Output,
  Effect.map(
    Config.string("NO_COLOR").pipe(Config.withDefault("")),
    (noColor) => make({ colour: process.stdout.isTTY === true && noColor === "" })
  )
)

const ansiCodes = /\x1b\[[0-9;]*[A-Za-z]/g

const plainText = (strip: boolean) => (arg: unknown) =>
  typeof arg === "string" ? (strip ? arg.replace(ansiCodes, "") : arg).trimEnd() : arg

/**
 * Runs `effect` with a `Console` that drops ANSI codes from what goes to a
 * stream that is not a terminal: `@effect/cli` colours its help and its usage
 * errors whatever stdout is. Trailing blank lines go too (a usage error is one line).
 */
export const withPlainConsole = (terminals: { readonly stdout: boolean; readonly stderr: boolean }) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.consoleWith((console) =>
    Effect.withConsole(effect, {
      ...console,
      log: (...args) => console.log(...args.map(plainText(!terminals.stdout))),
      error: (...args) => console.error(...args.map(plainText(!terminals.stderr)))
    })
  )
