/**
 * The HTTP answer of a streamed call (`Prefer: stream`, docs/http-api.md "Streaming"). The head waits for
 * the first stdout byte: a call that ends (or fails) before writing any is answered exactly as a
 * buffered one, by the caller of this class. From the first byte on, the answer is 200, chunked,
 * and its outcome comes in the trailers, after the body.
 */
import type {ServerResponse} from 'node:http'

import {CallLost} from './dispatcher.js'
import {isAmpError} from '../shared/errors.js'
import {type CallResult, PREFER_STREAM} from '../shared/http-contract.js'
import {headerValue} from '../shared/protocol.js'

export {PREFER_STREAM}
export const STREAM_TRAILERS = ['Amp-Exit-Code', 'Amp-Outcome', 'Amp-Error', 'Amp-Duration-Ms'] as const
/** exited, timeout and failed as in the protocol; lost: the worker went silent or output went missing. */
export type StreamOutcome = 'exited' | 'timeout' | 'failed' | 'lost'

export class StreamedAnswer {
  /** Body bytes written. */
  bytes = 0
  private headSent = false
  private readonly startedAt: number

  constructor(private readonly res: ServerResponse, private readonly now: () => number = Date.now) {
    this.startedAt = now()
  }

  /** True once the head went out: from then on the outcome can only go in the trailers. */
  get streaming(): boolean {
    return this.headSent
  }

  /**
   * Writes a chunk of stdout, sending the head first if it has not gone yet. Resolves once the
   * socket took it ('drain'), or the caller hung up: the worker's next chunk waits for that.
   */
  write(chunk: Uint8Array, worker: string): Promise<void> {
    const {res} = this
    if (chunk.length === 0 || res.destroyed || res.writableEnded) return Promise.resolve()
    if (!this.headSent) {
      this.headSent = true
      res.statusCode = 200
      res.setHeader('Content-Type', 'application/octet-stream')
      res.setHeader('Preference-Applied', PREFER_STREAM)
      res.setHeader('Trailer', STREAM_TRAILERS.join(', '))
      if (worker) res.setHeader('Amp-Worker', worker)
      // Each chunk leaves at once: no Nagle delay waiting for more.
      res.socket?.setNoDelay(true)
    }
    this.bytes += chunk.length
    if (res.write(chunk)) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        res.off('drain', done).off('close', done)
        resolve()
      }
      res.once('drain', done).once('close', done)
    })
  }

  /** Ends a streamed answer of a container that exited. */
  end(result: CallResult): void {
    this.finish({'Amp-Outcome': 'exited', 'Amp-Exit-Code': String(result.exitCode), 'Amp-Duration-Ms': String(result.durationMs)})
  }

  /** Ends a streamed answer of a call that failed after its first byte; Amp-Duration-Ms is then the listener's time. */
  fail(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error)
    this.finish({'Amp-Outcome': outcomeOf(error), 'Amp-Error': headerValue(message), 'Amp-Duration-Ms': String(this.now() - this.startedAt)})
  }

  private finish(trailers: Record<string, string>): void {
    const {res} = this
    if (res.destroyed || res.writableEnded) return
    res.addTrailers(trailers)
    res.end()
  }
}

export function outcomeOf(error: unknown): StreamOutcome {
  if (error instanceof CallLost) return 'lost'
  return isAmpError(error) && error.code === 'function_timeout' ? 'timeout' : 'failed'
}
