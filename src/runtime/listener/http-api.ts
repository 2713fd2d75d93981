import type {IncomingMessage, ServerResponse} from 'node:http'
import {randomUUID} from 'node:crypto'

import {type AsyncCalls, MAX_WAIT_MS} from './async-calls.js'
import type {Authorize} from './auth.js'
import {formatBytes} from '../shared/bytes.js'
import type {Dispatcher} from './dispatcher.js'
import {AmpError, HTTP_STATUS, isAmpError} from '../shared/errors.js'
import type {FunctionCache} from './function-cache.js'
import {checkFunctionInput, checkFunctionPatch, publicSpec, type StoredFunction} from '../shared/function-spec.js'
import {API_PREFIX, CALLBACK_URL_HEADER, type CallResult, checkCallbackUrl as checkUrl, checkDeadLetterLimit, MAX_CALLBACK_URL, RESPOND_ASYNC, RESULT_MEDIA_TYPE, toEnvelope} from '../shared/http-contract.js'
import type {Logger} from '../shared/logger.js'
import {checkReadiness, type ReadinessReport} from '../shared/health.js'
import type {ListenerMetrics} from '../shared/metrics.js'
import {answerOps} from '../shared/ops-server.js'
import type {CallLogReader} from '../shared/call-logs.js'
import {serveLogs} from './logs-route.js'
import {outcomeOf, PREFER_STREAM, StreamedAnswer} from './stream-answer.js'
import type {Registry} from './registry.js'
import {checkName, formatDuration, parseDuration} from '../shared/validate.js'

export {API_PREFIX, RESULT_MEDIA_TYPE}
const MAX_API_BODY = 64 * 1024
/** Calls failing with these may well work a moment later: their answer carries Retry-After. */
const RETRY_LATER = new Set(['no_worker', 'registry_unavailable', 'service_unavailable'])

export interface ApiContext {
  registry: Pick<Registry, 'get' | 'list' | 'put' | 'remove' | 'update'>
  dispatcher: Pick<Dispatcher, 'call'> & Partial<Pick<Dispatcher, 'abandon'>>
  maxBodyBytes: number
  /** Calls (POST /<fn>) served at once; past it a call gets 429 before its body is read. Unlimited when absent. */
  maxInFlight?: number
  logger: Logger
  /** True once the listener is shutting down: new calls are turned away. */
  draining: () => boolean
  /** Readiness (NATS, etcd, draining); without it only draining counts. */
  readiness?: () => Promise<ReadinessReport>
  /** Counts calls; serves GET /_amp/v1/metrics. */
  metrics?: ListenerMetrics
  /** Reads function logs from JetStream (GET .../functions/<name>/logs); without it that route answers 503. */
  logs?: Pick<CallLogReader, 'open'>
  /** Checks the bearer token (auth.ts); without it every request is let in. */
  authorize?: Authorize
  /** Watch-backed copy of the registry: calls to known functions go on while etcd is unreachable. */
  functions?: Pick<FunctionCache, 'lookup' | 'assertReachable'>
  /** Asynchronous calls over JetStream (docs/async.md); without it they answer 503. */
  asyncCalls?: Pick<AsyncCalls, 'enqueue' | 'get' | 'deadLetters'>
  /** Told the name of a function just replaced, updated or removed (workers then drop its pre-started containers); must not throw. */
  functionChanged?: (name: string) => void
}

type Handler = (req: IncomingMessage, res: ServerResponse, callId: string) => Promise<void>

export function createRequestHandler(ctx: ApiContext): (req: IncomingMessage, res: ServerResponse) => void {
  const calls = {inFlight: 0}
  return (req, res) => {
    const callId = randomUUID()
    res.setHeader('Amp-Call-Id', callId)
    const serve = async () => {
      // Before routing: without the right token a request learns nothing, not even which routes exist.
      if (ctx.authorize) authorized(ctx, ctx.authorize, req, res, callId)
      await route(ctx, req, calls)(req, res, callId)
    }
    serve().catch((error: unknown) => {
      const failure = isAmpError(error) ? error : new AmpError('internal', 'internal error in the listener')
      if (!isAmpError(error)) ctx.logger.error('request failed', {call: callId, error: (error as Error).message})
      return sendError(res, failure, callId)
    }).catch(() => res.destroy())
  }
}

/** Runs the token check; refusals are logged (never with the header's value). */
function authorized(ctx: ApiContext, authorize: Authorize, req: IncomingMessage, res: ServerResponse, callId: string): void {
  const path = (req.url ?? '/').split('?')[0]
  try {
    authorize(req, res, path)
  } catch (error) {
    const code = isAmpError(error) ? error.code : 'internal'
    ctx.logger.info('request refused', {call: callId, status: HTTP_STATUS[code], error: code, method: req.method?.slice(0, 20), path: path.slice(0, 100)})
    throw error
  }
}

function route(ctx: ApiContext, req: IncomingMessage, calls: {inFlight: number}): Handler {
  const path = (req.url ?? '/').split('?')[0]
  const method = req.method ?? 'GET'
  if (path === `${API_PREFIX}/health`) {
    // Same answer as /health/ready, with only the status in the body (as before /health/ready existed).
    return only(method, ['GET', 'HEAD'], async (_req, res) => {
      const report = await readiness(ctx)
      sendJson(res, report.ready ? 200 : 503, {status: report.body.status})
    })
  }
  if ([`${API_PREFIX}/health/live`, `${API_PREFIX}/health/ready`, `${API_PREFIX}/metrics`].includes(path)) {
    return only(method, ['GET', 'HEAD'], async (req, res) => {
      const ops = {registry: ctx.metrics?.registry, readiness: () => readiness(ctx)}
      if (!(await answerOps(req, res, path.slice(API_PREFIX.length), ops))) throw new AmpError('not_found', 'this listener keeps no metrics')
    })
  }
  if (path === `${API_PREFIX}/functions`) {
    return only(method, ['GET'], async (_req, res) => sendJson(res, 200, {functions: (await ctx.registry.list()).map(publicSpec)}))
  }
  const logsOf = /^\/_amp\/v1\/functions\/([^/]+)\/logs$/.exec(path)?.[1]
  if (logsOf !== undefined) return only(method, ['GET'], (req, res) => serveLogs(ctx, logsOf, req, res))
  if (path.startsWith(`${API_PREFIX}/functions/`)) {
    const name = path.slice(`${API_PREFIX}/functions/`.length)
    if (method === 'GET') return async (_req, res) => sendJson(res, 200, publicSpec(await mustGet(ctx, name)))
    if (method === 'PUT') return (req, res) => putFunction(ctx, name, req, res)
    if (method === 'DELETE') return (_req, res) => removeFunction(ctx, name, res)
    if (method === 'PATCH') return (req, res) => updateFunction(ctx, name, req, res)
    return only(method, ['GET', 'PUT', 'PATCH', 'DELETE'], async () => {})
  }
  const callOf = /^\/_amp\/v1\/calls\/([^/]+)$/.exec(path)?.[1]
  if (callOf !== undefined) return only(method, ['GET'], (req, res) => getCall(ctx, callOf, req, res))
  if (path === `${API_PREFIX}/dead-letters`) return only(method, ['GET'], (req, res) => listDeadLetters(ctx, req, res))
  if (path.startsWith('/_amp/') || path === '/') {
    return async () => {
      throw new AmpError('not_found', `no such route: ${method} ${path.slice(0, 100)} (see ${API_PREFIX}/functions)`)
    }
  }
  return only(method, ['POST'], (req, res, callId) => invoke(ctx, path.slice(1), req, res, callId, calls))
}

function only(method: string, allowed: string[], handler: Handler): Handler {
  if (allowed.includes(method)) return handler
  return async (_req, res) => {
    res.setHeader('Allow', allowed.join(', '))
    throw new AmpError('method_not_allowed', `method ${method.slice(0, 20)} is not allowed here; use ${allowed.join(' or ')}`)
  }
}

async function mustGet(ctx: ApiContext, name: string): Promise<StoredFunction> {
  const spec = isName(name) ? await ctx.registry.get(name) : undefined
  if (!spec) {
    throw new AmpError('function_not_found', `no function named ${JSON.stringify(name.slice(0, 80))}`, {
      suggestions: ['list functions with: amp function ls'],
    })
  }
  return spec
}

async function putFunction(ctx: ApiContext, name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
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
async function updateFunction(ctx: ApiContext, name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  checkName(name)
  const body = await readJson(req, 'function settings', '{"image": "busybox:1.36"} (any of image, timeoutMs, network, memoryBytes, cpus, pidsLimit, env)')
  const updated = await ctx.registry.update(name, checkFunctionPatch(body))
  if (!updated) throw new AmpError('function_not_found', `no function named ${JSON.stringify(name)}`)
  ctx.logger.info('function updated', {fn: name, image: updated.image, timeoutMs: updated.timeoutMs, network: updated.network})
  ctx.functionChanged?.(name)
  sendJson(res, 200, publicSpec(updated))
}

async function removeFunction(ctx: ApiContext, name: string, res: ServerResponse): Promise<void> {
  const removed = isName(name) ? await ctx.registry.remove(name) : undefined
  if (!removed) throw new AmpError('function_not_found', `no function named ${JSON.stringify(name.slice(0, 80))}`)
  ctx.logger.info('function removed', {fn: name})
  ctx.functionChanged?.(name)
  sendJson(res, 200, publicSpec(removed))
}

function readiness(ctx: ApiContext): Promise<ReadinessReport> {
  return ctx.readiness?.() ?? checkReadiness({}, ctx.draining)
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

function asyncCalls(ctx: ApiContext): NonNullable<ApiContext['asyncCalls']> {
  if (!ctx.asyncCalls) throw new AmpError('service_unavailable', 'this listener does not take asynchronous calls')
  return ctx.asyncCalls
}

async function getCall(ctx: ApiContext, callId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
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

async function listDeadLetters(ctx: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const params = new URL(req.url ?? '/', 'http://listener').searchParams
  const fn = params.get('function')
  const limitText = params.get('limit') ?? '100'
  const limit = /^\d{1,4}$/.test(limitText) ? Number(limitText) : Number.NaN
  const deadLetters = await asyncCalls(ctx).deadLetters(fn ? checkName(fn) : undefined, checkDeadLetterLimit(limit))
  sendJson(res, 200, {deadLetters})
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

function isName(name: string): boolean {
  try {
    checkName(name)
    return true
  } catch {
    return false
  }
}

/**
 * Past the limit, up to this much more is read and thrown away before answering 413: a client still
 * sending would otherwise see its connection cut (EPIPE) instead of the answer. Beyond it, we cut.
 */
const DISCARD_LIMIT = 64 * 1024 * 1024

/** Reads a small JSON request body of the function API; anything else is a 400 that shows the expected form. */
async function readJson(req: IncomingMessage, what: string, example: string): Promise<unknown> {
  const text = (await readBody(req, MAX_API_BODY, what)).toString('utf8')
  try {
    return JSON.parse(text)
  } catch {
    throw new AmpError('bad_request', `body must be JSON like ${example}`)
  }
}

/** Reads a request body, refusing it (413) once it is known to be over the limit. */
export async function readBody(req: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const tooLarge = () =>
    new AmpError('input_too_large', `${what} is larger than the limit of ${formatBytes(limit)}`, {
      suggestions: ['send less, or raise the listener limit with --max-body'],
    })
  const declared = Number(req.headers['content-length'])
  if (declared > limit + DISCARD_LIMIT) throw tooLarge()
  let over = declared > limit
  const parts: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit + DISCARD_LIMIT) throw tooLarge() // ends the loop, which closes the connection
    if (size > limit) over = true
    if (!over) parts.push(chunk)
  }
  if (over) throw tooLarge()
  return Buffer.concat(parts)
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status
  res.setHeader('Content-Type', 'application/json')
  res.end(JSON.stringify(body))
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

/** Reads and drops what is left of a request body, up to `budget` bytes. */
function drainBody(req: IncomingMessage, budget: number): Promise<void> {
  if (req.complete || req.destroyed) return Promise.resolve()
  return new Promise((resolve) => {
    let left = budget
    const done = () => {
      req.off('data', onData).off('end', done).off('error', done).off('close', done)
      resolve()
    }
    const onData = (chunk: Buffer) => {
      left -= chunk.length
      if (left < 0) done()
    }
    req.on('data', onData).once('end', done).once('error', done).once('close', done)
    req.resume()
  })
}
