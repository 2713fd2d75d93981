import {AmpError} from './errors.js'
import {
  checkGivenSettings,
  checkPatchSettings,
  checkSettings,
  DEFAULT_PRESTART,
  SETTING_KEYS,
  shownSettings,
  storedSettings,
} from './function-fields.js'
import {checkEnv, checkEnvKey, checkName} from './validate.js'

export {
  DEFAULT_CPUS,
  DEFAULT_MEMORY_BYTES,
  DEFAULT_NETWORK,
  DEFAULT_PIDS_LIMIT,
  DEFAULT_PRESTART,
  DEFAULT_RETRIES,
  DEFAULT_REUSE_MAX_CALLS,
  DEFAULT_TIMEOUT_MS,
} from './function-fields.js'

/**
 * A registered function as the function API returns it. The values of its environment variables
 * are never sent back (they may be secrets): only their names, in `envKeys`.
 */
export interface FunctionSpec {
  name: string
  image: string
  /** How long one call may run before its container is killed. */
  timeoutMs: number
  /** Docker network the container joins: "none" (default) or a named network such as "bridge". */
  network: string
  /** Memory limit of each container, in bytes (no swap on top). */
  memoryBytes: number
  /** CPUs each container may use, e.g. 0.5. */
  cpus: number
  /** Most processes and threads one container may have at once. */
  pidsLimit: number
  /** Names of the function's environment variables, sorted; their values are never shown. */
  envKeys: string[]
  /** Every call is asynchronous: answered 202 with a call id once durably queued (docs/async.md). */
  fireAndForget: boolean
  /** How many times a failed asynchronous call is tried again before it goes to the dead letters. */
  retries: number
  /** Most pre-started containers a worker keeps for this function (0: none, every call starts its container from scratch); with reuse, most warm containers. */
  prestart: number
  /**
   * Warm containers: a container of the function serves many calls, one at a time, each in a fresh
   * process of the function (stdin in, stdout out, stderr as log, exit status); false: a fresh
   * container per call. With it, prestart is the most warm containers a worker keeps (at least 1).
   */
  reuse: boolean
  /** How many calls one warm container serves before it is replaced; kept, but only used, with reuse. */
  reuseMaxCalls: number
  createdAt: string
  updatedAt: string
}

/** A function as stored in etcd, with its environment's values. Never sent to a client as is: see publicSpec. */
export interface StoredFunction extends Omit<FunctionSpec, 'envKeys'> {
  env: Record<string, string>
}

export type NewFunction = Omit<StoredFunction, 'createdAt' | 'updatedAt'>

/** What a client sends to create or replace a function: the image, and any other setting (the rest get their defaults). */
export interface FunctionInput extends Partial<Omit<NewFunction, 'name'>> {
  image: string
}

const SETTING_KEYS_TEXT = `${SETTING_KEYS.slice(0, -1).join(', ')} or ${SETTING_KEYS.at(-1)}`

/**
 * Unknown keys of a create or a PATCH are refused rather than ignored: a misspelt setting
 * ("timeout") or one amp has not ("privileged") would otherwise be dropped while the caller thinks it applies.
 */
function refuseUnknownSettings<T extends object>(body: T): T {
  const unknown = Object.keys(body).filter((key) => !(SETTING_KEYS as string[]).includes(key))
  if (unknown.length > 0) {
    throw new AmpError('bad_request', `unknown setting ${unknown.map((key) => JSON.stringify(key.slice(0, 40))).join(', ')}: use ${SETTING_KEYS_TEXT}`)
  }
  return body
}

export function checkFunctionInput(name: string, input: unknown): NewFunction {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new TypeError('body must be a JSON object')
  }
  const body = refuseUnknownSettings(input as Record<string, unknown>)
  return checkReuseNeedsPrestart({name: checkName(name), ...checkSettings(body)})
}

/**
 * What a client sends to create a function, checked on its side too (so a bad value never leaves
 * the machine and fails with exit 2): the settings given, and the image always.
 */
export function checkClientInput(input: FunctionInput): Partial<NewFunction> {
  const body = checkGivenSettings(refuseUnknownSettings(input))
  checkReuseNeedsPrestart({reuse: body.reuse ?? false, prestart: body.prestart ?? DEFAULT_PRESTART})
  return body
}

/**
 * With reuse, prestart is the most warm containers a worker keeps for the function, so 0 would
 * leave it none to reuse: refused (400) on create or replace, and when a PATCH would leave a function so.
 */
export function checkReuseNeedsPrestart<T extends Pick<StoredFunction, 'reuse' | 'prestart'>>(fn: T): T {
  if (fn.reuse && fn.prestart === 0) {
    throw new AmpError('bad_request', 'reuse needs prestart of at least 1 (the most warm containers a worker keeps)')
  }
  return fn
}

/**
 * What a client sends to change a function in place (PATCH): only the settings to change. `env` is
 * merged into the function's environment: a name with a string value is set, one with null removed.
 */
export type FunctionPatch = Partial<Omit<NewFunction, 'name' | 'env'>> & {
  env?: Record<string, string | null>
}

/** Checks a PATCH body: only known settings, at least one. */
export function checkFunctionPatch(input: unknown): FunctionPatch {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new AmpError('bad_request', 'body must be a JSON object like {"image": "busybox:1.36"}')
  }
  const body = refuseUnknownSettings(input as Record<string, unknown>)
  const patch = checkPatchSettings(body) as FunctionPatch
  // Refused here whatever the function is now; the merged result is checked by applyPatch.
  if (patch.reuse === true && patch.prestart !== undefined) checkReuseNeedsPrestart({reuse: true, prestart: patch.prestart})
  if (Object.keys(patch).length === 0) throw new AmpError('bad_request', `nothing to change: give ${SETTING_KEYS_TEXT}`)
  return patch
}

/** The function after a patch; throws bad_request when the merged environment is too large, or reuse is left without prestart. */
export function applyPatch(stored: StoredFunction, patch: FunctionPatch, updatedAt: string): StoredFunction {
  const {env: envPatch, ...settings} = patch
  let env = stored.env
  if (envPatch) {
    const merged = new Map([...Object.entries(stored.env), ...Object.entries(envPatch)])
    env = checkEnv(Object.fromEntries([...merged].filter(([, value]) => value !== null)))
  }
  return checkReuseNeedsPrestart({...stored, ...settings, env, updatedAt})
}

/**
 * A function read from etcd. Functions stored before a setting existed get its default, so older
 * registries keep working (and their containers get the default limits).
 */
export function storedFunction(value: unknown): StoredFunction {
  const stored = value as Partial<StoredFunction>
  return {name: String(stored.name), ...storedSettings(stored), createdAt: String(stored.createdAt), updatedAt: String(stored.updatedAt)}
}

/** What the function API shows of a stored function: everything but the environment's values. */
export function publicSpec(stored: StoredFunction): FunctionSpec {
  return {name: stored.name, ...shownSettings(stored), createdAt: stored.createdAt, updatedAt: stored.updatedAt}
}

/**
 * The environment given on the command line: each item `NAME=VALUE`, or `NAME` alone to take the
 * value from amp's own environment (so a secret need not be in argv, where `ps` shows it). The last
 * of a name wins. Errors never repeat what was given: it may be a value.
 */
export function envFromFlags(items: string[], environ: Record<string, string | undefined>): Record<string, string> {
  const entries = items.map((item, index): [string, string] => {
    const eq = item.indexOf('=')
    if (eq > 0) return [checkEnvKey(item.slice(0, eq)), item.slice(eq + 1)]
    const value = eq < 0 && /^[A-Za-z_][A-Za-z0-9_]*$/.test(item) ? environ[item] : undefined
    if (value === undefined) {
      throw new AmpError('bad_request', `--env number ${index + 1} is neither NAME=VALUE nor the NAME of a variable set in amp's environment`)
    }
    return [item, value]
  })
  return checkEnv(Object.fromEntries(entries))
}

/** `update --env ... --unset-env ...` as the env of a PATCH: null removes a name. Undefined when neither is given. */
export function envPatch(set: string[], unset: string[], environ: Record<string, string | undefined>): FunctionPatch['env'] {
  if (set.length === 0 && unset.length === 0) return undefined
  const values = envFromFlags(set, environ)
  const removed = unset.map((key) => checkEnvKey(key))
  const both = removed.find((key) => Object.hasOwn(values, key))
  if (both) throw new AmpError('bad_request', `--env and --unset-env both name ${both}: give one of them`)
  return {...values, ...Object.fromEntries(removed.map((key) => [key, null]))}
}
