/** How times, durations and JSON read on the page. */

/** `2026-12-07 04:31:02` in the browser's time zone. */
export const time = (iso: string | null | undefined): string => {
  if (iso === null || iso === undefined) return "—"
  const date = new Date(iso)
  const pad = (n: number, width = 2) => String(n).padStart(width, "0")
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
}

/** `12 ms`, `3.4 s`, `2 min 5 s`, `3 h 2 min`. */
export const duration = (ms: number | null | undefined): string => {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—"
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(ms < 10_000 ? 2 : 1))} s`
  const part = (whole: number, unit: string, rest: number, restUnit: string) =>
    rest === 0 ? `${whole} ${unit}` : `${whole} ${unit} ${rest} ${restUnit}`
  if (ms < 3_600_000) return part(Math.floor(ms / 60_000), "min", Math.round((ms % 60_000) / 1000), "s")
  return part(Math.floor(ms / 3_600_000), "h", Math.round((ms % 3_600_000) / 60_000), "min")
}

/** A run's duration: from its start (or creation) to its end, or to `now` while it runs. */
export const runDuration = (
  run: { readonly createdAt: string; readonly startedAt: string | null; readonly finishedAt: string | null },
  now: number
): number | null => {
  if (run.startedAt === null) return null
  const end = run.finishedAt === null ? now : Date.parse(run.finishedAt)
  return end - Date.parse(run.startedAt)
}

/** JSON for people: indented, `undefined` shown as null. */
export const json = (value: unknown): string => JSON.stringify(value ?? null, null, 2) ?? "null"

/** A path of an issue as people read it: `input.items[2].name`, or `input` for the value itself. */
export const issuePath = (root: string, path: ReadonlyArray<string | number>) =>
  path.reduce<string>((text, key) => typeof key === "number" ? `${text}[${key}]` : `${text}.${key}`, root)
