/** A value as indented JSON, in a scrollable block. */
import { json } from "../format.ts"

export const Json = ({ value, label }: { readonly value: unknown; readonly label: string }) => (
  <pre class="json" tabIndex={0} aria-label={label}>{json(value)}</pre>
)
