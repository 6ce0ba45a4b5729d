/**
 * A run's children as a tree: the rows its page already has (the first 100,
 * kept live by the page), each of which expands to its own children, read
 * when opened (`GET /v1/runs?parentId=`, a page at a time, newest first as the
 * list answers) and read again each time it is opened again, so a collapsed
 * branch costs nothing and an opened one is never older than its opening.
 */
import { useEffect, useRef, useState } from "preact/hooks"
import { listRuns, type RunStatus } from "../api.ts"
import { runHref } from "../router.ts"
import { Status } from "./Status.tsx"

const pageSize = 50
const indentPx = 20

export interface TreeRun {
  readonly id: string
  readonly task: string
  readonly status: RunStatus
}

interface Branch {
  readonly runs: ReadonlyArray<TreeRun>
  readonly nextCursor: string | null
  readonly loading: boolean
  readonly error: string | null
}

const ChildRow = ({ run, depth }: { readonly run: TreeRun; readonly depth: number }) => {
  const [open, setOpen] = useState(false)
  const [branch, setBranch] = useState<Branch>({ runs: [], nextCursor: null, loading: false, error: null })
  const controller = useRef<AbortController | null>(null)
  useEffect(() => () => controller.current?.abort(), [])

  const load = (cursor: string | undefined) => {
    controller.current?.abort()
    const current = new AbortController()
    controller.current = current
    setBranch((b) => ({ ...b, runs: cursor === undefined ? [] : b.runs, loading: true, error: null }))
    listRuns({ parentId: run.id }, pageSize, cursor, current.signal).then(
      (page) => setBranch((b) => ({ runs: [...b.runs, ...page.runs], nextCursor: page.nextCursor, loading: false, error: null })),
      (e) => current.signal.aborted || setBranch((b) => ({ ...b, loading: false, error: e.message }))
    )
  }
  const toggle = () => {
    if (open) controller.current?.abort()
    else load(undefined)
    setOpen(!open)
  }
  const inner = { paddingLeft: `${10 + (depth + 1) * indentPx}px` }

  return (
    <>
      <tr data-run-id={run.id} data-depth={depth}>
        <td style={{ paddingLeft: `${10 + depth * indentPx}px` }}>
          <button type="button" class="tree-toggle" aria-expanded={open} aria-label={`Children of ${run.id}`} onClick={toggle}>
            {open ? "▾" : "▸"}
          </button>{" "}
          <a class="mono" href={runHref(run.id)}>{run.id}</a>
        </td>
        <td>{run.task}</td>
        <td><Status status={run.status} /></td>
      </tr>
      {open && branch.runs.map((child) => <ChildRow key={child.id} run={child} depth={depth + 1} />)}
      {open && branch.loading && <tr class="tree-note"><td colSpan={3} style={inner} aria-busy="true">Loading…</td></tr>}
      {open && branch.error !== null && <tr class="tree-note"><td colSpan={3} style={inner} class="error" role="alert">{branch.error}</td></tr>}
      {open && !branch.loading && branch.error === null && branch.runs.length === 0 && (
        <tr class="tree-note"><td colSpan={3} style={inner} class="muted">No children.</td></tr>
      )}
      {open && !branch.loading && branch.nextCursor !== null && (
        <tr class="tree-note">
          <td colSpan={3} style={inner}>
            <button type="button" onClick={() => load(branch.nextCursor ?? undefined)}>More children of {run.id}</button>
          </td>
        </tr>
      )}
    </>
  )
}

export const ChildTree = ({ runs }: { readonly runs: ReadonlyArray<TreeRun> }) => (
  <table class="children">
    <thead><tr><th scope="col">Run</th><th scope="col">Task</th><th scope="col">Status</th></tr></thead>
    <tbody>
      {runs.map((child) => <ChildRow key={child.id} run={child} depth={0} />)}
    </tbody>
  </table>
)
