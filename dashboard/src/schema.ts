/**
 * A JSON Schema check of a run's input before it is sent, for the keywords
 * Effect's `JSONSchema.make` writes (types, properties, required,
 * additionalProperties, items, enum/const, bounds, lengths, patterns,
 * anyOf/oneOf/allOf, local `$ref`s). Unknown keywords pass: the server has
 * the last word, and its issues are shown the same way.
 */
import type { Issue, JsonSchema } from "./api.ts"

type Path = ReadonlyArray<string | number>
type Schema = Record<string, any>

const typeOf = (value: unknown): string =>
  value === null ? "null" : Array.isArray(value) ? "array" : typeof value

const hasType = (value: unknown, type: string): boolean => {
  switch (type) {
    case "integer":
      return typeof value === "number" && Number.isInteger(value)
    case "number":
      return typeof value === "number" && Number.isFinite(value)
    default:
      return typeOf(value) === type
  }
}

const resolve = (root: Schema, ref: string): JsonSchema | undefined => {
  if (!ref.startsWith("#")) return undefined
  let node: any = root
  for (const part of ref.slice(1).split("/").filter((p) => p !== "")) {
    node = node?.[part.replace(/~1/g, "/").replace(/~0/g, "~")]
  }
  return node
}

const show = (value: unknown) => {
  const text = JSON.stringify(value)
  return text === undefined ? String(value) : text.length > 40 ? `${text.slice(0, 40)}…` : text
}

/** The issues of `value` against `schema` (at most 20), each with its path. */
export const check = (schema: JsonSchema, value: unknown): ReadonlyArray<Issue> => {
  const root = typeof schema === "object" ? schema : {}
  const validate = (node: JsonSchema | undefined, value: unknown, path: Path, depth: number, issues: Array<Issue>): void => {
    const visit = (inner: JsonSchema | undefined, value: unknown, path: Path, depth: number) => validate(inner, value, path, depth, issues)
    if (node === undefined || node === true || issues.length >= 20 || depth > 64) return
    if (node === false) return void issues.push({ path, message: "no value is allowed here" })
    const s: Schema = node
    const add = (message: string): void => void issues.push({ path, message })
    if (typeof s["$ref"] === "string") visit(resolve(root, s["$ref"]), value, path, depth + 1)
    if (Array.isArray(s["allOf"])) for (const inner of s["allOf"]) visit(inner, value, path, depth + 1)
    for (const key of ["anyOf", "oneOf"] as const) {
      if (!Array.isArray(s[key])) continue
      const passing = s[key].filter((inner: JsonSchema) => {
        const found: Array<Issue> = []
        validate(inner, value, path, depth + 1, found)
        return found.length === 0
      })
      if (passing.length === 0) {
        const types = s[key].map((inner: any) => inner?.type ?? inner?.const ?? inner?.enum).filter((t: unknown) => t !== undefined)
        add(types.length > 0 ? `Expected ${types.map((t: unknown) => typeof t === "string" ? t : show(t)).join(" or ")}, actual ${show(value)}` : `matches none of the allowed forms`)
      }
    }
    if (s["type"] !== undefined) {
      const types: Array<string> = Array.isArray(s["type"]) ? s["type"] : [s["type"]]
      if (!types.some((type) => hasType(value, type))) return add(`Expected ${types.join(" or ")}, actual ${show(value)}`)
    }
    if ("const" in s && JSON.stringify(s["const"]) !== JSON.stringify(value)) add(`Expected ${show(s["const"])}, actual ${show(value)}`)
    if (Array.isArray(s["enum"]) && !s["enum"].some((e: unknown) => JSON.stringify(e) === JSON.stringify(value))) {
      add(`Expected one of ${s["enum"].map(show).join(", ")}, actual ${show(value)}`)
    }
    if (typeof value === "number") {
      if (typeof s["minimum"] === "number" && value < s["minimum"]) add(`Expected a number ≥ ${s["minimum"]}, actual ${value}`)
      if (typeof s["maximum"] === "number" && value > s["maximum"]) add(`Expected a number ≤ ${s["maximum"]}, actual ${value}`)
      if (typeof s["exclusiveMinimum"] === "number" && value <= s["exclusiveMinimum"]) add(`Expected a number > ${s["exclusiveMinimum"]}, actual ${value}`)
      if (typeof s["exclusiveMaximum"] === "number" && value >= s["exclusiveMaximum"]) add(`Expected a number < ${s["exclusiveMaximum"]}, actual ${value}`)
      if (typeof s["multipleOf"] === "number" && s["multipleOf"] > 0 && !Number.isInteger(value / s["multipleOf"])) add(`Expected a multiple of ${s["multipleOf"]}`)
    }
    if (typeof value === "string") {
      const length = [...value].length
      if (typeof s["minLength"] === "number" && length < s["minLength"]) add(`Expected at least ${s["minLength"]} characters, actual ${length}`)
      if (typeof s["maxLength"] === "number" && length > s["maxLength"]) add(`Expected at most ${s["maxLength"]} characters, actual ${length}`)
      if (typeof s["pattern"] === "string") {
        try {
          if (!new RegExp(s["pattern"], "u").test(value)) add(`Expected a string matching ${s["pattern"]}`)
        } catch {
          // A pattern this browser cannot compile: the server checks it.
        }
      }
    }
    if (Array.isArray(value)) {
      if (typeof s["minItems"] === "number" && value.length < s["minItems"]) add(`Expected at least ${s["minItems"]} items, actual ${value.length}`)
      if (typeof s["maxItems"] === "number" && value.length > s["maxItems"]) add(`Expected at most ${s["maxItems"]} items, actual ${value.length}`)
      const prefix: Array<JsonSchema> = Array.isArray(s["prefixItems"]) ? s["prefixItems"] : []
      value.forEach((item, i) => visit(i < prefix.length ? prefix[i] : s["items"], item, [...path, i], depth + 1))
    }
    if (typeOf(value) === "object") {
      const object = value as Record<string, unknown>
      const properties: Record<string, JsonSchema> = s["properties"] ?? {}
      for (const key of Array.isArray(s["required"]) ? s["required"] : []) {
        if (!(key in object)) issues.push({ path: [...path, key], message: "is missing" })
      }
      for (const [key, inner] of Object.entries(object)) {
        if (key in properties) {
          visit(properties[key], inner, [...path, key], depth + 1)
          continue
        }
        const patterns = Object.entries<JsonSchema>(s["patternProperties"] ?? {}).filter(([pattern]) => {
          try {
            return new RegExp(pattern, "u").test(key)
          } catch {
            return false
          }
        })
        for (const [, innerSchema] of patterns) visit(innerSchema, inner, [...path, key], depth + 1)
        if (patterns.length === 0 && s["additionalProperties"] !== undefined) {
          if (s["additionalProperties"] === false) issues.push({ path: [...path, key], message: "is unexpected" })
          else visit(s["additionalProperties"], inner, [...path, key], depth + 1)
        }
      }
    }
  }
  const issues: Array<Issue> = []
  validate(schema, value, [], 0, issues)
  return issues.slice(0, 20)
}

/** A first input to edit: required properties with a plausible value each. */
export const example = (schema: JsonSchema, root: JsonSchema = schema, depth = 0): unknown => {
  if (typeof schema !== "object" || depth > 8) return null
  const rootSchema = typeof root === "object" ? root : {}
  if (typeof schema["$ref"] === "string") return example(resolve(rootSchema, schema["$ref"]) ?? {}, root, depth + 1)
  if ("const" in schema) return schema["const"]
  if (Array.isArray(schema["enum"])) return schema["enum"][0]
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    if (Array.isArray(schema[key]) && schema[key].length > 0) return example(schema[key][0], root, depth + 1)
  }
  const type = Array.isArray(schema["type"]) ? schema["type"][0] : schema["type"]
  switch (type) {
    case "object": {
      const result: Record<string, unknown> = {}
      const properties: Record<string, JsonSchema> = (schema["properties"] as any) ?? {}
      for (const key of Array.isArray(schema["required"]) ? schema["required"] : []) result[key] = example(properties[key] ?? {}, root, depth + 1)
      return result
    }
    case "array":
      return []
    case "string":
      return ""
    case "integer":
    case "number":
      return typeof schema["minimum"] === "number" ? schema["minimum"] : 0
    case "boolean":
      return false
    default:
      return type === undefined ? {} : null
  }
}
