/**
 * The router of the listener's HTTP API: checks the token, finds the first route whose path
 * matches, then its handler for the method (405 with Allow when it has none, 404 when no route
 * matches), and turns whatever a handler throws into amp's JSON error answer.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'
import {randomUUID} from 'node:crypto'

import type {ApiContext} from './api-context.js'
import type {Authorize} from './auth.js'
import {AmpError, HTTP_STATUS, isAmpError} from '../shared/errors.js'
import {API_PREFIX} from '../shared/http-contract.js'
import {DISCARD_LIMIT, drainBody, sendJson} from './http-io.js'

/** What a handler is told besides the request: the parameter its route took from the path, and the id the request is answered under. */
export interface RouteParams {
  param: string
  callId: string
}

export type Handler = (req: IncomingMessage, res: ServerResponse, params: RouteParams) => Promise<void>

export interface Route {
  /** The path's parameter (a function name, a call id; '' for a fixed path) when this route serves the path, else undefined. */
  match: (path: string) => string | undefined
  /** The handler of each method the route serves, in the order the Allow header of a 405 lists them. */
  methods: Record<string, Handler>
}

/** Matches one fixed path. */
export const exactly = (fixed: string) => (path: string) => (path === fixed ? '' : undefined)
/** Matches the paths under a prefix; the parameter is the rest of the path, slashes and all. */
export const under = (prefix: string) => (path: string) => (path.startsWith(prefix) ? path.slice(prefix.length) : undefined)
/** Matches a pattern; the parameter is its first group. */
export const matching = (pattern: RegExp) => (path: string) => pattern.exec(path)?.[1]

export function createRouter(routes: Route[], ctx: Pick<ApiContext, 'logger' | 'authorize'>): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const callId = randomUUID()
    res.setHeader('Amp-Call-Id', callId)
    const serve = async () => {
      // Before routing: without the right token a request learns nothing, not even which routes exist.
      if (ctx.authorize) authorized(ctx, ctx.authorize, req, res, callId)
      await dispatch(routes, req, res, callId)
    }
    serve().catch((error: unknown) => {
      const failure = isAmpError(error) ? error : new AmpError('internal', 'internal error in the listener')
      if (!isAmpError(error)) ctx.logger.error('request failed', {call: callId, error: (error as Error).message})
      return sendError(res, failure, callId)
    }).catch(() => res.destroy())
  }
}

/** Runs the token check; refusals are logged (never with the header's value). */
function authorized(ctx: Pick<ApiContext, 'logger'>, authorize: Authorize, req: IncomingMessage, res: ServerResponse, callId: string): void {
  const path = (req.url ?? '/').split('?')[0]
  try {
    authorize(req, res, path)
  } catch (error) {
    const code = isAmpError(error) ? error.code : 'internal'
    ctx.logger.info('request refused', {call: callId, status: HTTP_STATUS[code], error: code, method: req.method?.slice(0, 20), path: path.slice(0, 100)})
    throw error
  }
}

async function dispatch(routes: Route[], req: IncomingMessage, res: ServerResponse, callId: string): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]
  const method = req.method ?? 'GET'
  for (const route of routes) {
    const param = route.match(path)
    if (param === undefined) continue
    // Own keys only: a method named like an Object.prototype member must not find one.
    if (Object.hasOwn(route.methods, method)) return route.methods[method](req, res, {param, callId})
    const allowed = Object.keys(route.methods)
    res.setHeader('Allow', allowed.join(', '))
    throw new AmpError('method_not_allowed', `method ${method.slice(0, 20)} is not allowed here; use ${allowed.join(' or ')}`)
  }
  throw new AmpError('not_found', `no such route: ${method} ${path.slice(0, 100)} (see ${API_PREFIX}/functions)`)
}

async function sendError(res: ServerResponse, error: AmpError, callId: string): Promise<void> {
  if (res.headersSent) {
    res.destroy()
    return
  }
  // Answering before the client has sent its whole body would cut it off mid-send (EPIPE) and it
  // would never see the answer: read the rest first, within a budget.
  await drainBody(res.req, DISCARD_LIMIT)
  const status = HTTP_STATUS[error.code]
  res.setHeader('Amp-Error-Code', error.code)
  if (!res.req.complete) res.setHeader('Connection', 'close')
  sendJson(res, status, {error: {code: error.code, message: error.message, callId}})
}
