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
