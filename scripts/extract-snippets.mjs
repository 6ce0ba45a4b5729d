/**
 * Writes every TypeScript snippet (```ts fences) of the given Markdown files
 * into `<out dir>`, one module each, so that CI type-checks them against the
 * installed package as a user's code. A snippet whose first line is
 * `// file: name.ts` is written under that name (other snippets import it as
 * `./name.js`); the others are `<doc>-<n>.ts`.
 *
 *   node extract-snippets.mjs <out dir> <file.md>...
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { basename, join } from "node:path"

const [out, ...documents] = process.argv.slice(2)
if (out === undefined || documents.length === 0) throw new Error("usage: node extract-snippets.mjs <out dir> <file.md>...")
mkdirSync(out, { recursive: true })

let total = 0
for (const document of documents) {
  const text = readFileSync(document, "utf8")
  const name = basename(document, ".md").toLowerCase()
  let n = 0
  for (const match of text.matchAll(/^```(?:ts|typescript)\n([\s\S]*?)^```$/gm)) {
    n += 1
    const code = match[1]
    const named = /^\/\/ file: ([\w.-]+\.ts)\n/.exec(code)
    const file = named?.[1] ?? `${name}-${n}.ts`
    // `export {}` makes each snippet a module of its own, whatever it declares.
    writeFileSync(join(out, file), `${code}\nexport {}\n`)
  }
  console.log(`${document}: ${n} TypeScript snippet(s)`)
  total += n
}
if (total === 0) throw new Error("no TypeScript snippet found")
