/** Reading request bodies within a limit, and writing JSON answers: what every route of the HTTP API needs. */
import type {IncomingMessage, ServerResponse} from 'node:http'

import {formatBytes} from '../shared/bytes.js'
import {AmpError} from '../shared/errors.js'

/**
 * Past the limit, up to this much more is read and thrown away before answering 413: a client still
 * sending would otherwise see its connection cut (EPIPE) instead of the answer. Beyond it, we cut.
 */
export const DISCARD_LIMIT = 64 * 1024 * 1024

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

/** Reads and drops what is left of a request body, up to `budget` bytes. */
export function drainBody(req: IncomingMessage, budget: number): Promise<void> {
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

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status
  res.setHeader('Content-Type', 'application/json')
  res.end(JSON.stringify(body))
}
