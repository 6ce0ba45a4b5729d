/**
 * Tasks: each registered task (`GET /v1/tasks`) with its input and output
 * schemas, its retry policy and timeout, and a form that starts a run. The
 * input is checked against the task's schema before it is sent; what the
 * server refuses comes back field by field and is shown beside that field.
 */
import { useEffect, useState } from "preact/hooks"
import { ApiFailure, getTasks, type Issue, startRun, type TaskInfo } from "../api.ts"
import { Json } from "../components/Json.tsx"
import { duration, issuePath } from "../format.ts"
import { runHref } from "../router.ts"
import { check, example } from "../schema.ts"

export const TasksView = ({ selected }: { readonly selected: string | undefined }) => {
  const [tasks, setTasks] = useState<ReadonlyArray<TaskInfo> | null>(null)
  const [error, setError] = useState<string | null>(null)
  useEffect(() => {
    const controller = new AbortController()
    getTasks(controller.signal).then(setTasks, (e) =>
      controller.signal.aborted || setError(e instanceof ApiFailure && e.status === 404 ? "This server has no /v1/tasks." : e.message))
    return () => controller.abort()
  }, [])
  useEffect(() => {
    if (tasks !== null && selected !== undefined) document.getElementById(`task-${selected}`)?.scrollIntoView()
  }, [tasks, selected])
  return (
    <section aria-labelledby="tasks-title">
      <h1 id="tasks-title">Tasks</h1>
      {error !== null && <p class="error" role="alert">{error}</p>}
      {tasks?.length === 0 && <p class="muted">No tasks are registered.</p>}
      {tasks?.map((task) => <TaskCard key={task.name} task={task} />)}
    </section>
  )
}

const optionFields = ["queue", "idempotencyKey", "priority", "runAt", "maxAttempts", "timeoutMs"] as const
type Field = "input" | typeof optionFields[number]
type Errors = Partial<Record<Field, ReadonlyArray<string>>>

/** The server's issues by form field: a task input's own issues all go to `input`. */
const errorsOf = (failure: ApiFailure): Errors => {
  const errors: Partial<Record<Field, Array<string>>> = {}
  const add = (field: Field, text: string) => (errors[field] ??= []).push(text)
  const ofInput = failure.message.startsWith("input of task")
  for (const issue of failure.issues) {
    const [head, ...rest] = issue.path
    if (ofInput) add("input", `${issuePath("input", issue.path)}: ${issue.message}`)
    else if (head === "input") add("input", `${issuePath("input", rest)}: ${issue.message}`)
    else if (optionFields.includes(head as any)) add(head as Field, issue.message)
    else add("input", `${issuePath("body", issue.path)}: ${issue.message}`)
  }
  if (failure.issues.length === 0) add("input", failure.message)
  return errors
}

const FieldErrors = ({ id, errors }: { readonly id: string; readonly errors: ReadonlyArray<string> | undefined }) =>
  errors === undefined || errors.length === 0 ? null : (
    <ul id={id} class="field-errors" role="alert">{errors.map((e, i) => <li key={i}>{e}</li>)}</ul>
  )

const TaskCard = ({ task }: { readonly task: TaskInfo }) => {
  const [input, setInput] = useState(() => JSON.stringify(task.input === null ? {} : example(task.input), null, 2))
  const [errors, setErrors] = useState<Errors>({})
  const [busy, setBusy] = useState(false)
  const [started, setStarted] = useState<string | null>(null)
  const base = `task-${task.name.replace(/[^A-Za-z0-9_-]/g, "_")}`
  const described = (field: Field) => errors[field] === undefined ? {} : { "aria-describedby": `${base}-${field}-errors`, "aria-invalid": true }

  const submit = async (form: HTMLFormElement) => {
    setStarted(null)
    let value: unknown
    try {
      value = input.trim() === "" ? undefined : JSON.parse(input)
    } catch (e) {
      return setErrors({ input: [`not valid JSON: ${e instanceof Error ? e.message : String(e)}`] })
    }
    const issues: ReadonlyArray<Issue> = task.input === null ? [] : check(task.input, value ?? null)
    if (issues.length > 0) return setErrors({ input: issues.map((i) => `${issuePath("input", i.path)}: ${i.message}`) })
    const data = new FormData(form)
    const body: Record<string, unknown> = { task: task.name, ...(value === undefined ? {} : { input: value }) }
    for (const field of optionFields) {
      const text = String(data.get(field) ?? "").trim()
      if (text === "") continue
      body[field] = field === "priority" || field === "maxAttempts" || field === "timeoutMs"
        ? (/^-?\d+$/.test(text) ? Number(text) : text)
        : text
    }
    setErrors({})
    setBusy(true)
    try {
      const run = await startRun(body)
      setStarted(run.id)
    } catch (e) {
      setErrors(e instanceof ApiFailure ? errorsOf(e) : { input: [String(e)] })
    } finally {
      setBusy(false)
    }
  }

  return (
    <article class="task" id={`task-${task.name}`} aria-labelledby={`${base}-title`}>
      <h2 id={`${base}-title`} class="mono">{task.name}</h2>
      <dl class="facts">
        <div><dt>Queue</dt><dd>{task.queue}</dd></div>
        <div><dt>Timeout</dt><dd>{task.timeoutMs === null ? "none" : duration(task.timeoutMs)}</dd></div>
        <div><dt>Attempts</dt><dd>up to {task.retry.maxAttempts}</dd></div>
        <div><dt>Backoff</dt><dd>{duration(task.retry.initialDelayMs)} × {task.retry.factor}ⁿ, at most {duration(task.retry.maxDelayMs)}</dd></div>
        <div><dt>Runs</dt><dd><a href={`#/runs?task=${encodeURIComponent(task.name)}`}>see the runs</a></dd></div>
      </dl>
      <div class="task-body">
        <div class="schemas">
          <details open><summary>Input schema</summary>{task.input === null ? <p class="muted">No JSON Schema form.</p> : <Json value={task.input} label={`Input schema of ${task.name}`} />}</details>
          <details><summary>Output schema</summary>{task.output === null ? <p class="muted">No JSON Schema form.</p> : <Json value={task.output} label={`Output schema of ${task.name}`} />}</details>
        </div>
        <form class="start" noValidate onSubmit={(event) => {
          event.preventDefault()
          void submit(event.currentTarget)
        }}>
          <div class="field wide">
            <label for={`${base}-input`}>Input (JSON)</label>
            <textarea id={`${base}-input`} name="input" rows={Math.min(12, Math.max(3, input.split("\n").length))} spellcheck={false}
              value={input} onInput={(e) => setInput(e.currentTarget.value)} {...described("input")} />
            <FieldErrors id={`${base}-input-errors`} errors={errors.input} />
          </div>
          <div class="options">
            {([
              ["queue", "Queue", task.queue],
              ["idempotencyKey", "Idempotency key", ""],
              ["priority", "Priority", "0"],
              ["runAt", "Run at (ISO 8601)", "now"],
              ["maxAttempts", "Max attempts", ""]
            ] as const).map(([field, label, placeholder]) => (
              <div class="field" key={field}>
                <label for={`${base}-${field}`}>{label}</label>
                <input id={`${base}-${field}`} name={field} placeholder={placeholder} {...described(field)} />
                <FieldErrors id={`${base}-${field}-errors`} errors={errors[field]} />
              </div>
            ))}
          </div>
          <div class="actions">
            <button type="submit" class="primary" disabled={busy}>Start run</button>
            {started !== null && <span role="status">Started <a class="mono" href={runHref(started)}>{started}</a></span>}
          </div>
        </form>
      </div>
    </article>
  )
}
