import {AmpError} from './errors.js'
import {MIB} from './bytes.js'
import {imageReferenceProblem} from './image-reference.js'

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

/** An image reference docker takes (image-reference.ts); the message names the rule it breaks. */
export function checkImage(image: unknown): string {
  if (typeof image !== 'string' || image.length === 0) throw new AmpError('bad_request', 'image is required')
  const problem = imageReferenceProblem(image)
  if (problem !== undefined) throw new AmpError('bad_request', `invalid image reference ${JSON.stringify(image.slice(0, 80))}: ${problem}`)
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

// Container limits. Docker refuses less than 6 MiB of memory; the other bounds keep a typo from
// asking for a machine nobody has (the worker's docker still refuses more CPUs than its host has).
export const MIN_MEMORY_BYTES = 6 * MIB
export const MAX_MEMORY_BYTES = 1024 * 1024 * MIB
export const MIN_CPUS = 0.01
export const MAX_CPUS = 64
export const MIN_PIDS_LIMIT = 16
export const MAX_PIDS_LIMIT = 32_768

export function checkMemoryBytes(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_MEMORY_BYTES || value > MAX_MEMORY_BYTES) {
    throw new AmpError('bad_request', 'memoryBytes must be a whole number of bytes from 6MiB (6291456) to 1TiB')
  }
  return value
}

export function checkCpus(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < MIN_CPUS || value > MAX_CPUS) {
    throw new AmpError('bad_request', `cpus must be a number from ${MIN_CPUS} to ${MAX_CPUS}, e.g. 0.5 or 2`)
  }
  return value
}

/** A setting that is a whole number within bounds; the error names the setting and the bounds. */
function wholeNumber(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new AmpError('bad_request', `${name} must be a whole number from ${min} to ${max}`)
  }
  return value
}

/** A setting that is true or false. */
function flag(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new AmpError('bad_request', `${name} must be true or false`)
  return value
}

export function checkPidsLimit(value: unknown): number {
  return wholeNumber('pidsLimit', value, MIN_PIDS_LIMIT, MAX_PIDS_LIMIT)
}

/** Most times a failed asynchronous call is tried again before it goes to the dead letters. */
export const MAX_RETRIES = 10

export function checkRetries(value: unknown): number {
  return wholeNumber('retries', value, 0, MAX_RETRIES)
}

/** Most pre-started containers per worker for one function: a few are enough, each holds memory and a docker CLI. */
export const MAX_PRESTART = 16

export function checkPrestart(value: unknown): number {
  return wholeNumber('prestart', value, 0, MAX_PRESTART)
}

export function checkReuse(value: unknown): boolean {
  return flag('reuse', value)
}

/** Most calls one warm container (reuse) serves before it is replaced. */
export const MAX_REUSE_MAX_CALLS = 1_000_000

export function checkReuseMaxCalls(value: unknown): number {
  return wholeNumber('reuseMaxCalls', value, 1, MAX_REUSE_MAX_CALLS)
}

export function checkFireAndForget(value: unknown): boolean {
  return flag('fireAndForget', value)
}

const MEMORY_UNITS: Record<string, number> = {'': 1, b: 1, k: 1024, kib: 1024, m: MIB, mib: MIB, g: 1024 * MIB, gib: 1024 * MIB}

/** Parses a memory limit: "512MiB", "1GiB", "256m" (docker's k, m and g are binary too), or bytes. */
export function parseMemory(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = match ? MEMORY_UNITS[match[2].toLowerCase()] : undefined
  const bytes = match && unit ? Math.floor(Number(match[1]) * unit) : Number.NaN
  if (!(bytes >= MIN_MEMORY_BYTES && bytes <= MAX_MEMORY_BYTES)) {
    throw new AmpError('bad_request', `invalid memory ${JSON.stringify(text.slice(0, 40))}: use e.g. 256MiB or 1GiB, from 6MiB to 1TiB`)
  }
  return bytes
}

/** Parses a number of CPUs such as "0.5" or "2". */
export function parseCpus(text: string): number {
  const value = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : Number.NaN
  if (!(value >= MIN_CPUS && value <= MAX_CPUS)) {
    throw new AmpError('bad_request', `invalid cpus ${JSON.stringify(text.slice(0, 40))}: use a number from ${MIN_CPUS} to ${MAX_CPUS}, e.g. 0.5 or 2`)
  }
  return value
}

/** Parses a pids limit such as "256". */
export function parsePidsLimit(text: string): number {
  return checkPidsLimit(/^\d+$/.test(text.trim()) ? Number(text) : Number.NaN)
}

// Environment variables of a function. Their values may be secrets: no message here ever shows one.
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/
/** The whole environment as KEY=VALUE lines: it travels in one NATS header (base64) next to the first input chunk. */
export const MAX_ENV_BYTES = 32 * 1024

export function checkEnvKey(key: unknown): string {
  if (typeof key !== 'string' || key.length > 256 || !ENV_KEY.test(key)) {
    throw new AmpError(
      'bad_request',
      `invalid environment variable name ${JSON.stringify(String(key).slice(0, 40))}: use letters, digits and '_', not starting with a digit`,
    )
  }
  return key
}

/** A value docker's env-file reader takes back byte for byte: UTF-8 text without NUL, CR or LF. */
export function checkEnvValue(key: string, value: unknown): string {
  if (typeof value !== 'string') throw new AmpError('bad_request', `environment variable ${key}: the value must be a string`)
  // A lone surrogate (\p{Cs} under /u) would not survive UTF-8: docker would get U+FFFD instead.
  if (/[\0\r\n]/.test(value) || /\p{Cs}/u.test(value)) {
    throw new AmpError('bad_request', `environment variable ${key}: the value must be valid text without NUL, CR or newline characters`)
  }
  return value
}

/** Checks a whole environment ({KEY: "value"}) and its size. */
export function checkEnv(value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new AmpError('bad_request', 'env must be an object of names to string values, like {"LEVEL": "debug"}')
  }
  // fromEntries, not assignment: a variable named __proto__ must stay a variable.
  const env = Object.fromEntries(Object.entries(value).map(([key, item]) => [checkEnvKey(key), checkEnvValue(key, item)]))
  const size = Buffer.byteLength(envLines(env))
  if (size > MAX_ENV_BYTES) {
    throw new AmpError('bad_request', `the environment is too large: ${size} bytes as KEY=VALUE lines, at most ${MAX_ENV_BYTES} (32KiB)`)
  }
  return env
}

/** The environment as docker's env-file format: one KEY=VALUE line each, sorted by name. */
export function envLines(env: Record<string, string>): string {
  return Object.keys(env)
    .sort()
    .map((key) => `${key}=${env[key]}\n`)
    .join('')
}

/** A host name or address of this machine only (loopback). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

/** JetStream replicas of amp's streams (--js-replicas, js-replicas.ts): `auto` or 1 to 5. */
export type ReplicasSetting = 'auto' | number
export const MAX_REPLICAS = 5
/** Reads `auto` or a whole number from 1 to 5; throws a message that names the rule. */
export function parseReplicas(value: unknown): ReplicasSetting {
  if (value === 'auto') return 'auto'
  const number = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value
  if (typeof number === 'number' && Number.isInteger(number) && number >= 1 && number <= MAX_REPLICAS) return number
  throw new Error(`must be auto or a whole number from 1 to ${MAX_REPLICAS}, got ${JSON.stringify(value) ?? String(value)}`)
}
