/**
 * HTTP/1.1 over a bare TCP socket, for requests no HTTP client library would send: any bytes in
 * the request line and headers, bodies sent slowly or cut off. One request per connection.
 */
import {setTimeout as sleep} from 'node:timers/promises'
import {connect, type Socket} from 'node:net'

export interface RawResponse {
  status: number
  /** Header names in lower case. */
  headers: Record<string, string>
  body: Buffer
}

export interface RawSend {
  /** Written in order, `delayMs` apart. */
  pieces: Buffer[]
  delayMs?: number
  /** Destroy the socket after the last piece instead of waiting for an answer (a truncated upload). */
  cut?: boolean
  /** How long to wait for the server to answer and close; then the result is 'timeout'. */
  timeoutMs?: number
}

/** The parsed answer; 'closed' if the server closed without answering, 'timeout' if it neither answered nor closed. */
export async function rawExchange(url: string, send: RawSend): Promise<RawResponse | 'closed' | 'timeout' | 'cut'> {
  const {hostname, port} = new URL(url)
  const socket = connect(Number(port), hostname)
  const received: Buffer[] = []
  let answered = () => {}
  // Done when the server closes, or as soon as one whole response with a Content-Length is in (keep-alive).
  const closed = new Promise<void>((resolve) => {
    answered = resolve
    socket.once('close', () => resolve())
  })
  socket.on('data', (chunk: Buffer) => {
    received.push(chunk)
    if (complete(Buffer.concat(received))) answered()
  })
  socket.on('error', () => {}) // a reset is a close; the caller judges by what arrived
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()).once('close', () => resolve()))
  for (const [i, piece] of send.pieces.entries()) {
    if (i > 0 && send.delayMs) await sleep(send.delayMs)
    if (socket.destroyed) break
    await write(socket, piece)
  }
  if (send.cut) {
    socket.destroy()
    return 'cut'
  }
  let timer: NodeJS.Timeout | undefined
  const timedOut = await Promise.race([
    closed.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), send.timeoutMs ?? 10_000))),
  ])
  clearTimeout(timer)
  socket.destroy()
  const data = Buffer.concat(received)
  if (data.length === 0) return timedOut ? 'timeout' : 'closed'
  return parseResponse(data)
}

function complete(data: Buffer): boolean {
  try {
    const response = parseResponse(data)
    const length = response.headers['content-length']
    return length !== undefined && response.body.length >= Number(length)
  } catch {
    return false
  }
}

function write(socket: Socket, data: Buffer): Promise<void> {
  return new Promise((resolve) => socket.write(data, () => resolve()))
}

/** Parses the first final response (skipping 1xx) of what the server sent; the body is what follows, de-chunked. */
export function parseResponse(data: Buffer): RawResponse {
  let rest = data
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) throw new Error(`incomplete response head: ${JSON.stringify(rest.toString('latin1').slice(0, 200))}`)
    const [statusLine, ...lines] = rest.subarray(0, end).toString('latin1').split('\r\n')
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1])
    if (!status) throw new Error(`bad status line ${JSON.stringify(statusLine)}`)
    rest = rest.subarray(end + 4)
    if (status < 200) continue
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const body = headers['transfer-encoding'] === 'chunked' ? dechunk(rest) : rest.subarray(0, Number(headers['content-length'] ?? rest.length))
    return {status, headers, body}
  }
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const eol = data.indexOf('\r\n', at)
    if (eol < 0) break
    const size = Number.parseInt(data.subarray(at, eol).toString('latin1'), 16)
    if (!size) break
    parts.push(data.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
  return Buffer.concat(parts)
}

/** A request's bytes: request line, headers (Connection: close added), blank line, body. */
export function requestBytes(method: string, path: string, headers: Array<[string, string]>, body?: Buffer): Buffer {
  const head = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...headers.map(([k, v]) => `${k}: ${v}`)]
  if (body) head.push(`Content-Length: ${body.length}`)
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'utf8'), body ?? Buffer.alloc(0)])
}
