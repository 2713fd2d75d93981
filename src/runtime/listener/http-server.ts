/**
 * The listener's node:http server with its limits against slow and malformed clients. Requests
 * that Node's parser refuses before amp sees them (bad syntax, headers over 16 KiB, too slow) get
 * the same JSON error body as amp's own errors, instead of Node's bare status line.
 */
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {Duplex} from 'node:stream'

export interface HttpTimeouts {
  /** A client must have sent all its request headers this long after it connected (or its last request). */
  headersTimeoutMs?: number
  /** ... and its whole request, body included. The time to answer (a running function) does not count. */
  requestTimeoutMs?: number
}

// Slowloris holds connections by sending headers a byte at a time: 15 s is plenty for any real client.
export const HEADERS_TIMEOUT_MS = 15_000
// An 8 MiB body needs only 30 KB/s to arrive in time; Node's own default.
export const REQUEST_TIMEOUT_MS = 300_000
// Idle keep-alive connections are closed after this (Node's default, said explicitly).
export const KEEP_ALIVE_TIMEOUT_MS = 5000
// Node enforces both timeouts only when it checks its connections: every 30 s unless told.
const CHECK_INTERVAL_MS = 1000

type Handler = (req: IncomingMessage, res: ServerResponse) => void

export function createHttpServer(handler: Handler, timeouts: HttpTimeouts = {}): Server {
  const requestTimeout = timeouts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS
  const server = createServer(
    {
      headersTimeout: Math.min(timeouts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS, requestTimeout),
      requestTimeout,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      connectionsCheckingInterval: CHECK_INTERVAL_MS,
      // amp routes by path only; Node's own 400 for a missing Host header would have no JSON body.
      requireHostHeader: false,
    },
    handler,
  )
  server.on('clientError', answerClientError)
  // Node answers any Expect other than 100-continue with a bare 417; amp answers it in JSON too.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(417, {'Content-Type': 'application/json', 'Amp-Error-Code': 'bad_request', Connection: 'close'})
    res.end(errorBody('bad_request', `unsupported Expect header ${JSON.stringify(String(req.headers.expect).slice(0, 40))}: only 100-continue is`))
  })
  // CONNECT (a proxy tunnel) is not something amp serves; without a listener Node would cut the connection silently.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => answerRaw(socket, 405, 'method_not_allowed', 'method CONNECT is not allowed here'))
  return server
}

const CLIENT_ERRORS: Record<string, [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'request headers are larger than 16 KiB'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'chunk extensions are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'the request was not received in time'],
}

/** As Node's default handler does, but with a JSON body: answer only if nothing of a response was sent yet. */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  const inFlight = (socket as Duplex & {_httpMessage?: ServerResponse})._httpMessage
  if (error.code !== 'ECONNRESET' && socket.writable && !inFlight?.headersSent) {
    const [status, message] = CLIENT_ERRORS[error.code ?? ''] ?? [400, 'malformed HTTP request']
    answerRaw(socket, status, status === 413 ? 'input_too_large' : 'bad_request', message)
  }
  socket.destroy()
}

/** Writes a whole JSON error response on a socket that has no ServerResponse, and closes it. */
function answerRaw(socket: Duplex, status: number, code: string, message: string): void {
  const body = errorBody(code, message)
  socket.write(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: application/json\r\nAmp-Error-Code: ${code}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  )
  socket.destroy()
}

const STATUS_TEXT: Record<number, string> = {400: 'Bad Request', 405: 'Method Not Allowed', 408: 'Request Timeout', 413: 'Content Too Large', 431: 'Request Header Fields Too Large'}

function errorBody(code: string, message: string): string {
  return JSON.stringify({error: {code, message}})
}
