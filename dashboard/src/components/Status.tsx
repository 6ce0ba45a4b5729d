/** A run's status as a coloured badge (the word is always there: colour is not the only cue). */
import type { RunStatus } from "../api.ts"

export const Status = ({ status }: { readonly status: RunStatus }) => (
  <span class={`status status-${status}`} data-status={status}>{status}</span>
)
