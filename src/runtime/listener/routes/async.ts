/** Asynchronous calls after they are queued (docs/async.md): `GET /_amp/v1/calls/<id>` (status and result) and `GET /_amp/v1/dead-letters`. */
import type {IncomingMessage, ServerResponse} from 'node:http'

import type {ApiContext} from '../api-context.js'
import {MAX_WAIT_MS} from '../async-calls.js'
import {AmpError} from '../../shared/errors.js'
import {API_PREFIX, checkDeadLetterLimit} from '../../shared/http-contract.js'
import {checkName, formatDuration, parseDuration} from '../../shared/validate.js'
import {sendJson} from '../http-io.js'
import {exactly, matching, type Route} from '../router.js'

type AsyncContext = Pick<ApiContext, 'asyncCalls'>

export function asyncRoutes(ctx: AsyncContext): Route[] {
  return [
    {match: matching(/^\/_amp\/v1\/calls\/([^/]+)$/), methods: {GET: (req, res, {param}) => getCall(ctx, param, req, res)}},
    {match: exactly(`${API_PREFIX}/dead-letters`), methods: {GET: (req, res) => listDeadLetters(ctx, req, res)}},
  ]
}

/** The asynchronous calls of this listener, or service_unavailable (503) when it takes none. */
export function asyncCalls(ctx: AsyncContext): NonNullable<ApiContext['asyncCalls']> {
  if (!ctx.asyncCalls) throw new AmpError('service_unavailable', 'this listener does not take asynchronous calls')
  return ctx.asyncCalls
}

async function getCall(ctx: AsyncContext, callId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const wait = new URL(req.url ?? '/', 'http://listener').searchParams.get('wait')
  const waitMs = wait ? parseDuration(wait) : 0
  if (waitMs > MAX_WAIT_MS) throw new AmpError('bad_request', `wait may be at most ${formatDuration(MAX_WAIT_MS)}; ask again to wait longer`)
  // A caller that hangs up while waiting stops the wait, rather than leaving a watch open for up to a minute.
  const gone = new AbortController()
  const hungUp = () => gone.abort()
  res.once('close', hungUp)
  try {
    sendJson(res, 200, await asyncCalls(ctx).get(callId, waitMs, gone.signal))
  } finally {
    res.off('close', hungUp)
  }
}

async function listDeadLetters(ctx: AsyncContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const params = new URL(req.url ?? '/', 'http://listener').searchParams
  const fn = params.get('function')
  const limitText = params.get('limit') ?? '100'
  const limit = /^\d{1,4}$/.test(limitText) ? Number(limitText) : Number.NaN
  const deadLetters = await asyncCalls(ctx).deadLetters(fn ? checkName(fn) : undefined, checkDeadLetterLimit(limit))
  sendJson(res, 200, {deadLetters})
}
