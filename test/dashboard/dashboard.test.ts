/**
 * The dashboard in chromium against a real server and database: the list
 * and a run's page follow runs live, cancel and replay work from their
 * buttons, the start form shows each field's error, and the same with API
 * keys on. Each view leaves a screenshot in test/dashboard/screenshots/.
 */
import { Redacted } from "effect"
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { expectClean, type Harness, hasChromium, openTab, screenshot, start } from "./support.ts"

const statusOf = (page: Page, runId: string) => page.locator(`tr[data-run-id="${runId}"] .status`)

/** Waits until the run's row in the list shows `status`. */
const rowReaches = (page: Page, runId: string, status: string) =>
  page.locator(`tr[data-run-id="${runId}"] .status[data-status="${status}"]`).waitFor()

describe.skipIf(!hasChromium)("dashboard", () => {
  let harness: Harness
  beforeAll(async () => {
    harness = await start()
  })
  afterAll(() => harness?.close())

  it("shows a run started by the API in the list, live, until it succeeds, without a reload", async () => {
    // Other runs around it, as on a real list.
    for (const body of [
      { task: "demo.count", input: { to: 3 } },
      { task: "demo.flaky", input: { failures: 1 } },
      { task: "demo.flaky", input: { failures: 5 }, maxAttempts: 2 },
      { task: "demo.echo", input: { hello: "world" } }
    ]) await harness.api("/v1/runs", { method: "POST", body })
    const tab = await openTab(harness, "#/runs")
    const { page } = tab
    await page.getByRole("status").filter({ hasText: "live" }).waitFor()
    const { body } = await harness.api("/v1/runs", { method: "POST", body: { task: "test.stepper", input: { steps: 1 } } })
    const runId: string = body.run.id
    await page.locator(`tr[data-run-id="${runId}"]`).waitFor()
    expect(await statusOf(page, runId).textContent()).toMatch(/queued|running/)
    await harness.step()
    await rowReaches(page, runId, "succeeded")
    expect(await tab.sameDocument()).toBe(true)
    await screenshot(page, "runs")
    expectClean(tab, harness.base)
    await tab.context.close()
  })

  it("shows a run's events on its page as they arrive, then its output", async () => {
    const { body } = await harness.api("/v1/runs", { method: "POST", body: { task: "test.stepper", input: { steps: 3 } } })
    const runId: string = body.run.id
    const tab = await openTab(harness, `#/runs/${runId}`)
    const { page } = tab
    await page.locator(`.event[data-type="run.started"]`).waitFor()
    expect(await page.locator(".event[data-type=step]").count()).toBe(0)
    for (let i = 1; i <= 3; i++) {
      await harness.step()
      await page.locator(`.event[data-type="step"]`).nth(i - 1).waitFor()
    }
    await page.locator(`.event[data-type="run.succeeded"]`).waitFor()
    await page.locator(`h1 + .status[data-status="succeeded"]`).waitFor()
    await page.getByLabel("Output", { exact: true }).filter({ hasText: "\"steps\": 3" }).waitFor()
    // An event's data opens and closes from the keyboard.
    const line = page.locator(`.event[data-type="step"] button`).first()
    await line.focus()
    await page.keyboard.press("Enter")
    await page.getByLabel("Data of event 3").filter({ hasText: "\"i\": 1" }).waitFor()
    expect(await line.getAttribute("aria-expanded")).toBe("true")
    await screenshot(page, "run")
    expectClean(tab, harness.base)
    await tab.context.close()
  })

  it("shows each attempt of a retried run with its error, on the timeline too", async () => {
    const { body } = await harness.api("/v1/runs", { method: "POST", body: { task: "demo.flaky", input: { failures: 2 } } })
    const tab = await openTab(harness, `#/runs/${body.run.id}`)
    const { page } = tab
    await page.locator(`h1 + .status[data-status="succeeded"]`).waitFor()
    // The status comes from the run, the attempts from its log's stream: a run that had
    // ended before the page opened shows its status before the log's events are drawn.
    const rows = page.locator("table.attempts tbody tr")
    await rows.nth(2).waitFor()
    expect(await rows.count()).toBe(3)
    expect(await rows.nth(0).textContent()).toContain("FlakyFailure: attempt 1 failed on purpose")
    expect(await rows.nth(1).textContent()).toContain("retrying")
    expect(await rows.nth(2).textContent()).toContain("succeeded")
    expect(await page.locator(".timeline rect.attempt").count()).toBe(3)
    await screenshot(page, "run-retried")
    expectClean(tab, harness.base)
    await tab.context.close()
  })

  it("renders only the rows in view of a log of thousands of events", async () => {
    // Each event is a transaction of its own: a few thousand take a while on a busy machine.
    const { body } = await harness.api("/v1/runs", { method: "POST", body: { task: "demo.count", input: { to: 3000 } } })
    const tab = await openTab(harness, `#/runs/${body.run.id}`)
    const { page } = tab
    await page.locator(`.event[data-type="run.succeeded"]`).waitFor({ timeout: 150_000 })
    await page.locator("#events-title").filter({ hasText: "(3003)" }).waitFor()
    expect(await page.locator(".vrow").count()).toBeLessThan(60)
    await page.locator(".vlist").evaluate((element) => (element.scrollTop = 0))
    await page.locator(`.event[data-seq="1"][data-type="run.queued"]`).waitFor()
    expect(await page.locator(`.event[data-type="run.succeeded"]`).count()).toBe(0)
    expectClean(tab, harness.base)
    await tab.context.close()
  }, 180_000)

  it("cancels a run from its button, after confirmation", async () => {
    const { body } = await harness.api("/v1/runs", { method: "POST", body: { task: "demo.sleep", input: { ms: 600_000 } } })
    const runId: string = body.run.id
    const tab = await openTab(harness, `#/runs/${runId}`)
    const { page } = tab
    await page.locator(`.event[data-type="run.started"]`).waitFor()
    await page.getByRole("button", { name: "Cancel run" }).click()
    await page.getByRole("button", { name: "Cancel the run" }).click()
    await page.locator(`.event[data-type="run.cancelled"]`).waitFor()
    await page.locator(`h1 + .status[data-status="cancelled"]`).waitFor()
    expect((await harness.api(`/v1/runs/${runId}`)).body.run.status).toBe("cancelled")
    expect(await page.getByRole("button", { name: "Cancel run" }).isDisabled()).toBe(true)
    expectClean(tab, harness.base)
    await tab.context.close()
  })

  it("lists a parent's children, shows it waiting for them, and keeps them listed (cancelled) after a cancel from its button", async () => {
    const { body } = await harness.api("/v1/runs", { method: "POST", body: { task: "demo.fanout", input: { children: 3, to: 100, delayMs: 60_000 } } })
    const runId: string = body.run.id
    const tab = await openTab(harness, `#/runs/${runId}`)
    const { page } = tab
    // Read again as the parent's log says each child started (the page may open before they exist).
    await page.locator("table.children tbody tr").nth(2).waitFor()
    // Its `run.waiting` makes it waiting on the page without a reload.
    await page.locator(`h1 + .status[data-status="waiting"]`).waitFor()
    await page.getByRole("button", { name: "Cancel run" }).click()
    await page.getByRole("button", { name: "Cancel the run" }).click()
    await page.locator(`h1 + .status[data-status="cancelled"]`).waitFor()
    await page.locator(`table.children .status[data-status="cancelled"]`).nth(2).waitFor()
    expect(await page.locator("table.children tbody tr").count()).toBe(3)
    const { body: after } = await harness.api(`/v1/runs/${runId}`)
    expect(after.run.children.map((child: { status: string }) => child.status)).toEqual(["cancelled", "cancelled", "cancelled"])
    await screenshot(page, "run-children")
    // All of a run's children in the runs list, by its id (a run's page links there past 100).
    await page.goto(`${harness.base}/#/runs?parentId=${runId}`)
    await page.locator(`.notice a[href="#/runs/${runId}"]`).waitFor()
    await page.locator("table.runs tbody tr[data-run-id]").nth(2).waitFor()
    expect((await page.locator("table.runs tbody tr[data-run-id]").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-run-id")))).sort())
      .toEqual(after.run.children.map((child: { id: string }) => child.id).sort())
    expectClean(tab, harness.base)
    await tab.context.close()
  })

  it("shows a run's tree: a child expands to its own children, and a grandchild's page has the path from the root", async () => {
    const { body } = await harness.api("/v1/runs", { method: "POST", body: { task: "test.tree", input: {} } })
    const rootId: string = body.run.id
    const tab = await openTab(harness, `#/runs/${rootId}`)
    const { page } = tab
    // The root ends after its child, which ends after its own: the whole tree exists by then.
    await page.locator(`h1 + .status[data-status="succeeded"]`).waitFor()
    const [child] = (await harness.api(`/v1/runs/${rootId}`)).body.run.children
    const [grandchild] = (await harness.api(`/v1/runs/${child.id}`)).body.run.children
    expect([child.task, grandchild.task]).toEqual(["test.tree-middle", "demo.echo"])
    // A root has no path above it.
    expect(await page.locator("nav.run-path").count()).toBe(0)
    const childRow = page.locator(`table.children tr[data-depth="0"][data-run-id="${child.id}"]`)
    await childRow.waitFor()
    expect(await page.locator(`table.children tr[data-run-id="${grandchild.id}"]`).count()).toBe(0)
    // Its children are read when it opens (GET /v1/runs?parentId=).
    await page.getByRole("button", { name: `Children of ${child.id}` }).click()
    const grandchildRow = page.locator(`table.children tr[data-depth="1"][data-run-id="${grandchild.id}"]`)
    await grandchildRow.locator(`.status[data-status="succeeded"]`).waitFor()
    expect(await childRow.getByRole("button").getAttribute("aria-expanded")).toBe("true")
    // A leaf opens to none.
    await page.getByRole("button", { name: `Children of ${grandchild.id}` }).click()
    await page.locator("table.children tr.tree-note", { hasText: "No children." }).waitFor()
    await screenshot(page, "run-tree")
    // Closed, the branch's rows go.
    await page.getByRole("button", { name: `Children of ${child.id}` }).click()
    await grandchildRow.waitFor({ state: "detached" })
    expect(await page.locator("table.children tbody tr").count()).toBe(1)
    // The grandchild's page: root › child › itself.
    await page.getByRole("button", { name: `Children of ${child.id}` }).click()
    await grandchildRow.getByRole("link", { name: grandchild.id }).click()
    await page.waitForURL((url) => url.hash.endsWith(grandchild.id))
    const path = page.locator(`nav.run-path[aria-busy="false"]`)
    await path.waitFor()
    expect(await path.locator("a").evaluateAll((links) => links.map((link) => link.getAttribute("data-run-id")))).toEqual([rootId, child.id])
    expect(await path.locator("li").allTextContents()).toEqual([`test.tree ${rootId}`, `test.tree-middle ${child.id}`, `demo.echo ${grandchild.id}`])
    expect(await path.locator(`[aria-current="page"]`).textContent()).toBe(`demo.echo ${grandchild.id}`)
    await screenshot(page, "run-path")
    // Up the path to the root, in the same document.
    await path.getByRole("link", { name: new RegExp(rootId) }).click()
    await page.waitForURL((url) => url.hash.endsWith(rootId))
    await page.locator(`table.children tr[data-run-id="${child.id}"]`).waitFor()
    expect(await tab.sameDocument()).toBe(true)
    expectClean(tab, harness.base)
    await tab.context.close()
  })

  it("replays a run from its button and links the replay to its original", async () => {
    const { body } = await harness.api("/v1/runs", { method: "POST", body: { task: "demo.count", input: { to: 2 } } })
    const original: string = body.run.id
    const tab = await openTab(harness, `#/runs/${original}`)
    const { page } = tab
    await page.locator(`h1 + .status[data-status="succeeded"]`).waitFor()
    await page.getByRole("button", { name: "Replay" }).click()
    await page.getByRole("button", { name: "Start the replay" }).click()
    await page.waitForURL((url) => url.hash.startsWith("#/runs/") && !url.hash.endsWith(original))
    const replay = decodeURIComponent(new URL(page.url()).hash.slice("#/runs/".length))
    await page.locator(`h1 + .status[data-status="succeeded"]`).waitFor()
    const link = page.getByRole("link", { name: original })
    await link.waitFor()
    const answer = (await harness.api(`/v1/runs/${replay}`)).body.run
    expect({ task: answer.task, input: answer.input, replayOf: answer.replayOf }).toEqual({ task: "demo.count", input: { to: 2 }, replayOf: original })
    await link.click()
    await page.waitForURL((url) => url.hash.endsWith(original))
    expect(await tab.sameDocument()).toBe(true)
    expectClean(tab, harness.base)
    await tab.context.close()
  })

  it("checks a start form's input against the task's schema and shows the server's field errors beside their fields", async () => {
    const tab = await openTab(harness, "#/tasks")
    const { page } = tab
    const card = page.locator("article", { has: page.getByRole("heading", { name: "demo.count" }) })
    /** Waits for `text` in the errors shown beside `field`, which names them as its description. */
    const errorBeside = async (label: string, text: string) => {
      const field = card.getByLabel(label, { exact: true })
      const errors = card.locator(".field", { has: page.getByLabel(label, { exact: true }) }).locator(".field-errors", { hasText: text })
      await errors.waitFor()
      expect(await field.getAttribute("aria-describedby")).toBe(await errors.getAttribute("id"))
      expect(await field.getAttribute("aria-invalid")).toBe("true")
    }
    const input = card.getByLabel("Input (JSON)")
    await input.fill(`{"to": "five"}`)
    await card.getByRole("button", { name: "Start run" }).click()
    // Checked in the page against the task's JSON Schema.
    await errorBeside("Input (JSON)", "input.to: Expected integer")
    // The input passes, the queue does not: the server's issue is shown beside the queue field.
    await input.fill(`{"to": 2}`)
    const queue = card.getByLabel("Queue", { exact: true })
    await queue.fill("no spaces allowed")
    await card.getByRole("button", { name: "Start run" }).click()
    await errorBeside("Queue", "a queue name is 1-100 of")
    expect(await input.getAttribute("aria-invalid")).toBe(null)
    await screenshot(page, "tasks")
    await queue.fill("")
    await card.getByRole("button", { name: "Start run" }).click()
    const started = card.getByRole("status").getByRole("link")
    await started.waitFor()
    const runId = (await started.textContent())!
    expect((await harness.api(`/v1/runs/${runId}`)).body.run).toMatchObject({ task: "demo.count", input: { to: 2 } })
    expectClean(tab, harness.base)
    await tab.context.close()
  })

  it("charts the stats on the overview", async () => {
    await harness.api("/v1/runs", { method: "POST", body: { task: "demo.flaky", input: { failures: 5 }, maxAttempts: 1 } })
    const tab = await openTab(harness, "#/overview")
    const { page } = tab
    await page.locator(".chart canvas").first().waitFor()
    expect(await page.locator(".chart").count()).toBe(4)
    await page.getByRole("link", { name: "demo.flaky" }).waitFor()
    await screenshot(page, "overview")
    expectClean(tab, harness.base)
    await tab.context.close()
  })
})

describe.skipIf(!hasChromium)("dashboard with API keys", () => {
  const key = "dashboard-test-key"
  let harness: Harness
  beforeAll(async () => {
    harness = await start({ apiKeys: [Redacted.make(key)], key })
  })
  afterAll(() => harness?.close())

  it("asks for a key, refuses a wrong one, then lists, follows and cancels runs with it", async () => {
    const tab = await openTab(harness, "#/runs")
    const { page } = tab
    const field = page.getByLabel("API key")
    await field.waitFor()
    await screenshot(page, "signin")
    await field.fill("not-the-key")
    await page.getByRole("button", { name: "Sign in" }).click()
    await page.getByRole("alert").filter({ hasText: "refused that key" }).waitFor()
    await page.getByLabel("API key").fill(key)
    await page.getByRole("button", { name: "Sign in" }).click()
    await page.getByRole("status").filter({ hasText: "live" }).waitFor()
    expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem("runstream.apiKey"))).toBe(key)

    const { body } = await harness.api("/v1/runs", { method: "POST", body: { task: "test.stepper", input: { steps: 1 } } })
    const runId: string = body.run.id
    await page.locator(`tr[data-run-id="${runId}"]`).waitFor()
    await harness.step()
    await rowReaches(page, runId, "succeeded")

    const sleeper = (await harness.api("/v1/runs", { method: "POST", body: { task: "demo.sleep", input: { ms: 600_000 } } })).body.run.id
    await page.getByRole("link", { name: sleeper }).click()
    await page.locator(`.event[data-type="run.started"]`).waitFor()
    await page.getByRole("button", { name: "Cancel run" }).click()
    await page.getByRole("button", { name: "Cancel the run" }).click()
    await page.locator(`.event[data-type="run.cancelled"]`).waitFor()
    expect(await tab.sameDocument()).toBe(true)
    expectClean(tab, harness.base)
    await tab.context.close()
  })
})
