/** A function's log lines (`/_amp/v1/functions/<name>/logs`, NDJSON), read or followed. */
import {createInterface} from 'node:readline'
import type {Readable} from 'node:stream'

import {AmpError} from '../shared/errors.js'
import {API_PREFIX} from '../shared/http-contract.js'
import {checkCallId, type LogLine, NDJSON_MEDIA_TYPE, parseSince} from '../shared/log-query.js'
import {checkName} from '../shared/validate.js'
import {errorCode} from './network-errors.js'
import {type Answer, contentTypeOf, type Transport} from './transport.js'

/**
 * A function's log lines, oldest first. Resolves once the listener has answered, so an unknown
 * function or missing JetStream fails before the first line. With follow the lines go on until
 * the caller stops iterating; if the listener ends the stream, iterating fails (listener_unreachable).
 */
export async function logs(t: Transport, name: string, query: {callId?: string; since?: string; follow?: boolean} = {}): Promise<AsyncIterable<LogLine>> {
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
  const {response} = await t.open('GET', path, {
    headersTimeout: t.requestTimeoutMs,
    // Following waits for lines as long as it takes.
    bodyTimeout: query.follow ? 0 : t.requestTimeoutMs,
  })
  const contentType = contentTypeOf(response)
  if (response.statusCode !== 200 || contentType !== NDJSON_MEDIA_TYPE) {
    const body = Buffer.from(await response.body.arrayBuffer().catch(() => new ArrayBuffer(0)))
    throw t.failure({status: response.statusCode, contentType, body}, {name})
  }
  return logLines(t, response.body, {status: 200, contentType, body: Buffer.alloc(0)}, Boolean(query.follow))
}

async function* logLines(t: Transport, body: Readable, answer: Answer, follow: boolean): AsyncGenerator<LogLine> {
  const lines = createInterface({input: body, crlfDelay: Infinity})
  try {
    for await (const text of lines) {
      if (text === '') continue
      let line: unknown
      try {
        line = JSON.parse(text)
      } catch {
        throw t.badAnswer(answer, 'a log line is not JSON')
      }
      if (!isLogLine(line)) throw t.badAnswer(answer, 'a log line lacks time, function, callId, worker or line')
      yield line
    }
  } catch (error) {
    if (error instanceof AmpError) throw error
    throw new AmpError('listener_unreachable', `the listener at ${t.server} broke off the log stream (${errorCode(error) ?? 'incomplete body'})`, {cause: error})
  } finally {
    // The caller stopped early (Ctrl-C, --call found its lines): hang up; undici reports that as an error nobody needs.
    lines.on('error', () => {}).close()
    body.on('error', () => {}).destroy()
  }
  if (follow) {
    throw new AmpError('listener_unreachable', `the listener at ${t.server} ended the log stream (it stopped or restarted)`, {
      suggestions: ['Run the command again to go on following'],
    })
  }
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
