/**
 * A button that asks first: a modal `<dialog>` (focus kept inside, Escape
 * closes it) with the question, Confirm and Cancel.
 */
import { useRef, useState } from "preact/hooks"

export interface ConfirmProps {
  readonly label: string
  readonly question: string
  readonly confirmLabel: string
  readonly disabled?: boolean
  readonly danger?: boolean
  readonly onConfirm: () => Promise<void>
}

export const ConfirmButton = (props: ConfirmProps) => {
  const dialog = useRef<HTMLDialogElement>(null)
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | null>(null)
  const confirm = async () => {
    setBusy(true)
    setError(null)
    try {
      await props.onConfirm()
      dialog.current?.close()
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e))
    } finally {
      setBusy(false)
    }
  }
  return (
    <>
      <button type="button" class={props.danger === true ? "danger" : ""} disabled={props.disabled === true}
        onClick={() => {
          setError(null)
          dialog.current?.showModal()
        }}>
        {props.label}
      </button>
      <dialog ref={dialog} aria-label={props.label}>
        <p>{props.question}</p>
        {error !== null && <p class="error" role="alert">{error}</p>}
        <div class="actions">
          <button type="button" onClick={() => dialog.current?.close()} disabled={busy}>Cancel</button>
          <button type="button" class={props.danger === true ? "danger" : "primary"} onClick={confirm} disabled={busy} autofocus>
            {props.confirmLabel}
          </button>
        </div>
      </dialog>
    </>
  )
}
