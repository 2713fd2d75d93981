/**
 * What the listener's error codes mean to the person at the CLI: which codes a listener may send,
 * and what to do next about each (the suggestions under the error line).
 */
import type {ErrorCode} from '../shared/errors.js'

/** Error codes a listener may send; anything else in an error body is a bad answer. */
export const LISTENER_CODES = new Set<ErrorCode>([
  'bad_request',
  'function_not_found',
  'function_exists',
  'no_worker',
  'function_timeout',
  'function_failed_to_run',
  'input_too_large',
  'registry_unavailable',
  'service_unavailable',
  'not_found',
  'method_not_allowed',
  'unauthorized',
  'forbidden',
  'internal',
  'overloaded',
  'call_not_found',
])

/** What to do next, per error code; NAME stands for the function's name when it is not known. */
export function suggestionsFor(code: ErrorCode, name = 'NAME'): string[] {
  switch (code) {
    case 'function_not_found':
      return ['See the registered functions with: amp function ls']
    case 'function_exists':
      return [`Overwrite it with: amp function create ${name} IMAGE --replace`]
    case 'no_worker':
      return ['Start a worker with: amp worker start (or run the whole stack with: amp up)']
    case 'function_timeout':
      return [`Give it more time with: amp function update ${name} --timeout 2m`]
    case 'function_failed_to_run':
      return ['Check that the image exists where the workers run (docker image ls) and read the worker log']
    case 'input_too_large':
      return ['Send less input, or start the listener with a larger --max-body']
    case 'unauthorized':
      return ['Set the listener\'s token with --token, AMP_TOKEN or "token:" in the config file']
    case 'forbidden':
      return ['Use the token the listener was started with (--token / AMP_TOKEN; to call functions, its invoke token also works)']
    case 'overloaded':
      return ['Try again in a moment (the answer says when: Retry-After), or raise the listener\'s --max-inflight']
    case 'call_not_found':
      return ['Check the call id: records of asynchronous calls are kept for a limited time (docs/async.md)']
    case 'registry_unavailable':
      return ['Check that etcd is running and that the listener reaches it (amp listener start --etcd URL)']
    default:
      return []
  }
}

/** Says on the error line itself what to do about a refused token. */
export function withToken(code: ErrorCode, message: string): string {
  if (code === 'unauthorized') return `${message}; set it with --token or AMP_TOKEN`
  if (code === 'forbidden') return `${message}; check --token or AMP_TOKEN`
  return message
}

/** A listener's message on one line, as the CLI prints errors. */
export function oneLine(text: string): string {
  return text.replaceAll(/\s*\n\s*/g, ' ').trim()
}
