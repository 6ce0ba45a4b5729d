/**
 * Where a run sits in its tree: its ancestors from the root down, as a
 * breadcrumb. A run knows its parent only (`parentId`), so the path is read
 * one `GET /v1/runs/:id` per level, up to `maxHops`: a deeper tree shows its
 * top as "…" rather than holding the page on dozens of requests.
 */
import { useEffect, useState } from "preact/hooks"
import { getRun, type Run } from "../api.ts"
import { runHref } from "../router.ts"

const maxHops = 20

interface Ancestor {
  readonly id: string
  /** Unknown for the parent shown while the path is read. */
  readonly task?: string | undefined
}

export const RunPath = ({ run }: { readonly run: Run }) => {
  // Nearest first, as read; `complete` once the root is reached (false: cut at maxHops).
  const [path, setPath] = useState<{ readonly ancestors: ReadonlyArray<Ancestor>; readonly complete: boolean } | null>(null)
  const [error, setError] = useState<string | null>(null)
  const parentId = run.parentId

  useEffect(() => {
    setPath(null)
    setError(null)
    if (parentId === undefined) return
    const controller = new AbortController()
    const read = async () => {
      const ancestors: Array<Ancestor> = []
      let next: string | undefined = parentId
      while (next !== undefined && ancestors.length < maxHops) {
        const ancestor: Run = await getRun(next, controller.signal)
        ancestors.push({ id: ancestor.id, task: ancestor.task })
        next = ancestor.parentId
      }
      if (!controller.signal.aborted) setPath({ ancestors, complete: next === undefined })
    }
    read().catch((e) => controller.signal.aborted || setError(`The run's ancestors could not be read: ${e.message}`))
    return () => controller.abort()
  }, [run.id, parentId])

  if (parentId === undefined) return null
  // Until the path is read, the parent alone (its id is known).
  const ancestors: ReadonlyArray<Ancestor> = path?.ancestors ?? [{ id: parentId }]
  return (
    <nav class="run-path" aria-label="Run tree" aria-busy={path === null && error === null}>
      <ol>
        {(path === null || !path.complete) && <li class="muted">…</li>}
        {[...ancestors].reverse().map((ancestor) => (
          <li key={ancestor.id}>
            <a href={runHref(ancestor.id)} data-run-id={ancestor.id}>{ancestor.task === undefined ? "" : `${ancestor.task} `}<span class="mono">{ancestor.id}</span></a>
          </li>
        ))}
        <li aria-current="page">{run.task} <span class="mono">{run.id}</span></li>
      </ol>
      {error !== null && <p class="error" role="alert">{error}</p>}
    </nav>
  )
}
