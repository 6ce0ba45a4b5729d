/**
 * The API key of this tab, kept in `sessionStorage` (gone when the tab
 * closes), and whether the server asked for one.
 */
import { useEffect, useState } from "preact/hooks"

const storageKey = "runstream.apiKey"

type Listener = () => void
const listeners = new Set<Listener>()
let needed = false

export const apiKey = (): string | null => sessionStorage.getItem(storageKey)

const changed = () => {
  for (const listener of listeners) listener()
}

export const signIn = (key: string) => {
  sessionStorage.setItem(storageKey, key)
  needed = false
  changed()
}

export const signOut = () => {
  sessionStorage.removeItem(storageKey)
  changed()
}

/** A request was refused for want of a (valid) key. */
export const keyNeeded = () => {
  if (needed) return
  needed = true
  changed()
}

/** `Authorization` for the API, when a key is held. */
export const authHeaders = (): Record<string, string> => {
  const key = apiKey()
  return key === null ? {} : { authorization: `Bearer ${key}` }
}

/** The session as a component sees it; re-renders on change. */
export const useSession = () => {
  const [, setTick] = useState(0)
  useEffect(() => {
    const listener = () => setTick((n) => n + 1)
    listeners.add(listener)
    return () => void listeners.delete(listener)
  }, [])
  return { key: apiKey(), needed }
}
