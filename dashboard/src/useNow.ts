/** The current time, refreshed every `ms` while the component is shown (running durations tick). */
import { useEffect, useState } from "preact/hooks"

export const useNow = (ms: number) => {
  const [now, setNow] = useState(() => Date.now())
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms)
    return () => clearInterval(timer)
  }, [ms])
  return now
}
