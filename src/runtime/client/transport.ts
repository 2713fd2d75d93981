/**
 * How the client talks to a listener: one undici request under the --server URL (its path prefix
 * kept), with the token and timeouts, and every failure as an AmpError whose code picks amp's exit
 * code: network trouble is listener_unreachable, an error body keeps the listener's code and
 * message, anything else the listener would never send (a proxy's HTML page, a cut-off body) is
 * bad_answer. The resource files (functions.ts, calls.ts, ...) build on it.
 */
import {type Dispatcher, request} from 'undici'

import {checkServerUrl} from '../shared/config.js'
import {AmpError, type ErrorCode} from '../shared/errors.js'
import {API_PREFIX} from '../shared/http-contract.js'
import {type Logger, silentLogger} from '../shared/logger.js'
import {LISTENER_CODES, oneLine, suggestionsFor, withToken} from './listener-errors.js'
import {errorCode, isNotHttp} from './network-errors.js'

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

/** A whole answer, read. */
export interface Answer {
  status: number
  contentType: string
  body: Buffer
}

export type Method = 'DELETE' | 'GET' | 'PATCH' | 'POST' | 'PUT'

export class Transport {
  /** The --server URL as given, without a trailing slash: what error messages name. */
  readonly server: string
  readonly requestTimeoutMs: number
  private readonly base: URL
  private readonly dispatcher?: Dispatcher
  private readonly logger: Logger
  private readonly auth: Record<string, string>

  constructor(options: AmpClientOptions) {
    this.base = checkServerUrl(options.server)
    this.server = options.server.replace(/\/+$/, '')
    this.dispatcher = options.dispatcher
    this.logger = options.logger ?? silentLogger
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000
    this.auth = options.token ? {authorization: `Bearer ${options.token}`} : {}
  }

  /** A request whose whole answer is read; timeoutMs (default requestTimeoutMs) bounds the headers and each body read. */
  async send(method: Method, path: string, options: {body?: Buffer | string; headers?: Record<string, string>; timeoutMs?: number} = {}): Promise<Answer> {
    const timeout = options.timeoutMs ?? this.requestTimeoutMs
    const started = Date.now()
    const {url, response} = await this.open(method, path, {...options, headersTimeout: timeout, bodyTimeout: timeout})
    const body = await this.readBody(response, method, url)
    const contentType = contentTypeOf(response)
    this.logger.debug('http', {method, path: url.pathname, status: response.statusCode, ms: Date.now() - started})
    return {status: response.statusCode, contentType, body}
  }

  /** A request whose answer the caller reads as it comes (streamed calls, log lines). */
  async open(
    method: Method,
    path: string,
    options: {body?: Buffer | string; headers?: Record<string, string>; headersTimeout: number; bodyTimeout: number},
  ): Promise<{url: URL; response: Dispatcher.ResponseData}> {
    const url = new URL(this.base.pathname.replace(/\/+$/, '') + path, this.base)
    try {
      const response = await request(url, {
        method,
        body: options.body,
        headers: {...options.headers, ...this.auth},
        dispatcher: this.dispatcher,
        headersTimeout: options.headersTimeout,
        bodyTimeout: options.bodyTimeout,
      })
      return {url, response}
    } catch (error) {
      throw this.unreachable(error, Buffer.byteLength(options.body ?? ''))
    }
  }

  async readBody(response: Dispatcher.ResponseData, method: string, url: URL): Promise<Buffer> {
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
  failure(answer: Answer, context: {name?: string; call?: boolean} = {}): AmpError {
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

  badAnswer(answer: Answer, detail?: string): AmpError {
    const type = answer.contentType || 'no content type'
    return new AmpError(
      'bad_answer',
      `unexpected answer from ${this.server}: HTTP ${answer.status} (${type})${detail ? `: ${detail}` : ''}`,
      {suggestions: [`Check that --server points at an amp listener: curl ${this.server}${API_PREFIX}/health`]},
    )
  }

  /** The answer's JSON body; a bad answer when it is not JSON. */
  json(answer: Answer): unknown {
    if (answer.contentType !== 'application/json') throw this.badAnswer(answer, 'expected JSON')
    try {
      return JSON.parse(answer.body.toString('utf8'))
    } catch {
      throw this.badAnswer(answer, 'the JSON body is cut off or malformed')
    }
  }
}

/** The media type of an answer, lower case, without parameters. */
export function contentTypeOf(response: Dispatcher.ResponseData): string {
  return String(response.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase()
}
