/** The function API (`/_amp/v1/functions`): create, get, update, list and remove functions. */
import {AmpError} from '../shared/errors.js'
import {
  checkFunctionPatch,
  checkReuseNeedsPrestart,
  DEFAULT_CPUS,
  DEFAULT_MEMORY_BYTES,
  DEFAULT_PIDS_LIMIT,
  DEFAULT_PRESTART,
  DEFAULT_RETRIES,
  DEFAULT_REUSE_MAX_CALLS,
  type FunctionInput,
  type FunctionPatch,
  type FunctionSpec,
} from '../shared/function-spec.js'
import {API_PREFIX} from '../shared/http-contract.js'
import {
  checkCpus,
  checkEnv,
  checkFireAndForget,
  checkImage,
  checkMemoryBytes,
  checkName,
  checkNetwork,
  checkPidsLimit,
  checkPrestart,
  checkRetries,
  checkReuse,
  checkReuseMaxCalls,
  checkTimeoutMs,
} from '../shared/validate.js'
import type {Answer, Transport} from './transport.js'

export interface CreateResult {
  function: FunctionSpec
  /** true when an existing function was overwritten (--replace). */
  replaced: boolean
}

export interface RemoveResult {
  removed: FunctionSpec[]
  /** Names that had no function. */
  missing: string[]
}

export async function createFunction(t: Transport, name: string, input: FunctionInput, options: {replace?: boolean} = {}): Promise<CreateResult> {
  // Checked here too, so a bad value never leaves the machine and fails with exit 2.
  const body = {
    image: checkImage(input.image),
    ...(input.timeoutMs === undefined ? {} : {timeoutMs: checkTimeoutMs(input.timeoutMs)}),
    ...(input.network === undefined ? {} : {network: checkNetwork(input.network)}),
    ...(input.memoryBytes === undefined ? {} : {memoryBytes: checkMemoryBytes(input.memoryBytes)}),
    ...(input.cpus === undefined ? {} : {cpus: checkCpus(input.cpus)}),
    ...(input.pidsLimit === undefined ? {} : {pidsLimit: checkPidsLimit(input.pidsLimit)}),
    ...(input.env === undefined ? {} : {env: checkEnv(input.env)}),
    ...(input.fireAndForget === undefined ? {} : {fireAndForget: checkFireAndForget(input.fireAndForget)}),
    ...(input.retries === undefined ? {} : {retries: checkRetries(input.retries)}),
    ...(input.prestart === undefined ? {} : {prestart: checkPrestart(input.prestart)}),
    ...(input.reuse === undefined ? {} : {reuse: checkReuse(input.reuse)}),
    ...(input.reuseMaxCalls === undefined ? {} : {reuseMaxCalls: checkReuseMaxCalls(input.reuseMaxCalls)}),
  }
  checkReuseNeedsPrestart({reuse: body.reuse ?? false, prestart: body.prestart ?? DEFAULT_PRESTART})
  const query = options.replace ? '?replace=true' : ''
  const answer = await t.send('PUT', `${API_PREFIX}/functions/${checkName(name)}${query}`, {
    body: JSON.stringify(body),
    headers: {'content-type': 'application/json'},
  })
  if (answer.status !== 201 && answer.status !== 200) throw t.failure(answer, {name})
  return {function: specOf(t, answer, t.json(answer)), replaced: answer.status === 200}
}

export async function getFunction(t: Transport, name: string): Promise<FunctionSpec> {
  const answer = await t.send('GET', `${API_PREFIX}/functions/${checkName(name)}`)
  if (answer.status !== 200) throw t.failure(answer)
  return specOf(t, answer, t.json(answer))
}

/**
 * Changes some settings of a function in place (PATCH). Calls already running finish with the
 * settings they started with; the next call uses the new ones.
 */
export async function updateFunction(t: Transport, name: string, patch: FunctionPatch): Promise<FunctionSpec> {
  // Checked here too, so a bad value never leaves the machine and fails with exit 2.
  checkName(name)
  const body = checkFunctionPatch(patch)
  const answer = await t.send('PATCH', `${API_PREFIX}/functions/${name}`, {
    body: JSON.stringify(body),
    headers: {'content-type': 'application/json'},
  })
  if (answer.status !== 200) throw t.failure(answer, {name})
  return specOf(t, answer, t.json(answer))
}

export async function listFunctions(t: Transport): Promise<FunctionSpec[]> {
  const answer = await t.send('GET', `${API_PREFIX}/functions`)
  if (answer.status !== 200) throw t.failure(answer)
  const data = t.json(answer) as {functions?: unknown}
  if (!Array.isArray(data?.functions)) throw t.badAnswer(answer, 'expected {"functions": [...]}')
  return data.functions.map((item) => specOf(t, answer, item))
}

export async function removeFunction(t: Transport, name: string): Promise<FunctionSpec> {
  const answer = await t.send('DELETE', `${API_PREFIX}/functions/${checkName(name)}`)
  if (answer.status !== 200) throw t.failure(answer)
  return specOf(t, answer, t.json(answer))
}

/**
 * Removes each function that exists and reports the names that did not. All names are checked
 * before the first request; any failure other than "not found" stops at once.
 */
export async function removeFunctions(t: Transport, names: string[]): Promise<RemoveResult> {
  for (const name of names) checkName(name)
  const result: RemoveResult = {removed: [], missing: []}
  for (const name of new Set(names)) {
    try {
      result.removed.push(await removeFunction(t, name))
    } catch (error) {
      if (!(error instanceof AmpError && error.code === 'function_not_found')) throw error
      result.missing.push(name)
    }
  }
  return result
}

/** A function as the listener sent it, with the defaults for settings older listeners do not send. */
function specOf(t: Transport, answer: Answer, value: unknown): FunctionSpec {
  const spec = value as Partial<Record<keyof FunctionSpec, unknown>> | null
  const ok =
    typeof spec === 'object' &&
    spec !== null &&
    typeof spec.name === 'string' &&
    typeof spec.image === 'string' &&
    typeof spec.timeoutMs === 'number' &&
    typeof spec.network === 'string' &&
    typeof spec.createdAt === 'string' &&
    typeof spec.updatedAt === 'string' &&
    // Listeners older than the container limits do not send these; their workers' defaults apply.
    ['number', 'undefined'].includes(typeof spec.memoryBytes) &&
    ['number', 'undefined'].includes(typeof spec.cpus) &&
    ['number', 'undefined'].includes(typeof spec.pidsLimit) &&
    ['boolean', 'undefined'].includes(typeof spec.fireAndForget) &&
    ['number', 'undefined'].includes(typeof spec.retries) &&
    ['number', 'undefined'].includes(typeof spec.prestart) &&
    ['boolean', 'undefined'].includes(typeof spec.reuse) &&
    ['number', 'undefined'].includes(typeof spec.reuseMaxCalls) &&
    (spec.envKeys === undefined || (Array.isArray(spec.envKeys) && spec.envKeys.every((key) => typeof key === 'string')))
  if (!ok) throw t.badAnswer(answer, 'expected a function (name, image, timeoutMs, network, createdAt, updatedAt, ...)')
  const {name, image, timeoutMs, network, memoryBytes, cpus, pidsLimit, envKeys, fireAndForget, retries, prestart, reuse, reuseMaxCalls, createdAt, updatedAt} =
    spec as FunctionSpec
  return {
    name,
    image,
    timeoutMs,
    network,
    memoryBytes: memoryBytes ?? DEFAULT_MEMORY_BYTES,
    cpus: cpus ?? DEFAULT_CPUS,
    pidsLimit: pidsLimit ?? DEFAULT_PIDS_LIMIT,
    envKeys: envKeys ?? [],
    fireAndForget: fireAndForget ?? false,
    retries: retries ?? DEFAULT_RETRIES,
    prestart: prestart ?? DEFAULT_PRESTART,
    reuse: reuse ?? false,
    reuseMaxCalls: reuseMaxCalls ?? DEFAULT_REUSE_MAX_CALLS,
    createdAt,
    updatedAt,
  }
}
