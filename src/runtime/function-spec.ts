import {AmpError} from './errors.js'
import {checkImage, checkName, checkNetwork, checkTimeoutMs} from './validate.js'

/** A registered function, as stored in etcd and returned by the function API. */
export interface FunctionSpec {
  name: string
  image: string
  /** How long one call may run before its container is killed. */
  timeoutMs: number
  /** Docker network the container joins: "none" (default) or a named network such as "bridge". */
  network: string
  createdAt: string
  updatedAt: string
}

export const DEFAULT_TIMEOUT_MS = 30_000
export const DEFAULT_NETWORK = 'none'

/** What a client sends to create or replace a function. */
export interface FunctionInput {
  image: string
  timeoutMs?: number
  network?: string
}

export function checkFunctionInput(name: string, input: unknown): Omit<FunctionSpec, 'createdAt' | 'updatedAt'> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new TypeError('body must be a JSON object')
  }
  const body = input as Record<string, unknown>
  return {
    name: checkName(name),
    image: checkImage(body.image),
    timeoutMs: body.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : checkTimeoutMs(body.timeoutMs),
    network: body.network === undefined ? DEFAULT_NETWORK : checkNetwork(body.network),
  }
}

/** What a client sends to change a function in place (PATCH): only the settings to change. */
export type FunctionPatch = Partial<Pick<FunctionSpec, 'image' | 'timeoutMs' | 'network'>>

const PATCH_KEYS = ['image', 'timeoutMs', 'network'] as const

/**
 * Checks a PATCH body. Unknown keys are refused rather than ignored: a misspelt setting
 * ("timeout") would otherwise leave the function unchanged while the caller thinks it changed.
 */
export function checkFunctionPatch(input: unknown): FunctionPatch {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new AmpError('bad_request', 'body must be a JSON object like {"image": "busybox:1.36"}')
  }
  const body = input as Record<string, unknown>
  const unknown = Object.keys(body).filter((key) => !(PATCH_KEYS as readonly string[]).includes(key))
  if (unknown.length > 0) {
    throw new AmpError('bad_request', `unknown setting ${unknown.map((key) => JSON.stringify(key.slice(0, 40))).join(', ')}: use image, timeoutMs or network`)
  }
  const patch: FunctionPatch = {}
  if (body.image !== undefined) patch.image = checkImage(body.image)
  if (body.timeoutMs !== undefined) patch.timeoutMs = checkTimeoutMs(body.timeoutMs)
  if (body.network !== undefined) patch.network = checkNetwork(body.network)
  if (Object.keys(patch).length === 0) throw new AmpError('bad_request', 'nothing to change: give image, timeoutMs or network')
  return patch
}
