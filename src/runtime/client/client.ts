/**
 * The CLI's client for the listener's HTTP API (README "HTTP API"). Every failure becomes an
 * AmpError whose code picks amp's exit code: network trouble is listener_unreachable, an error
 * body keeps the listener's code and message, anything else the listener would never send
 * (a proxy's HTML page, a cut-off body) is bad_answer.
 */
import {createInterface} from 'node:readline'
import type {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {type Dispatcher, request} from 'undici'

import type {LogLine} from '../shared/log-query.js'

import {checkServerUrl} from '../shared/config.js'
import {AmpError, type ErrorCode} from '../shared/errors.js'
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
import {
  API_PREFIX,
  CALLBACK_URL_HEADER,
  type CallAccepted,
  type CallRecord,
  type CallResult,
  checkCallbackUrl,
  type DeadLetter,
  FINAL_STATES,
  fromEnvelope,
  isCallAccepted,
  isCallRecord,
  isDeadLetter,
  PREFER_STREAM,
  RESPOND_ASYNC,
  RESULT_MEDIA_TYPE,
  checkDeadLetterLimit,
} from '../shared/http-contract.js'
import {type Logger, silentLogger} from '../shared/logger.js'
import {checkCallId, NDJSON_MEDIA_TYPE, parseSince} from '../shared/log-query.js'
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
  formatDuration,
  MAX_TIMEOUT_MS,
} from '../shared/validate.js'

export {API_PREFIX, RESULT_MEDIA_TYPE}
/** What a call returns to the CLI. */
export type InvokeResult = CallResult

export interface CreateResult {
  function: FunctionSpec
  /** true when an existing function was overwritten (--replace). */
  replaced: boolean
}

/** How a call was answered: its result, or (asynchronous, fire-and-forget) its id to follow. */
export type CallOutcome = {kind: 'result'; result: InvokeResult} | {kind: 'accepted'; accepted: CallAccepted}

/** A streamed call whose container exited: its stdout went to the sink; the answer carries no stderr. */
export interface StreamedCall {
  callId: string
  exitCode: number
}

/**
 * How a call with `Prefer: stream` was answered: streamed; a whole result (it ended before its
 * first stdout byte, which then went to the sink too); or queued (a fire-and-forget function).
 */
export type StreamOutcome = {kind: 'streamed'; call: StreamedCall} | CallOutcome

/** A sink for streamed stdout: the next chunk is read once the returned promise resolves. */
export type StdoutSink = (chunk: Buffer) => Promise<void> | void

/** The longest one GET of a call record is held by the listener (the contract's cap is 60s). */
export const CALL_WAIT_MS = 30_000
/** Most dead letters one request returns. */

export interface RemoveResult {
  removed: FunctionSpec[]
  /** Names that had no function. */
  missing: string[]
}

export interface AmpClientOptions {
  /** Listener URL, e.g. http://localhost:4242; a path prefix is kept (for listeners behind a proxy). */
  server: string
  /** undici dispatcher; the global one when omitted (tests pass a MockAgent). */
  dispatcher?: Dispatcher
  logger?: Logger
  /** For API calls (not invocations): how long to wait for an answer. */
  requestTimeoutMs?: number
  /** Sent as `Authorization: Bearer <token>` on every request (--token, AMP_TOKEN). */
  token?: string
}

/** Error codes a listener may send; anything else in an error body is a bad answer. */
const LISTENER_CODES = new Set<ErrorCode>([
  'bad_request',
  'function_not_found',
  'function_exists',
  'no_worker',
  'function_timeout',
  'function_failed_to_run',
  'input_too_large',
  'registry_unavailable',
  'service_unavailable',
  'not_found',
  'method_not_allowed',
  'unauthorized',
  'forbidden',
  'internal',
  'overloaded',
  'call_not_found',
])

/** What to do next, per error code; NAME stands for the function's name when it is not known. */
function suggestionsFor(code: ErrorCode, name = 'NAME'): string[] {
  switch (code) {
    case 'function_not_found':
      return ['See the registered functions with: amp function ls']
    case 'function_exists':
      return [`Overwrite it with: amp function create ${name} IMAGE --replace`]
    case 'no_worker':
      return ['Start a worker with: amp worker start (or run the whole stack with: amp up)']
    case 'function_timeout':
      return [`Give it more time with: amp function update ${name} --timeout 2m`]
    case 'function_failed_to_run':
      return ['Check that the image exists where the workers run (docker image ls) and read the worker log']
    case 'input_too_large':
      return ['Send less input, or start the listener with a larger --max-body']
    case 'unauthorized':
      return ['Set the listener\'s token with --token, AMP_TOKEN or "token:" in the config file']
    case 'forbidden':
      return ['Use the token the listener was started with (--token / AMP_TOKEN; to call functions, its invoke token also works)']
    case 'overloaded':
      return ['Try again in a moment (the answer says when: Retry-After), or raise the listener\'s --max-inflight']
    case 'call_not_found':
      return ['Check the call id: records of asynchronous calls are kept for a limited time (docs/async.md)']
    case 'registry_unavailable':
      return ['Check that etcd is running and that the listener reaches it (amp listener start --etcd URL)']
    default:
      return []
  }
}

interface Answer {
  status: number
  contentType: string
  body: Buffer
}

export class AmpClient {
  readonly server: string
  private readonly base: URL
  private readonly dispatcher?: Dispatcher
  private readonly logger: Logger
  private readonly requestTimeoutMs: number
  private readonly auth: Record<string, string>

  constructor(options: AmpClientOptions) {
    this.base = checkServerUrl(options.server)
    this.server = options.server.replace(/\/+$/, '')
    this.dispatcher = options.dispatcher
    this.logger = options.logger ?? silentLogger
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000
    this.auth = options.token ? {authorization: `Bearer ${options.token}`} : {}
  }

  async createFunction(
    name: string,
    input: FunctionInput,
    options: {replace?: boolean} = {},
  ): Promise<CreateResult> {
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
    const answer = await this.send('PUT', `${API_PREFIX}/functions/${checkName(name)}${query}`, {
      body: JSON.stringify(body),
      headers: {'content-type': 'application/json'},
    })
    if (answer.status !== 201 && answer.status !== 200) throw this.failure(answer, {name})
    return {function: this.spec(answer, this.json(answer)), replaced: answer.status === 200}
  }

  async getFunction(name: string): Promise<FunctionSpec> {
    const answer = await this.send('GET', `${API_PREFIX}/functions/${checkName(name)}`)
    if (answer.status !== 200) throw this.failure(answer)
    return this.spec(answer, this.json(answer))
  }

  /**
   * Changes some settings of a function in place (PATCH). Calls already running finish with the
   * settings they started with; the next call uses the new ones.
   */
  async updateFunction(name: string, patch: FunctionPatch): Promise<FunctionSpec> {
    // Checked here too, so a bad value never leaves the machine and fails with exit 2.
    checkName(name)
    const body = checkFunctionPatch(patch)
    const answer = await this.send('PATCH', `${API_PREFIX}/functions/${name}`, {
      body: JSON.stringify(body),
      headers: {'content-type': 'application/json'},
    })
    if (answer.status !== 200) throw this.failure(answer, {name})
    return this.spec(answer, this.json(answer))
  }

  async listFunctions(): Promise<FunctionSpec[]> {
    const answer = await this.send('GET', `${API_PREFIX}/functions`)
    if (answer.status !== 200) throw this.failure(answer)
    const data = this.json(answer) as {functions?: unknown}
    if (!Array.isArray(data?.functions)) throw this.badAnswer(answer, 'expected {"functions": [...]}')
    return data.functions.map((item) => this.spec(answer, item))
  }

  async removeFunction(name: string): Promise<FunctionSpec> {
    const answer = await this.send('DELETE', `${API_PREFIX}/functions/${checkName(name)}`)
    if (answer.status !== 200) throw this.failure(answer)
    return this.spec(answer, this.json(answer))
  }

  /**
   * Removes each function that exists and reports the names that did not. All names are checked
   * before the first request; any failure other than "not found" stops at once.
   */
  async removeFunctions(names: string[]): Promise<RemoveResult> {
    for (const name of names) checkName(name)
    const result: RemoveResult = {removed: [], missing: []}
    for (const name of new Set(names)) {
      try {
        result.removed.push(await this.removeFunction(name))
      } catch (error) {
        if (!(error instanceof AmpError && error.code === 'function_not_found')) throw error
        result.missing.push(name)
      }
    }
    return result
  }

  /**
   * Calls a function with `input` on its stdin and waits for the whole outcome. A fire-and-forget
   * function answers with a call id instead; this then waits for that call's result.
   */
  async invoke(name: string, input: Buffer): Promise<InvokeResult> {
    const outcome = await this.call(name, input)
    if (outcome.kind === 'result') return outcome.result
    return finalResult(await this.waitForCall(outcome.accepted.callId, {timeoutMs: MAX_TIMEOUT_MS + 60_000}))
  }

  /** Calls a function asynchronously: resolves with the call id once the listener has durably queued the call. */
  async invokeAsync(name: string, input: Buffer, options: {callbackUrl?: string} = {}): Promise<CallAccepted> {
    const outcome = await this.call(name, input, {async: true, ...options})
    if (outcome.kind === 'accepted') return outcome.accepted
    throw new AmpError(
      'bad_answer',
      `the listener at ${this.server} ran call ${outcome.result.callId} synchronously: it does not take asynchronous calls (an amp listener older than #5?)`,
    )
  }

  /**
   * Sends one call and returns how it was answered: a result (sync), or 202 with a call id (with
   * `async`, or when the function is fire-and-forget). A callback URL makes the call asynchronous.
   */
  async call(name: string, input: Buffer, options: {async?: boolean; callbackUrl?: string} = {}): Promise<CallOutcome> {
    // Checked here too, so a bad value never leaves the machine and fails with exit 2.
    checkName(name)
    const headers: Record<string, string> = {'content-type': 'application/octet-stream', accept: RESULT_MEDIA_TYPE}
    if (options.callbackUrl !== undefined) headers[CALLBACK_URL_HEADER] = checkCallbackUrl(options.callbackUrl)
    if (options.async || options.callbackUrl !== undefined) headers.prefer = RESPOND_ASYNC
    const answer = await this.send('POST', `/${name}`, {
      body: input,
      headers,
      // The listener answers every sync call by the function's own timeout (at most 24h); do not cut it short.
      timeoutMs: MAX_TIMEOUT_MS + 60_000,
    })
    return this.outcome(answer, name)
  }

  /** How the listener answered a call: result, accepted (202), or the AmpError of its failure. */
  private outcome(answer: Answer, name: string): CallOutcome {
    if ((answer.status === 200 || answer.status === 500) && answer.contentType === RESULT_MEDIA_TYPE) {
      return {kind: 'result', result: this.result(answer)}
    }
    if (answer.status === 202) {
      const accepted = this.json(answer)
      if (!isCallAccepted(accepted)) throw this.badAnswer(answer, 'expected {"callId", "function", "state": "queued", "statusUrl"}')
      return {kind: 'accepted', accepted}
    }
    throw this.failure(answer, {name, call: true})
  }

  /**
   * Calls a function with `Prefer: stream` (README "Streaming"): its stdout goes to `sink` as the
   * function writes it, and the outcome comes from the answer's trailers once the body ended.
   * A call that ends before writing any stdout is answered as a buffered one: its whole result
   * (stdout, sent to the sink too, and stderr) comes back. A streamed answer carries no stderr.
   */
  async callStreamed(name: string, input: Buffer, sink: StdoutSink): Promise<StreamOutcome> {
    checkName(name)
    const url = new URL(this.base.pathname.replace(/\/+$/, '') + `/${name}`, this.base)
    // Between chunks a function may be silent up to its own timeout (at most 24h).
    const timeout = MAX_TIMEOUT_MS + 60_000
    let response: Dispatcher.ResponseData
    try {
      response = await request(url, {
        method: 'POST',
        body: input,
        headers: {'content-type': 'application/octet-stream', accept: RESULT_MEDIA_TYPE, prefer: PREFER_STREAM, ...this.auth},
        dispatcher: this.dispatcher,
        headersTimeout: timeout,
        bodyTimeout: timeout,
      })
    } catch (error) {
      throw this.unreachable(error, input.length)
    }
    const applied = String(response.headers['preference-applied'] ?? '').toLowerCase()
    if (response.statusCode !== 200 || !applied.split(',').some((item) => item.trim() === PREFER_STREAM)) {
      const answer = {status: response.statusCode, contentType: contentTypeOf(response), body: await this.readBody(response, 'POST', url)}
      const outcome = this.outcome(answer, name)
      if (outcome.kind === 'result') await sink(outcome.result.stdout)
      return outcome
    }
    const callId = String(response.headers['amp-call-id'] ?? '')
    try {
      for await (const chunk of response.body) await sink(chunk as Buffer)
    } catch (error) {
      throw new AmpError('bad_answer', `the listener at ${this.server} broke off the streamed answer of call ${callId} (${errorCode(error) ?? 'incomplete body'})`, {cause: error})
    }
    return {kind: 'streamed', call: {callId, exitCode: this.streamExit(response.trailers ?? {}, callId, name)}}
  }

  /** The exit code a streamed answer's trailers give, or the AmpError of the call's failure (README "Streaming"). */
  private streamExit(trailers: Record<string, string | string[] | undefined>, callId: string, name: string): number {
    const get = (key: string) => String(trailers[key.toLowerCase()] ?? '')
    const outcome = get('Amp-Outcome')
    const why = `${oneLine(get('Amp-Error')) || 'no reason given'} (call ${callId})`
    if (outcome === 'exited') {
      const exitCode = Number(get('Amp-Exit-Code') || Number.NaN)
      if (Number.isInteger(exitCode) && exitCode >= 0 && exitCode <= 255) return exitCode
    } else if (outcome === 'timeout') {
      throw new AmpError('function_timeout', why, {suggestions: suggestionsFor('function_timeout', name)})
    } else if (outcome === 'failed' || outcome === 'lost') {
      throw new AmpError('function_failed_to_run', why, {suggestions: suggestionsFor('function_failed_to_run', name)})
    }
    throw new AmpError('bad_answer', `the streamed answer of call ${callId} from ${this.server} ended without a valid outcome trailer (Amp-Outcome, Amp-Exit-Code)`, {
      suggestions: ['A proxy between amp and the listener may drop HTTP trailers: call the listener directly'],
    })
  }

  /**
   * The record of an asynchronous call. With waitMs (at most CALL_WAIT_MS) the listener holds the
   * answer until the call is final or the wait passes.
   */
  async getCall(callId: string, options: {waitMs?: number} = {}): Promise<CallRecord> {
    checkCallId(callId)
    const waitMs = Math.min(Math.max(0, Math.round(options.waitMs ?? 0)), CALL_WAIT_MS)
    const answer = await this.send('GET', `${API_PREFIX}/calls/${callId}${waitMs > 0 ? `?wait=${waitMs}ms` : ''}`, {
      timeoutMs: waitMs + this.requestTimeoutMs,
    })
    if (answer.status !== 200) throw this.failure(answer)
    const record = this.json(answer)
    if (!isCallRecord(record)) {
      throw this.badAnswer(answer, 'expected a call record (callId, function, state, attempts, maxAttempts, createdAt, deadLetter, ...)')
    }
    if (record.callId !== callId) throw this.badAnswer(answer, `asked for call ${callId}, got the record of call ${record.callId}`)
    return record
  }

  /**
   * Waits until an asynchronous call is final (succeeded or failed) and returns its record; fails
   * with function_timeout when it is not final after timeoutMs.
   */
  async waitForCall(callId: string, options: {timeoutMs: number}): Promise<CallRecord> {
    const deadline = Date.now() + options.timeoutMs
    for (;;) {
      const asked = Date.now()
      const record = await this.getCall(callId, {waitMs: Math.min(CALL_WAIT_MS, Math.max(1, deadline - asked))})
      if (FINAL_STATES.has(record.state)) return record
      if (Date.now() >= deadline) {
        throw new AmpError(
          'function_timeout',
          `call ${callId} is still ${record.state} after ${formatDuration(options.timeoutMs)} (attempt ${record.attempts} of ${record.maxAttempts})`,
          {suggestions: [`Wait longer with: amp call get ${callId} --wait --timeout 1h`]},
        )
      }
      // A listener that answers at once (it ignored ?wait) is not asked again in a tight loop.
      if (Date.now() - asked < 1000) await sleep(Math.min(1000, Math.max(0, deadline - Date.now())))
    }
  }

  /** Asynchronous calls that failed for good, newest last. */
  async deadLetters(query: {function?: string; limit?: number} = {}): Promise<DeadLetter[]> {
    const params = new URLSearchParams()
    if (query.function !== undefined) params.set('function', checkName(query.function))
    if (query.limit !== undefined) {
      params.set('limit', String(checkDeadLetterLimit(query.limit)))
    }
    const answer = await this.send('GET', `${API_PREFIX}/dead-letters${params.size > 0 ? `?${params}` : ''}`)
    if (answer.status !== 200) throw this.failure(answer)
    const data = this.json(answer) as {deadLetters?: unknown}
    if (!Array.isArray(data?.deadLetters) || !data.deadLetters.every((item) => isDeadLetter(item))) {
      throw this.badAnswer(answer, 'expected {"deadLetters": [{callId, function, attempts, failedAt, error}, ...]}')
    }
    return data.deadLetters
  }

  /**
   * A function's log lines, oldest first. Resolves once the listener has answered, so an unknown
   * function or missing JetStream fails before the first line. With follow the lines go on until
   * the caller stops iterating; if the listener ends the stream, iterating fails (listener_unreachable).
   */
  async logs(name: string, query: {callId?: string; since?: string; follow?: boolean} = {}): Promise<AsyncIterable<LogLine>> {
    // Checked here too, so a bad value fails with exit 2 before any request.
    const params = new URLSearchParams()
    if (query.callId !== undefined) params.set('call', checkCallId(query.callId))
    if (query.since !== undefined) {
      parseSince(query.since)
      // Sent as given: "10m" is counted back from the listener's clock.
      params.set('since', query.since)
    }
    if (query.follow) params.set('follow', 'true')
    const path = `${API_PREFIX}/functions/${checkName(name)}/logs${params.size > 0 ? `?${params}` : ''}`
    const url = new URL(this.base.pathname.replace(/\/+$/, '') + path, this.base)
    let response: Dispatcher.ResponseData
    try {
      response = await request(url, {
        method: 'GET',
        headers: this.auth,
        dispatcher: this.dispatcher,
        headersTimeout: this.requestTimeoutMs,
        // Following waits for lines as long as it takes.
        bodyTimeout: query.follow ? 0 : this.requestTimeoutMs,
      })
    } catch (error) {
      throw this.unreachable(error, 0)
    }
    const contentType = String(response.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
    if (response.statusCode !== 200 || contentType !== NDJSON_MEDIA_TYPE) {
      const body = Buffer.from(await response.body.arrayBuffer().catch(() => new ArrayBuffer(0)))
      throw this.failure({status: response.statusCode, contentType, body}, {name})
    }
    return this.logLines(response.body, {status: 200, contentType, body: Buffer.alloc(0)}, Boolean(query.follow))
  }

  private async *logLines(body: Readable, answer: Answer, follow: boolean): AsyncGenerator<LogLine> {
    const lines = createInterface({input: body, crlfDelay: Infinity})
    try {
      for await (const text of lines) {
        if (text === '') continue
        let line: unknown
        try {
          line = JSON.parse(text)
        } catch {
          throw this.badAnswer(answer, 'a log line is not JSON')
        }
        if (!isLogLine(line)) throw this.badAnswer(answer, 'a log line lacks time, function, callId, worker or line')
        yield line
      }
    } catch (error) {
      if (error instanceof AmpError) throw error
      throw new AmpError('listener_unreachable', `the listener at ${this.server} broke off the log stream (${errorCode(error) ?? 'incomplete body'})`, {cause: error})
    } finally {
      // The caller stopped early (Ctrl-C, --call found its lines): hang up; undici reports that as an error nobody needs.
      lines.on('error', () => {}).close()
      body.on('error', () => {}).destroy()
    }
    if (follow) {
      throw new AmpError('listener_unreachable', `the listener at ${this.server} ended the log stream (it stopped or restarted)`, {
        suggestions: ['Run the command again to go on following'],
      })
    }
  }

  private async send(
    method: 'DELETE' | 'GET' | 'PATCH' | 'POST' | 'PUT',
    path: string,
    options: {body?: Buffer | string; headers?: Record<string, string>; timeoutMs?: number} = {},
  ): Promise<Answer> {
    const url = new URL(this.base.pathname.replace(/\/+$/, '') + path, this.base)
    const timeout = options.timeoutMs ?? this.requestTimeoutMs
    const started = Date.now()
    let response: Dispatcher.ResponseData
    try {
      response = await request(url, {
        method,
        body: options.body,
        headers: {...options.headers, ...this.auth},
        dispatcher: this.dispatcher,
        headersTimeout: timeout,
        bodyTimeout: timeout,
      })
    } catch (error) {
      throw this.unreachable(error, Buffer.byteLength(options.body ?? ''))
    }
    const body = await this.readBody(response, method, url)
    const contentType = contentTypeOf(response)
    this.logger.debug('http', {method, path: url.pathname, status: response.statusCode, ms: Date.now() - started})
    return {status: response.statusCode, contentType, body}
  }

  private async readBody(response: Dispatcher.ResponseData, method: string, url: URL): Promise<Buffer> {
    try {
      return Buffer.from(await response.body.arrayBuffer())
    } catch (error) {
      // The answer began and then broke off: the listener died, or a proxy cut it.
      throw new AmpError(
        'bad_answer',
        `the listener at ${this.server} broke off its answer to ${method} ${url.pathname} (${errorCode(error) ?? 'incomplete body'})`,
        {cause: error},
      )
    }
  }

  private unreachable(error: unknown, sent: number): AmpError {
    const code = errorCode(error)
    if (isNotHttp(error)) {
      return new AmpError('bad_answer', `the server at ${this.server} does not speak HTTP as an amp listener does`, {
        cause: error,
        suggestions: [`Check that --server points at an amp listener: curl ${this.server}${API_PREFIX}/health`],
      })
    }
    const start = ['Start one with: amp up (whole stack) or amp listener start', 'Or point amp at a running listener with --server URL or AMP_SERVER']
    if (code === 'EPIPE' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') {
      // Connected, then cut off before any answer: the listener went away, or refused a large input
      // by closing the connection while amp was still sending it.
      return new AmpError('listener_unreachable', `the listener at ${this.server} closed the connection before answering (${code})`, {
        cause: error,
        suggestions:
          sent > 1024 * 1024
            ? [`If ${sent} bytes of input are more than the listener's --max-body (default 8MiB), send less`, ...start]
            : start,
      })
    }
    const reason = code?.endsWith('TIMEOUT')
      ? `no answer in time (${code})`
      : (code ?? (error instanceof Error ? error.message : String(error)))
    return new AmpError('listener_unreachable', `cannot reach the listener at ${this.server}: ${reason}`, {
      cause: error,
      suggestions: start,
    })
  }

  /**
   * The AmpError for an answer that is not the success we asked for. For a call, the message ends
   * with the call id, which the listener and worker logs also carry.
   */
  private failure(answer: Answer, context: {name?: string; call?: boolean} = {}): AmpError {
    let data: unknown
    if (answer.contentType === 'application/json') {
      try {
        data = JSON.parse(answer.body.toString('utf8'))
      } catch {
        data = undefined
      }
    }
    const error = (data as {error?: {code?: unknown; message?: unknown; callId?: unknown}} | undefined)?.error
    if (error && typeof error.code === 'string' && typeof error.message === 'string' && answer.status >= 400) {
      const message = oneLine(error.message)
      const withCall =
        context.call && typeof error.callId === 'string' && error.callId && !message.includes(error.callId)
          ? `${message} (call ${error.callId})`
          : message
      if (LISTENER_CODES.has(error.code as ErrorCode)) {
        const code = error.code as ErrorCode
        return new AmpError(code, withToken(code, withCall), {suggestions: suggestionsFor(code, context.name)})
      }
      return this.badAnswer(answer, `error ${error.code}: ${withCall}`)
    }
    return this.badAnswer(answer)
  }

  private badAnswer(answer: Answer, detail?: string): AmpError {
    const type = answer.contentType || 'no content type'
    return new AmpError(
      'bad_answer',
      `unexpected answer from ${this.server}: HTTP ${answer.status} (${type})${detail ? `: ${detail}` : ''}`,
      {suggestions: [`Check that --server points at an amp listener: curl ${this.server}${API_PREFIX}/health`]},
    )
  }

  private json(answer: Answer): unknown {
    if (answer.contentType !== 'application/json') throw this.badAnswer(answer, 'expected JSON')
    try {
      return JSON.parse(answer.body.toString('utf8'))
    } catch {
      throw this.badAnswer(answer, 'the JSON body is cut off or malformed')
    }
  }

  private spec(answer: Answer, value: unknown): FunctionSpec {
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
    if (!ok) throw this.badAnswer(answer, 'expected a function (name, image, timeoutMs, network, createdAt, updatedAt, ...)')
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

  private result(answer: Answer): InvokeResult {
    let data: unknown
    try {
      data = JSON.parse(answer.body.toString('utf8'))
    } catch {
      throw this.badAnswer(answer, 'the result JSON is cut off or malformed')
    }
    const result = fromEnvelope(data)
    if (!result) throw this.badAnswer(answer, 'the result lacks callId, function, exitCode, stdout, stderr, stderrTruncated, durationMs or worker')
    return result
  }
}

/**
 * The outcome of a final call as `amp function invoke` gives it: the result when its container
 * exited (whatever the exit code), else the error of its last attempt (timeout: exit 105, else 106).
 */
export function finalResult(record: CallRecord): InvokeResult {
  const result = record.result === undefined ? undefined : fromEnvelope(record.result)
  if (result) return result
  const attempts = `${record.attempts} attempt${record.attempts === 1 ? '' : 's'}`
  const code = record.outcome === 'timeout' ? 'function_timeout' : 'function_failed_to_run'
  throw new AmpError(code, `call ${record.callId} failed after ${attempts}: ${record.error ?? 'it left no result'}`, {
    suggestions: suggestionsFor(code, record.function),
  })
}

/** The media type of an answer, lower case, without parameters. */
function contentTypeOf(response: Dispatcher.ResponseData): string {
  return String(response.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase()
}

function isLogLine(value: unknown): value is LogLine {
  const line = value as Partial<Record<keyof LogLine, unknown>> | null
  return (
    typeof line === 'object' &&
    line !== null &&
    typeof line.time === 'string' &&
    typeof line.function === 'string' &&
    typeof line.callId === 'string' &&
    typeof line.worker === 'string' &&
    typeof line.line === 'string'
  )
}

/** Says on the error line itself what to do about a refused token. */
function withToken(code: ErrorCode, message: string): string {
  if (code === 'unauthorized') return `${message}; set it with --token or AMP_TOKEN`
  if (code === 'forbidden') return `${message}; check --token or AMP_TOKEN`
  return message
}

function oneLine(text: string): string {
  return text.replaceAll(/\s*\n\s*/g, ' ').trim()
}

/** An error and what it wraps: causes, and the attempts of an AggregateError (happy eyeballs). */
function* errorChain(error: unknown): Generator<{code?: unknown; name?: unknown}> {
  const seen = new Set<unknown>()
  let current: unknown = error
  while (current && typeof current === 'object' && !seen.has(current)) {
    seen.add(current)
    yield current as {code?: unknown; name?: unknown}
    const {errors, cause} = current as {errors?: unknown[]; cause?: unknown}
    current = Array.isArray(errors) && errors.length > 0 ? errors[0] : cause
  }
}

/** The most specific code on an error from node or undici. */
function errorCode(error: unknown): string | undefined {
  for (const item of errorChain(error)) {
    if (typeof item.code === 'string' && item.code !== 'UND_ERR') return item.code
  }
  return undefined
}

/** undici could not parse the answer as HTTP at all. */
function isNotHttp(error: unknown): boolean {
  for (const item of errorChain(error)) {
    if (item.name === 'HTTPParserError' || (typeof item.code === 'string' && item.code.startsWith('HPE_'))) return true
  }
  return false
}
