/** The function API (`/_amp/v1/functions`): create, get, update, list and remove functions. */
import {AmpError} from '../shared/errors.js'
import {answeredSettings} from '../shared/function-fields.js'
import {checkClientInput, checkFunctionPatch, type FunctionInput, type FunctionPatch, type FunctionSpec} from '../shared/function-spec.js'
import {API_PREFIX} from '../shared/http-contract.js'
import {checkName} from '../shared/validate.js'
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
  const body = checkClientInput(input)
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
  const named =
    typeof spec === 'object' &&
    spec !== null &&
    typeof spec.name === 'string' &&
    typeof spec.createdAt === 'string' &&
    typeof spec.updatedAt === 'string'
  // Listeners older than a setting do not send it; their workers' defaults apply.
  const settings = named ? answeredSettings(spec) : undefined
  if (!named || !settings) throw t.badAnswer(answer, 'expected a function (name, image, timeoutMs, network, createdAt, updatedAt, ...)')
  return {name: spec.name as string, ...settings, createdAt: spec.createdAt as string, updatedAt: spec.updatedAt as string}
}
