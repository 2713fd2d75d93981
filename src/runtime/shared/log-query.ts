/**
 * What a log request says, as the listener reads it and the CLI's client writes it: the media type
 * of its answer, a call id, a since.
 */
import {AmpError} from './errors.js'
import {parseDuration} from './validate.js'

/** One line of a function's log, as the listener sends it (NDJSON) and the client reads it. */
export interface LogLine {
  /** When the line reached NATS (ISO 8601, UTC). */
  time: string
  function: string
  callId: string
  worker: string
  /** The line as UTF-8, without its newline. */
  line: string
  /** Only on the marker line that says the call's log was cut. */
  truncated?: true
}

export const NDJSON_MEDIA_TYPE = 'application/x-ndjson'
const CALL_ID = /^[A-Za-z0-9-]{1,64}$/

export function checkCallId(callId: string): string {
  if (!CALL_ID.test(callId)) {
    throw new AmpError('bad_request', `invalid call id ${JSON.stringify(callId.slice(0, 80))}: use the id from Amp-Call-Id or amp function logs`)
  }
  return callId
}

/** "10m" (a duration back from now, at most 24h) or an ISO 8601 time such as 2025-01-31T14:00:00Z. */
export function parseSince(text: string, now = Date.now()): Date {
  if (/^\d{4}-\d\d-\d\d/.test(text.trim())) {
    const time = new Date(text.trim())
    if (Number.isNaN(time.getTime())) {
      throw new AmpError('bad_request', `invalid since ${JSON.stringify(text.slice(0, 80))}: use a duration such as 10m or a time such as 2025-01-31T14:00:00Z`)
    }
    return time
  }
  try {
    return new Date(now - parseDuration(text))
  } catch {
    throw new AmpError('bad_request', `invalid since ${JSON.stringify(text.slice(0, 80))}: use a duration such as 10m (at most 24h) or a time such as 2025-01-31T14:00:00Z`)
  }
}
