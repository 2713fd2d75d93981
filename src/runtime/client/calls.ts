/** Calling a function (`POST /<name>`): the whole result, or the id of an asynchronous call. */
import {AmpError} from '../shared/errors.js'
import {
  CALLBACK_URL_HEADER,
  type CallAccepted,
  type CallResult,
  checkCallbackUrl,
  fromEnvelope,
  isCallAccepted,
  RESPOND_ASYNC,
  RESULT_MEDIA_TYPE,
} from '../shared/http-contract.js'
import {checkName, MAX_TIMEOUT_MS} from '../shared/validate.js'
import {finalResult, waitForCall} from './async-calls.js'
import type {Answer, Transport} from './transport.js'

/** What a call returns to the CLI. */
export type InvokeResult = CallResult

/** How a call was answered: its result, or (asynchronous, fire-and-forget) its id to follow. */
export type CallOutcome = {kind: 'result'; result: InvokeResult} | {kind: 'accepted'; accepted: CallAccepted}

/** The listener answers every sync call by the function's own timeout (at most 24h): a call is never cut short before. */
export const CALL_TIMEOUT_MS = MAX_TIMEOUT_MS + 60_000

/**
 * Calls a function with `input` on its stdin and waits for the whole outcome. A fire-and-forget
 * function answers with a call id instead; this then waits for that call's result.
 */
export async function invoke(t: Transport, name: string, input: Buffer): Promise<InvokeResult> {
  const outcome = await call(t, name, input)
  if (outcome.kind === 'result') return outcome.result
  return finalResult(await waitForCall(t, outcome.accepted.callId, {timeoutMs: CALL_TIMEOUT_MS}))
}

/** Calls a function asynchronously: resolves with the call id once the listener has durably queued the call. */
export async function invokeAsync(t: Transport, name: string, input: Buffer, options: {callbackUrl?: string} = {}): Promise<CallAccepted> {
  const outcome = await call(t, name, input, {async: true, ...options})
  if (outcome.kind === 'accepted') return outcome.accepted
  throw new AmpError(
    'bad_answer',
    `the listener at ${t.server} ran call ${outcome.result.callId} synchronously: it does not take asynchronous calls (an amp listener older than #5?)`,
  )
}

/**
 * Sends one call and returns how it was answered: a result (sync), or 202 with a call id (with
 * `async`, or when the function is fire-and-forget). A callback URL makes the call asynchronous.
 */
export async function call(t: Transport, name: string, input: Buffer, options: {async?: boolean; callbackUrl?: string} = {}): Promise<CallOutcome> {
  // Checked here too, so a bad value never leaves the machine and fails with exit 2.
  checkName(name)
  const headers: Record<string, string> = {'content-type': 'application/octet-stream', accept: RESULT_MEDIA_TYPE}
  if (options.callbackUrl !== undefined) headers[CALLBACK_URL_HEADER] = checkCallbackUrl(options.callbackUrl)
  if (options.async || options.callbackUrl !== undefined) headers.prefer = RESPOND_ASYNC
  const answer = await t.send('POST', `/${name}`, {body: input, headers, timeoutMs: CALL_TIMEOUT_MS})
  return outcomeOf(t, answer, name)
}

/** How the listener answered a call: result, accepted (202), or the AmpError of its failure. */
export function outcomeOf(t: Transport, answer: Answer, name: string): CallOutcome {
  if ((answer.status === 200 || answer.status === 500) && answer.contentType === RESULT_MEDIA_TYPE) {
    return {kind: 'result', result: resultOf(t, answer)}
  }
  if (answer.status === 202) {
    const accepted = t.json(answer)
    if (!isCallAccepted(accepted)) throw t.badAnswer(answer, 'expected {"callId", "function", "state": "queued", "statusUrl"}')
    return {kind: 'accepted', accepted}
  }
  throw t.failure(answer, {name, call: true})
}

function resultOf(t: Transport, answer: Answer): InvokeResult {
  let data: unknown
  try {
    data = JSON.parse(answer.body.toString('utf8'))
  } catch {
    throw t.badAnswer(answer, 'the result JSON is cut off or malformed')
  }
  const result = fromEnvelope(data)
  if (!result) throw t.badAnswer(answer, 'the result lacks callId, function, exitCode, stdout, stderr, stderrTruncated, durationMs or worker')
  return result
}
