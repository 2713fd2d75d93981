/**
 * The settings of a function, written once. Per setting: its JSON key (the function API and etcd),
 * its check, its default, and the NATS header that carries it to the worker with each call. The
 * function API (function-spec.ts: create, patch, stored, shown), the call headers both ways
 * (protocol.ts callHeaders, worker/call-headers.ts) and the CLI client's body and answers
 * (client/functions.ts) all go through this table: a new setting is one entry here.
 * Loads no NATS: the CLI client uses it.
 */
import {AmpError} from './errors.js'
import type {FunctionSpec, StoredFunction} from './function-spec.js'
import {
  checkCpus,
  checkEnv,
  checkFireAndForget,
  checkImage,
  checkMemoryBytes,
  checkNetwork,
  checkPidsLimit,
  checkPrestart,
  checkRetries,
  checkReuse,
  checkReuseMaxCalls,
  checkTimeoutMs,
  envLines,
  MAX_ENV_BYTES,
} from './validate.js'

export const DEFAULT_TIMEOUT_MS = 30_000
export const DEFAULT_NETWORK = 'none'
export const DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024
export const DEFAULT_CPUS = 1
export const DEFAULT_PIDS_LIMIT = 256
export const DEFAULT_RETRIES = 2
export const DEFAULT_PRESTART = 2
/** Calls a warm container (--reuse) serves before it is replaced. */
export const DEFAULT_REUSE_MAX_CALLS = 1000

/** A function's settings: all that is stored of it but its name and times. */
export type FunctionSettings = Omit<StoredFunction, 'name' | 'createdAt' | 'updatedAt'>
export type SettingKey = keyof FunctionSettings

/** One setting of a function. Its key in FUNCTION_FIELDS is its JSON key. */
export interface Field<T> {
  /** Its type in JSON; `env` is shown by the API as `envKeys`, the names alone (values may be secrets). */
  json: 'boolean' | 'env' | 'number' | 'string'
  /** Checks a value from a client (create body, patch); throws bad_request. */
  check(value: unknown): T
  /** The check of a PATCH's value, when it differs from `check`. */
  checkPatch?(value: unknown): unknown
  /** When a create body or a stored function lacks it. None: the setting is required (image). */
  default?: T
  /** Every listener's answer has it; older listeners lack the others, for which the client takes the default. */
  inEveryAnswer?: true
  /** The NATS header that carries it to the worker on each call; none: the listener's alone (async calls). */
  header?: {
    name: string
    /** Its value on a call of `fn`; undefined: not sent. */
    write(value: T, fn: FunctionSettings): string | undefined
    /** Reads it back on the worker, checked again (nothing from NATS is trusted); undefined: left out. */
    read(text: string): T | undefined
    /**
     * A call without it: `required` reads it as empty (refused), `default` takes the field's default
     * (calls of listeners older than the setting), `omit` leaves it out (the worker's own default).
     */
    absent: 'default' | 'omit' | 'required'
  }
}

type Fields = {[K in SettingKey]: Field<FunctionSettings[K]>}

const text = (value: string) => value
const number = (check: (value: unknown) => number) => (value: string) => check(Number(value))

/** The table, in the order settings are checked, stored and shown. */
export const FUNCTION_FIELDS = {
  image: {json: 'string', check: checkImage, inEveryAnswer: true, header: {name: 'Amp-Image', write: text, read: checkImage, absent: 'required'}},
  timeoutMs: {
    json: 'number',
    check: checkTimeoutMs,
    default: DEFAULT_TIMEOUT_MS,
    inEveryAnswer: true,
    header: {name: 'Amp-Timeout-Ms', write: String, read: number(checkTimeoutMs), absent: 'required'},
  },
  network: {
    json: 'string',
    check: checkNetwork,
    default: DEFAULT_NETWORK,
    inEveryAnswer: true,
    header: {name: 'Amp-Network', write: text, read: checkNetwork, absent: 'required'},
  },
  // Container limits; a worker applies the defaults when one is absent (older listeners send none).
  memoryBytes: {
    json: 'number',
    check: checkMemoryBytes,
    default: DEFAULT_MEMORY_BYTES,
    header: {name: 'Amp-Memory-Bytes', write: String, read: number(checkMemoryBytes), absent: 'default'},
  },
  cpus: {json: 'number', check: checkCpus, default: DEFAULT_CPUS, header: {name: 'Amp-Cpus', write: String, read: number(checkCpus), absent: 'default'}},
  pidsLimit: {
    json: 'number',
    check: checkPidsLimit,
    default: DEFAULT_PIDS_LIMIT,
    header: {name: 'Amp-Pids-Limit', write: String, read: number(checkPidsLimit), absent: 'default'},
  },
  /** Amp-Env: base64 of the environment as KEY=VALUE lines; absent when it has none. Never logged. */
  env: {
    json: 'env',
    check: checkEnv,
    checkPatch: checkEnvPatch,
    default: {},
    header: {
      name: 'Amp-Env',
      write: (env) => (Object.keys(env).length > 0 ? Buffer.from(envLines(env)).toString('base64') : undefined),
      read: parseEnvHeader,
      absent: 'default',
    },
  },
  fireAndForget: {json: 'boolean', check: checkFireAndForget, default: false},
  retries: {json: 'number', check: checkRetries, default: DEFAULT_RETRIES},
  /** Amp-Prestart: most pre-started containers per worker (0: none). Absent: the worker's default. */
  prestart: {
    json: 'number',
    check: checkPrestart,
    default: DEFAULT_PRESTART,
    header: {name: 'Amp-Prestart', write: String, read: number(checkPrestart), absent: 'omit'},
  },
  /** Amp-Reuse `true`: calls run in warm containers, one fresh process each. Only the exact `true` turns it on; else a fresh container per call. */
  reuse: {
    json: 'boolean',
    check: checkReuse,
    default: false,
    header: {name: 'Amp-Reuse', write: (reuse) => (reuse ? 'true' : undefined), read: (value) => (value === 'true' ? true : undefined), absent: 'omit'},
  },
  /** Amp-Reuse-Max-Calls: sent only with Amp-Reuse; absent: the worker's default. */
  reuseMaxCalls: {
    json: 'number',
    check: checkReuseMaxCalls,
    default: DEFAULT_REUSE_MAX_CALLS,
    header: {name: 'Amp-Reuse-Max-Calls', write: (calls, fn) => (fn.reuse ? String(calls) : undefined), read: number(checkReuseMaxCalls), absent: 'omit'},
  },
} as const satisfies Fields

/** The settings' JSON keys, in the table's order. */
export const SETTING_KEYS = Object.keys(FUNCTION_FIELDS) as SettingKey[]

type HeaderKey = {[K in SettingKey]: (typeof FUNCTION_FIELDS)[K] extends {header: object} ? K : never}[SettingKey]

/** The header name of each setting a call carries (protocol.ts HEADER). */
export const SETTING_HEADERS = Object.fromEntries(
  SETTING_KEYS.flatMap((key) => {
    const header = field(key).header
    return header ? [[key, header.name]] : []
  }),
) as {readonly [K in HeaderKey]: string}

function field(key: SettingKey): Field<unknown> {
  return FUNCTION_FIELDS[key] as unknown as Field<unknown>
}

/** A default as a value of its own, so no two functions share one environment object. */
function defaultOf(item: Field<unknown>): unknown {
  return typeof item.default === 'object' && item.default !== null ? {...item.default} : item.default
}

/** A create body's settings, each checked, each one missing at its default (the required image is checked even then). */
export function checkSettings(body: Record<string, unknown>): FunctionSettings {
  const settings: Record<string, unknown> = {}
  for (const key of SETTING_KEYS) {
    const item = field(key)
    settings[key] = body[key] === undefined && item.default !== undefined ? defaultOf(item) : item.check(body[key])
  }
  return settings as FunctionSettings
}

/** What a client sends to create a function: the settings it gives, each checked, and the required ones always. */
export function checkGivenSettings(input: Partial<Record<SettingKey, unknown>>): Partial<FunctionSettings> {
  const settings: Record<string, unknown> = {}
  for (const key of SETTING_KEYS) {
    const item = field(key)
    if (input[key] !== undefined || item.default === undefined) settings[key] = item.check(input[key])
  }
  return settings as Partial<FunctionSettings>
}

/** The settings a PATCH gives, each checked (env with its patch check: null removes a variable). */
export function checkPatchSettings(body: Record<string, unknown>): Record<string, unknown> {
  const patch: Record<string, unknown> = {}
  for (const key of SETTING_KEYS) {
    const item = field(key)
    if (body[key] !== undefined) patch[key] = (item.checkPatch ?? item.check)(body[key])
  }
  return patch
}

/** The settings of a function read from etcd: those stored before a setting existed get its default. */
export function storedSettings(stored: Partial<Record<SettingKey, unknown>>): FunctionSettings {
  const settings: Record<string, unknown> = {}
  for (const key of SETTING_KEYS) {
    const item = field(key)
    // A required setting (image) is in every stored function.
    settings[key] = item.default === undefined ? String(stored[key]) : (stored[key] ?? defaultOf(item))
  }
  return settings as FunctionSettings
}

type ShownSettings = Omit<FunctionSpec, 'name' | 'createdAt' | 'updatedAt'>

/** What the API shows of the settings: the environment as the sorted names of its variables. */
export function shownSettings(settings: FunctionSettings): ShownSettings {
  const shown: Record<string, unknown> = {}
  for (const key of SETTING_KEYS) {
    if (field(key).json === 'env') shown.envKeys = Object.keys(settings[key] as Record<string, string>).sort()
    else shown[key] = settings[key]
  }
  return shown as ShownSettings
}

/**
 * The settings of a function as a listener's answer shows them (the client): undefined when one
 * has the wrong type or one every listener sends is missing; the default for one an older listener
 * does not send (its workers apply that default).
 */
export function answeredSettings(answer: Record<string, unknown>): ShownSettings | undefined {
  const shown: Record<string, unknown> = {}
  for (const key of SETTING_KEYS) {
    const item = field(key)
    const shownKey = item.json === 'env' ? 'envKeys' : key
    const value = answer[shownKey]
    if (value === undefined) {
      if (item.inEveryAnswer) return undefined
      shown[shownKey] = item.json === 'env' ? [] : defaultOf(item)
    } else if (item.json === 'env' ? !(Array.isArray(value) && value.every((name) => typeof name === 'string')) : typeof value !== item.json) {
      return undefined
    } else {
      shown[shownKey] = value
    }
  }
  return shown as ShownSettings
}

/** The headers that carry a function's settings on a call, as [name, value]. */
export function settingHeaders(fn: FunctionSettings): Array<[string, string]> {
  const lines: Array<[string, string]> = []
  for (const key of SETTING_KEYS) {
    const header = field(key).header
    const value = header?.write(fn[key], fn)
    if (header && value !== undefined) lines.push([header.name, value])
  }
  return lines
}

/**
 * The settings a call's headers carry, each checked again; `get` gives a header's value, undefined
 * when the call lacks it. Settings left out are the worker's own defaults (prestart, reuse, reuseMaxCalls).
 */
export function settingsFromHeaders(get: (name: string) => string | undefined): Partial<FunctionSettings> {
  const settings: Record<string, unknown> = {}
  for (const key of SETTING_KEYS) {
    const item = field(key)
    if (!item.header) continue
    const text = get(item.header.name)
    let value: unknown
    if (text !== undefined) value = item.header.read(text)
    else if (item.header.absent === 'default') value = defaultOf(item)
    else if (item.header.absent === 'required') value = item.header.read('')
    if (value !== undefined) settings[key] = value
  }
  return settings as Partial<FunctionSettings>
}

/**
 * Decodes Amp-Env (base64 of KEY=VALUE lines) and checks every name and value again: what arrives
 * over NATS is not trusted. Errors name no value (values may be secrets).
 */
export function parseEnvHeader(text: string): Record<string, string> {
  if (text.length > Math.ceil(MAX_ENV_BYTES / 3) * 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new TypeError('invalid Amp-Env header: expected base64')
  }
  const lines = Buffer.from(text, 'base64').toString('utf8')
  if (!lines.endsWith('\n')) throw new TypeError('invalid Amp-Env header: expected KEY=VALUE lines')
  const entries = lines.slice(0, -1).split('\n').map((line) => {
    const eq = line.indexOf('=')
    if (eq <= 0) throw new TypeError('invalid Amp-Env header: expected KEY=VALUE lines')
    return [line.slice(0, eq), line.slice(eq + 1)] as const
  })
  if (new Set(entries.map(([key]) => key)).size !== entries.length) throw new TypeError('invalid Amp-Env header: a name given twice')
  return checkEnv(Object.fromEntries(entries))
}

/** A PATCH's env: a name with a string value is set, one with null removed. */
function checkEnvPatch(value: unknown): Record<string, string | null> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.keys(value).length === 0) {
    throw new AmpError('bad_request', 'env must be an object like {"LEVEL": "debug", "OLD": null} (null removes a variable)')
  }
  const entries = Object.entries(value as Record<string, unknown>)
  const removed = entries.filter(([, item]) => item === null).map(([key]) => key)
  // Checked as an environment of its own; the size of the merged one is checked by applyPatch.
  const set = checkEnv(Object.fromEntries(entries.filter(([, item]) => item !== null)))
  checkEnv(Object.fromEntries(removed.map((key) => [key, ''])))
  return {...set, ...Object.fromEntries(removed.map((key) => [key, null]))}
}
