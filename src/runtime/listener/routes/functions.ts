/** The function API: `GET /_amp/v1/functions` (list), and `GET`, `PUT`, `PATCH`, `DELETE` of `.../functions/<name>`. */
import type {IncomingMessage, ServerResponse} from 'node:http'

import type {ApiContext} from '../api-context.js'
import {AmpError, isAmpError} from '../../shared/errors.js'
import {checkFunctionInput, checkFunctionPatch, publicSpec, type StoredFunction} from '../../shared/function-spec.js'
import {API_PREFIX} from '../../shared/http-contract.js'
import {checkName} from '../../shared/validate.js'
import {readBody, sendJson} from '../http-io.js'
import {exactly, type Route, under} from '../router.js'

const MAX_API_BODY = 64 * 1024

type FunctionsContext = Pick<ApiContext, 'registry' | 'logger' | 'functionChanged'>

export function functionRoutes(ctx: FunctionsContext): Route[] {
  return [
    {
      match: exactly(`${API_PREFIX}/functions`),
      methods: {GET: async (_req, res) => sendJson(res, 200, {functions: (await ctx.registry.list()).map(publicSpec)})},
    },
    {
      match: under(`${API_PREFIX}/functions/`),
      methods: {
        GET: async (_req, res, {param}) => sendJson(res, 200, publicSpec(await mustGet(ctx, param))),
        PUT: (req, res, {param}) => putFunction(ctx, param, req, res),
        PATCH: (req, res, {param}) => updateFunction(ctx, param, req, res),
        DELETE: (_req, res, {param}) => removeFunction(ctx, param, res),
      },
    },
  ]
}

/** The stored function of that name, or function_not_found (404), also for a name that could never be one. */
export async function mustGet(ctx: Pick<ApiContext, 'registry'>, name: string): Promise<StoredFunction> {
  const spec = isName(name) ? await ctx.registry.get(name) : undefined
  if (!spec) {
    throw new AmpError('function_not_found', `no function named ${JSON.stringify(name.slice(0, 80))}`, {
      suggestions: ['list functions with: amp function ls'],
    })
  }
  return spec
}

async function putFunction(ctx: FunctionsContext, name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  checkName(name)
  const body = await readJson(req, 'function definition', '{"image": "busybox:1.36", "timeoutMs": 30000}')
  let input
  try {
    input = checkFunctionInput(name, body)
  } catch (error) {
    throw isAmpError(error) ? error : new AmpError('bad_request', (error as Error).message)
  }
  const replace = /[?&]replace=(true|1)(&|$)/.test(req.url ?? '')
  const {spec, created} = await ctx.registry.put(input, replace)
  ctx.logger.info(created ? 'function created' : 'function replaced', {fn: spec.name, image: spec.image})
  if (!created) ctx.functionChanged?.(spec.name)
  sendJson(res, created ? 201 : 200, publicSpec(spec))
}

/**
 * Changes settings of a function in place. Calls already dispatched carry the settings they were
 * sent with (image, timeout, network), so they finish on the old version; the next call uses the new.
 */
async function updateFunction(ctx: FunctionsContext, name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  checkName(name)
  const body = await readJson(req, 'function settings', '{"image": "busybox:1.36"} (any of image, timeoutMs, network, memoryBytes, cpus, pidsLimit, env)')
  const updated = await ctx.registry.update(name, checkFunctionPatch(body))
  if (!updated) throw new AmpError('function_not_found', `no function named ${JSON.stringify(name)}`)
  ctx.logger.info('function updated', {fn: name, image: updated.image, timeoutMs: updated.timeoutMs, network: updated.network})
  ctx.functionChanged?.(name)
  sendJson(res, 200, publicSpec(updated))
}

async function removeFunction(ctx: FunctionsContext, name: string, res: ServerResponse): Promise<void> {
  const removed = isName(name) ? await ctx.registry.remove(name) : undefined
  if (!removed) throw new AmpError('function_not_found', `no function named ${JSON.stringify(name.slice(0, 80))}`)
  ctx.logger.info('function removed', {fn: name})
  ctx.functionChanged?.(name)
  sendJson(res, 200, publicSpec(removed))
}

/** Reads a small JSON request body of the function API; anything else is a 400 that shows the expected form. */
async function readJson(req: IncomingMessage, what: string, example: string): Promise<unknown> {
  const text = (await readBody(req, MAX_API_BODY, what)).toString('utf8')
  try {
    return JSON.parse(text)
  } catch {
    throw new AmpError('bad_request', `body must be JSON like ${example}`)
  }
}

export function isName(name: string): boolean {
  try {
    checkName(name)
    return true
  } catch {
    return false
  }
}
