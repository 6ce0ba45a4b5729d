/**
 * The dashboard in a real browser: Debian's chromium driven by
 * playwright-core, against the API server of a test program (fresh database),
 * serving the dashboard built from `dashboard/` (built first when missing or
 * older than its sources).
 */
import { Effect, ManagedRuntime, Queue } from "effect"
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"
import { expect } from "vitest"
import type * as Server from "../../src/http/Server.ts"
import * as DashboardBuild from "../../src/main/DashboardBuild.ts"
import { BaseUrl, Gate, program } from "../http/support.ts"

export const root = fileURLToPath(new URL("../..", import.meta.url))

/** Where the tests leave a screenshot of each view (git-ignored). */
export const screenshots = join(root, "test", "dashboard", "screenshots")

/** The browser: `RUNSTREAM_TEST_CHROMIUM`, or Debian's. */
export const chromiumPath = process.env["RUNSTREAM_TEST_CHROMIUM"] ?? "/usr/bin/chromium"
export const hasChromium = existsSync(chromiumPath)
if (!hasChromium) {
  // Visible in the test output: the suite is skipped, not passed.
  console.warn(`\n*** dashboard browser tests SKIPPED: no chromium at ${chromiumPath} (apt-get install chromium, or set RUNSTREAM_TEST_CHROMIUM) ***\n`)
}

export interface Harness {
  readonly base: string
  readonly browser: Browser
  /** Opens one step of `test.stepper`. */
  readonly step: () => Promise<void>
  /** A call to the API (with the key, when given), its JSON body. */
  readonly api: (path: string, init?: { method?: string; body?: unknown }) => Promise<{ status: number; body: any }>
  readonly close: () => Promise<void>
}

/** A server (test program, port 0) with the dashboard, and a browser. */
export const start = async (options: Partial<Server.ServerOptions> & { readonly key?: string } = {}): Promise<Harness> => {
  const { key, ...overrides } = options
  await Effect.runPromise(DashboardBuild.ensureBuilt(root))
  mkdirSync(screenshots, { recursive: true })
  const runtime = ManagedRuntime.make(
    program({ dashboardDir: join(root, "dist", "dashboard"), ...overrides })
  )
  const base = await runtime.runPromise(BaseUrl)
  const gate = await runtime.runPromise(Gate)
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
  })
  return {
    base,
    browser,
    step: () => runtime.runPromise(Queue.offer(gate, undefined)).then(() => undefined),
    api: async (path, init = {}) => {
      const response = await fetch(`${base}${path}`, {
        method: init.method ?? "GET",
        headers: {
          ...(init.body === undefined ? {} : { "content-type": "application/json" }),
          ...(key === undefined ? {} : { authorization: `Bearer ${key}` })
        },
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) })
      })
      const text = await response.text()
      return { status: response.status, body: text === "" ? null : JSON.parse(text) }
    },
    close: async () => {
      await browser.close()
      await runtime.dispose()
    }
  }
}

export interface Tab {
  readonly context: BrowserContext
  readonly page: Page
  /** Every host the page sent a request to, and every error it logged. */
  readonly hosts: Set<string>
  readonly errors: Array<string>
  /** True while the document loaded first is still the one shown (no reload, no navigation). */
  readonly sameDocument: () => Promise<boolean>
}

/** A fresh browser context (its own sessionStorage) on the dashboard. */
export const openTab = async (harness: Harness, hash = "#/runs"): Promise<Tab> => {
  const context = await harness.browser.newContext({ viewport: { width: 1280, height: 960 } })
  const page = await context.newPage()
  const hosts = new Set<string>()
  const errors: Array<string> = []
  page.on("request", (request) => void hosts.add(new URL(request.url()).host))
  page.on("pageerror", (error) => void errors.push(`pageerror: ${error.message}`))
  page.on("console", (message) => {
    // A refused call is also logged by the browser as a failed resource: only script errors count.
    if (message.type() === "error" && !/Failed to load resource/.test(message.text())) errors.push(`console: ${message.text()}`)
  })
  await page.goto(`${harness.base}/${hash}`)
  await page.evaluate(() => ((globalThis as any).__firstDocument = true))
  return {
    context,
    page,
    hosts,
    errors,
    sameDocument: () => page.evaluate(() => (globalThis as any).__firstDocument === true)
  }
}

/** The page asked no other host for anything, and logged no error. */
export const expectClean = (tab: Tab, base: string) => {
  expect([...tab.hosts]).toEqual([new URL(base).host])
  expect(tab.errors).toEqual([])
}

export const screenshot = (page: Page, name: string) =>
  page.screenshot({ path: join(screenshots, `${name}.png`) })
