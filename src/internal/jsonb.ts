/**
 * Postgres `jsonb` cannot hold U+0000 nor a lone UTF-16 surrogate (which
 * `JSON.stringify` writes as a `\udXXX` escape). Callers refuse such values up
 * front with a clear error rather than meet a database error.
 */
export const unstorableInJsonb = (json: string): boolean => /(^|[^\\])(\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/i.test(json)
