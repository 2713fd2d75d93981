import {AmpError} from './errors.js'

/** Function names are DNS labels, so they are safe in URLs, NATS subjects, etcd keys and container names. */
const NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/
export const MAX_NAME_LENGTH = 63

export function checkName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) throw new AmpError('bad_request', 'function name is required')
  if (name.length > MAX_NAME_LENGTH || !NAME.test(name)) {
    throw new AmpError(
      'bad_request',
      `invalid function name ${JSON.stringify(name.slice(0, 80))}: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
    )
  }
  return name
}

// The grammar of github.com/distribution/reference: [host[:port]/]path[:tag][@digest].
// Anchored and without '-' at the start, so a value that passes can never be read by docker as a flag.
const HOST_PART = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const HOST = `${HOST_PART}(?:\\.${HOST_PART})*(?::[0-9]+)?`
const PATH_PART = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const TAG = '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}'
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}'
const IMAGE = new RegExp(`^(?:${HOST}/)?${PATH_PART}(?:/${PATH_PART})*(?::${TAG})?(?:@${DIGEST})?$`)
export const MAX_IMAGE_LENGTH = 255

export function checkImage(image: unknown): string {
  if (typeof image !== 'string' || image.length === 0) throw new AmpError('bad_request', 'image is required')
  if (image.length > MAX_IMAGE_LENGTH || !IMAGE.test(image)) {
    throw new AmpError(
      'bad_request',
      `invalid image reference ${JSON.stringify(image.slice(0, 80))}: expected [registry/]name[:tag][@digest], e.g. busybox:1.36 or ghcr.io/acme/fn:1`,
    )
  }
  return image
}

// Docker network names: the built-in "none" and "bridge", or a user-defined network.
// "host" and "container:<id>" share another namespace's network and are refused.
const NETWORK = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/

export function checkNetwork(network: unknown): string {
  if (typeof network !== 'string' || !NETWORK.test(network) || network === 'host') {
    throw new AmpError(
      'bad_request',
      `invalid network ${JSON.stringify(String(network).slice(0, 80))}: use "none", "bridge" or the name of a Docker network ("host" is not allowed)`,
    )
  }
  return network
}

const UNITS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000}
export const MAX_TIMEOUT_MS = 24 * 3_600_000

/** Parses "500ms", "30s", "2m", "1h", "1m30s". A bare number is seconds. */
export function parseDuration(text: string): number {
  const value = text.trim()
  let total = 0
  if (/^\d+(\.\d+)?$/.test(value)) {
    total = Number(value) * 1000
  } else {
    const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)]
    if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value) {
      throw new AmpError('bad_request', `invalid duration ${JSON.stringify(text)}: use e.g. 500ms, 30s, 2m or 1m30s`)
    }
    for (const [, amount, unit] of parts) total += Number(amount) * UNITS[unit]
  }
  total = Math.round(total)
  if (total <= 0 || total > MAX_TIMEOUT_MS) {
    throw new AmpError('bad_request', `invalid duration ${JSON.stringify(text)}: must be more than 0 and at most 24h`)
  }
  return total
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

export function checkTimeoutMs(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_TIMEOUT_MS) {
    throw new AmpError('bad_request', 'timeoutMs must be a whole number of milliseconds, more than 0 and at most 24h')
  }
  return value
}
