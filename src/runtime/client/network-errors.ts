/** Reading the errors node and undici throw when a request fails below HTTP. */

/** An error and what it wraps: causes, and the attempts of an AggregateError (happy eyeballs). */
function* errorChain(error: unknown): Generator<{code?: unknown; name?: unknown}> {
  const seen = new Set<unknown>()
  let current: unknown = error
  while (current && typeof current === 'object' && !seen.has(current)) {
    seen.add(current)
    yield current as {code?: unknown; name?: unknown}
    const {errors, cause} = current as {errors?: unknown[]; cause?: unknown}
    current = Array.isArray(errors) && errors.length > 0 ? errors[0] : cause
  }
}

/** The most specific code on an error from node or undici. */
export function errorCode(error: unknown): string | undefined {
  for (const item of errorChain(error)) {
    if (typeof item.code === 'string' && item.code !== 'UND_ERR') return item.code
  }
  return undefined
}

/** undici could not parse the answer as HTTP at all. */
export function isNotHttp(error: unknown): boolean {
  for (const item of errorChain(error)) {
    if (item.name === 'HTTPParserError' || (typeof item.code === 'string' && item.code.startsWith('HPE_'))) return true
  }
  return false
}
