/** The dashboard: a header with the views and the sign-in, and the view of the URL's fragment. */
import { render } from "preact"
import { useState } from "preact/hooks"
import { useRoute } from "./router.ts"
import { signIn, signOut, useSession } from "./session.ts"
import "./styles.css"
import { OverviewView } from "./views/OverviewView.tsx"
import { RunsView } from "./views/RunsView.tsx"
import { RunView } from "./views/RunView.tsx"
import { TasksView } from "./views/TasksView.tsx"

const SignIn = ({ refused }: { readonly refused: boolean }) => {
  const [key, setKey] = useState("")
  return (
    <section class="signin" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in</h1>
      <p>This server needs an API key. It is kept in this tab only (session storage) and sent as <code>Authorization: Bearer</code>.</p>
      {refused && <p class="error" role="alert">The server refused that key.</p>}
      <form onSubmit={(event) => {
        event.preventDefault()
        if (key.trim() !== "") signIn(key.trim())
      }}>
        <label for="api-key">API key</label>
        <input id="api-key" type="password" autocomplete="off" value={key} onInput={(e) => setKey(e.currentTarget.value)} required />
        <button type="submit" class="primary">Sign in</button>
      </form>
    </section>
  )
}

const App = () => {
  const route = useRoute()
  const session = useSession()
  const current = route.view === "run" ? "runs" : route.view
  const link = (view: string, label: string) => (
    <a href={`#/${view}`} aria-current={current === view ? "page" : undefined}>{label}</a>
  )
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => {
        e.preventDefault()
        document.getElementById("main")?.focus()
      }}>Skip to content</a>
      <header>
        <span class="brand">Runstream</span>
        <nav aria-label="Views">
          {link("runs", "Runs")}
          {link("overview", "Overview")}
          {link("tasks", "Tasks")}
        </nav>
        <div class="spacer" />
        {session.key !== null && (
          <button type="button" class="link" onClick={() => signOut()}>Sign out</button>
        )}
      </header>
      <main id="main" tabIndex={-1} key={session.key ?? ""}>
        {session.needed
          ? <SignIn refused={session.key !== null} />
          : route.view === "runs"
          ? <RunsView params={route.params} />
          : route.view === "run"
          ? <RunView id={route.id} />
          : route.view === "overview"
          ? <OverviewView />
          : <TasksView selected={route.task} />}
      </main>
    </>
  )
}

render(<App />, document.getElementById("app")!)
