/** Calling a function with `Prefer: stream` (README "Streaming"): stdout as it is written, the outcome in trailers. */
import {AmpError} from '../shared/errors.js'
import {PREFER_STREAM, RESULT_MEDIA_TYPE} from '../shared/http-contract.js'
import {checkName} from '../shared/validate.js'
import {CALL_TIMEOUT_MS, type CallOutcome, outcomeOf} from './calls.js'
import {oneLine, suggestionsFor} from './listener-errors.js'
import {errorCode} from './network-errors.js'
import {contentTypeOf, type Transport} from './transport.js'

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

/**
 * Calls a function with `Prefer: stream`: its stdout goes to `sink` as the function writes it, and
 * the outcome comes from the answer's trailers once the body ended. A call that ends before
 * writing any stdout is answered as a buffered one: its whole result (stdout, sent to the sink
 * too, and stderr) comes back. A streamed answer carries no stderr.
 */
export async function callStreamed(t: Transport, name: string, input: Buffer, sink: StdoutSink): Promise<StreamOutcome> {
  checkName(name)
  // Between chunks a function may be silent up to its own timeout (at most 24h).
  const {url, response} = await t.open('POST', `/${name}`, {
    body: input,
    headers: {'content-type': 'application/octet-stream', accept: RESULT_MEDIA_TYPE, prefer: PREFER_STREAM},
    headersTimeout: CALL_TIMEOUT_MS,
    bodyTimeout: CALL_TIMEOUT_MS,
  })
  const applied = String(response.headers['preference-applied'] ?? '').toLowerCase()
  if (response.statusCode !== 200 || !applied.split(',').some((item) => item.trim() === PREFER_STREAM)) {
    const answer = {status: response.statusCode, contentType: contentTypeOf(response), body: await t.readBody(response, 'POST', url)}
    const outcome = outcomeOf(t, answer, name)
    if (outcome.kind === 'result') await sink(outcome.result.stdout)
    return outcome
  }
  const callId = String(response.headers['amp-call-id'] ?? '')
  try {
    for await (const chunk of response.body) await sink(chunk as Buffer)
  } catch (error) {
    throw new AmpError('bad_answer', `the listener at ${t.server} broke off the streamed answer of call ${callId} (${errorCode(error) ?? 'incomplete body'})`, {cause: error})
  }
  return {kind: 'streamed', call: {callId, exitCode: streamExit(t, response.trailers ?? {}, callId, name)}}
}

/** The exit code a streamed answer's trailers give, or the AmpError of the call's failure (README "Streaming"). */
function streamExit(t: Transport, trailers: Record<string, string | string[] | undefined>, callId: string, name: string): number {
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
  throw new AmpError('bad_answer', `the streamed answer of call ${callId} from ${t.server} ended without a valid outcome trailer (Amp-Outcome, Amp-Exit-Code)`, {
    suggestions: ['A proxy between amp and the listener may drop HTTP trailers: call the listener directly'],
  })
}
