/**
 * Calls: `POST /<function>`, answered when the function ends (sync), as its stdout comes
 * (`Prefer: stream`), or at once with 202 and a status URL (`Prefer: respond-async`, or a
 * fire-and-forget function).
 */
import type {IncomingMessage, ServerResponse} from 'node:http'

import type {ApiContext} from '../api-context.js'
import {AmpError, HTTP_STATUS, isAmpError} from '../../shared/errors.js'
import type {StoredFunction} from '../../shared/function-spec.js'
import {CALLBACK_URL_HEADER, type CallResult, checkCallbackUrl as checkUrl, MAX_CALLBACK_URL, RESPOND_ASYNC, RESULT_MEDIA_TYPE, toEnvelope} from '../../shared/http-contract.js'
import {readBody, sendJson} from '../http-io.js'
import type {Route} from '../router.js'
import {outcomeOf, PREFER_STREAM, StreamedAnswer} from '../stream-answer.js'
import {asyncCalls} from './async.js'
import {isName, mustGet} from './functions.js'

/** Calls failing with these may well work a moment later: their answer carries Retry-After. */
const RETRY_LATER = new Set(['no_worker', 'registry_unavailable', 'service_unavailable'])

/** The call route. The calls it serves at once count against ctx.maxInFlight: one count per request handler. */
export function callRoutes(ctx: ApiContext): Route[] {
  const calls = {inFlight: 0}
  return [
    {
      // Every path outside /_amp/ names a function; '/' names none (the router answers 404).
      match: (path) => (path.startsWith('/_amp/') || path === '/' ? undefined : path.slice(1)),
      methods: {POST: (req, res, {param, callId}) => invoke(ctx, param, req, res, callId, calls)},
    },
  ]
}

async function invoke(
  ctx: ApiContext,
  name: string,
  req: IncomingMessage,
  res: ServerResponse,
  callId: string,
  calls: {inFlight: number},
) {
  // The function label is set only once the function is known to exist: unknown names must not create series.
  let fn = ''
  const counted = ctx.metrics?.callStarted()
  if (ctx.draining()) {
    counted?.(fn, HTTP_STATUS.no_worker)
    res.setHeader('Retry-After', '1')
    throw new AmpError('no_worker', 'this listener is shutting down: try again (another listener, or this one after restart)')
  }
  // Each call holds its input and output in memory until answered: the bound keeps the listener's memory bounded.
  if (ctx.maxInFlight !== undefined && calls.inFlight >= ctx.maxInFlight) {
    counted?.(fn, HTTP_STATUS.overloaded)
    res.setHeader('Retry-After', '1')
    throw new AmpError('overloaded', `this listener is serving its limit of ${ctx.maxInFlight} calls at once: try again shortly`)
  }
  calls.inFlight++
  res.once('close', () => calls.inFlight--)
  const started = Date.now()
  let stream: StreamedAnswer | undefined
  const log = ctx.logger.child({call: callId, fn: name.slice(0, 63)})
  try {
    const spec = await findFunction(ctx, name)
    fn = spec.name
    const asked = prefers(req, RESPOND_ASYNC)
    if (asked || spec.fireAndForget) {
      const callbackUrl = checkCallbackUrl(req.headers[CALLBACK_URL_HEADER])
      const input = await readBody(req, ctx.maxBodyBytes, 'input')
      const accepted = await asyncCalls(ctx).enqueue(callId, spec, input, callbackUrl)
      res.setHeader('Location', accepted.statusUrl)
      if (asked) res.setHeader('Preference-Applied', 'respond-async')
      sendJson(res, 202, accepted)
      counted?.(fn, 202)
      log.info('call queued', {status: 202, ms: Date.now() - started, in: input.length})
      return
    }
    const input = await readBody(req, ctx.maxBodyBytes, 'input')
    // A caller that hangs up before its answer: stop the call, so its container does not run on for nobody.
    const hungUp = () => ctx.dispatcher.abandon?.(callId)
    res.once('close', hungUp)
    // Streamed (async and fire-and-forget won above): the head waits for the first stdout byte.
    stream = prefers(req, PREFER_STREAM) ? new StreamedAnswer(res) : undefined
    const options = stream ? {onStdout: stream.write.bind(stream)} : {}
    const result = await ctx.dispatcher.call(callId, spec, input, options).finally(() => res.off('close', hungUp))
    if (stream?.streaming) stream.end(result)
    else sendResult(req, res, result)
    counted?.(fn, res.statusCode)
    log.info('call answered', {
      status: res.statusCode,
      exit: result.exitCode,
      ms: Date.now() - started,
      worker: result.worker,
      in: input.length,
      out: stream?.streaming ? stream.bytes : result.stdout.length,
      ...(stream?.streaming ? {streamed: true} : {}),
    })
  } catch (error) {
    if (stream?.streaming) {
      // The head is out: the failure can only go in the trailers (or nowhere, when the caller hung up).
      stream.fail(error)
      counted?.(fn, res.statusCode)
      log.info('streamed call failed', {outcome: outcomeOf(error), error: (error as Error).message, ms: Date.now() - started, out: stream.bytes})
      return
    }
    const code = isAmpError(error) ? error.code : 'internal'
    counted?.(fn, HTTP_STATUS[code])
    log.info('call failed', {status: HTTP_STATUS[code], error: code, ms: Date.now() - started})
    if (RETRY_LATER.has(code)) res.setHeader('Retry-After', '1')
    throw error
  }
}

/**
 * The function to call: from the cache when it knows it; otherwise from etcd, so a function just
 * created through another listener is found. With etcd known to be out of reach, an unknown name is
 * a 503 at once rather than after the etcd deadline.
 */
async function findFunction(ctx: ApiContext, name: string): Promise<StoredFunction> {
  const cached = ctx.functions?.lookup(name)
  if (cached) return cached
  if (ctx.functions && isName(name)) ctx.functions.assertReachable()
  return mustGet(ctx, name)
}

/** RFC 7240: a preference such as `respond-async` or `stream`, alone or among others, in any case. */
export function prefers(req: IncomingMessage, token: string): boolean {
  const prefer = req.headers.prefer as string | string[] | undefined
  if (prefer === undefined) return false
  return (Array.isArray(prefer) ? prefer.join(',') : prefer)
    .split(',')
    .some((item) => item.split(';')[0].trim().toLowerCase() === token)
}

/** `Prefer: respond-async`. */
export function prefersAsync(req: IncomingMessage): boolean {
  return prefers(req, RESPOND_ASYNC)
}

/**
 * The optional `Amp-Callback-Url` of an asynchronous call: the CLI's check (http-contract.ts), on
 * the header as Node gives it. A header sent twice arrives joined with ", ", which the check refuses.
 */
export function checkCallbackUrl(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined
  try {
    return new URL(checkUrl(Array.isArray(value) ? value.join(', ') : value)).href
  } catch {
    throw new AmpError('bad_request', `Amp-Callback-Url must be an absolute http:// or https:// URL of at most ${MAX_CALLBACK_URL} characters`)
  }
}

function sendResult(req: IncomingMessage, res: ServerResponse, result: CallResult): void {
  res.statusCode = result.exitCode === 0 ? 200 : 500
  res.setHeader('Amp-Exit-Code', String(result.exitCode))
  res.setHeader('Amp-Duration-Ms', String(result.durationMs))
  res.setHeader('Amp-Worker', result.worker)
  res.setHeader('Amp-Stderr-Size', String(result.stderr.length))
  if ((req.headers.accept ?? '').includes(RESULT_MEDIA_TYPE)) {
    const body = JSON.stringify(toEnvelope(result))
    res.setHeader('Content-Type', RESULT_MEDIA_TYPE)
    res.end(body)
    return
  }
  res.setHeader('Content-Type', 'application/octet-stream')
  res.end(result.stdout)
}
