/**
 * Routes in the URL's fragment (`#/runs/<id>`): the server serves one page at
 * `/`, and every other path stays the API's.
 */
import { useEffect, useState } from "preact/hooks"

export type Route =
  | { readonly view: "runs"; readonly params: URLSearchParams }
  | { readonly view: "run"; readonly id: string }
  | { readonly view: "overview" }
  | { readonly view: "tasks"; readonly task: string | undefined }

export const parse = (hash: string): Route => {
  const [path = "", search = ""] = hash.replace(/^#/, "").split("?", 2)
  const parts = path.split("/").filter((part) => part !== "").map(decodeURIComponent)
  if (parts[0] === "runs" && parts[1] !== undefined) return { view: "run", id: parts[1] }
  if (parts[0] === "overview") return { view: "overview" }
  if (parts[0] === "tasks") return { view: "tasks", task: parts[1] }
  return { view: "runs", params: new URLSearchParams(search) }
}

export const runHref = (id: string) => `#/runs/${encodeURIComponent(id)}`

export const useRoute = (): Route => {
  const [route, setRoute] = useState(() => parse(location.hash))
  useEffect(() => {
    const changed = () => setRoute(parse(location.hash))
    addEventListener("hashchange", changed)
    return () => removeEventListener("hashchange", changed)
  }, [])
  return route
}
