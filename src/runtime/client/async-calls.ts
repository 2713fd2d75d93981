/** Following asynchronous calls: a call's record (`/_amp/v1/calls/<id>`), waiting for it, and the dead letters. */
import {setTimeout as sleep} from 'node:timers/promises'

import {AmpError} from '../shared/errors.js'
import {
  API_PREFIX,
  type CallRecord,
  type CallResult,
  checkDeadLetterLimit,
  type DeadLetter,
  FINAL_STATES,
  fromEnvelope,
  isCallRecord,
  isDeadLetter,
} from '../shared/http-contract.js'
import {checkCallId} from '../shared/log-query.js'
import {checkName, formatDuration} from '../shared/validate.js'
import {suggestionsFor} from './listener-errors.js'
import type {Transport} from './transport.js'

/** The longest one GET of a call record is held by the listener (the contract's cap is 60s). */
export const CALL_WAIT_MS = 30_000

/**
 * The record of an asynchronous call. With waitMs (at most CALL_WAIT_MS) the listener holds the
 * answer until the call is final or the wait passes.
 */
export async function getCall(t: Transport, callId: string, options: {waitMs?: number} = {}): Promise<CallRecord> {
  checkCallId(callId)
  const waitMs = Math.min(Math.max(0, Math.round(options.waitMs ?? 0)), CALL_WAIT_MS)
  const answer = await t.send('GET', `${API_PREFIX}/calls/${callId}${waitMs > 0 ? `?wait=${waitMs}ms` : ''}`, {
    timeoutMs: waitMs + t.requestTimeoutMs,
  })
  if (answer.status !== 200) throw t.failure(answer)
  const record = t.json(answer)
  if (!isCallRecord(record)) {
    throw t.badAnswer(answer, 'expected a call record (callId, function, state, attempts, maxAttempts, createdAt, deadLetter, ...)')
  }
  if (record.callId !== callId) throw t.badAnswer(answer, `asked for call ${callId}, got the record of call ${record.callId}`)
  return record
}

/**
 * Waits until an asynchronous call is final (succeeded or failed) and returns its record; fails
 * with function_timeout when it is not final after timeoutMs.
 */
export async function waitForCall(t: Transport, callId: string, options: {timeoutMs: number}): Promise<CallRecord> {
  const deadline = Date.now() + options.timeoutMs
  for (;;) {
    const asked = Date.now()
    const record = await getCall(t, callId, {waitMs: Math.min(CALL_WAIT_MS, Math.max(1, deadline - asked))})
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
export async function deadLetters(t: Transport, query: {function?: string; limit?: number} = {}): Promise<DeadLetter[]> {
  const params = new URLSearchParams()
  if (query.function !== undefined) params.set('function', checkName(query.function))
  if (query.limit !== undefined) {
    params.set('limit', String(checkDeadLetterLimit(query.limit)))
  }
  const answer = await t.send('GET', `${API_PREFIX}/dead-letters${params.size > 0 ? `?${params}` : ''}`)
  if (answer.status !== 200) throw t.failure(answer)
  const data = t.json(answer) as {deadLetters?: unknown}
  if (!Array.isArray(data?.deadLetters) || !data.deadLetters.every((item) => isDeadLetter(item))) {
    throw t.badAnswer(answer, 'expected {"deadLetters": [{callId, function, attempts, failedAt, error}, ...]}')
  }
  return data.deadLetters
}

/**
 * The outcome of a final call as `amp function invoke` gives it: the result when its container
 * exited (whatever the exit code), else the error of its last attempt (timeout: exit 105, else 106).
 */
export function finalResult(record: CallRecord): CallResult {
  const result = record.result === undefined ? undefined : fromEnvelope(record.result)
  if (result) return result
  const attempts = `${record.attempts} attempt${record.attempts === 1 ? '' : 's'}`
  const code = record.outcome === 'timeout' ? 'function_timeout' : 'function_failed_to_run'
  throw new AmpError(code, `call ${record.callId} failed after ${attempts}: ${record.error ?? 'it left no result'}`, {
    suggestions: suggestionsFor(code, record.function),
  })
}
