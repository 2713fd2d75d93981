/**
 * amp's own failures. Each kind has a stable string code (used in HTTP error bodies and --json)
 * and a process exit code (docs/operations.md "Exit codes"). Exit codes start at 100 so they rarely collide
 * with the exit code of a function, which `amp function invoke` passes through unchanged.
 */
export const EXIT = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  config: 100,
  unreachable: 101,
  notFound: 102,
  exists: 103,
  noWorker: 104,
  timeout: 105,
  cannotRun: 106,
  tooLarge: 107,
  unavailable: 108,
  badAnswer: 109,
  notAuthorized: 110,
  overloaded: 111,
} as const

export type ErrorCode =
  | 'bad_request'
  | 'config_invalid'
  | 'listener_unreachable'
  | 'function_not_found'
  | 'function_exists'
  | 'no_worker'
  | 'function_timeout'
  | 'function_failed_to_run'
  | 'input_too_large'
  | 'registry_unavailable'
  | 'service_unavailable'
  | 'bad_answer'
  | 'not_found'
  | 'method_not_allowed'
  | 'unauthorized'
  | 'forbidden'
  | 'internal'
  | 'overloaded'
  | 'call_not_found'

const EXIT_BY_CODE: Record<ErrorCode, number> = {
  bad_request: EXIT.usage,
  config_invalid: EXIT.config,
  listener_unreachable: EXIT.unreachable,
  function_not_found: EXIT.notFound,
  function_exists: EXIT.exists,
  no_worker: EXIT.noWorker,
  function_timeout: EXIT.timeout,
  function_failed_to_run: EXIT.cannotRun,
  input_too_large: EXIT.tooLarge,
  registry_unavailable: EXIT.unavailable,
  service_unavailable: EXIT.unavailable,
  bad_answer: EXIT.badAnswer,
  not_found: EXIT.badAnswer,
  method_not_allowed: EXIT.badAnswer,
  unauthorized: EXIT.notAuthorized,
  forbidden: EXIT.notAuthorized,
  internal: EXIT.badAnswer,
  overloaded: EXIT.overloaded,
  call_not_found: EXIT.notFound,
}

/** HTTP status the listener answers with for each code. */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  config_invalid: 500,
  listener_unreachable: 502,
  function_not_found: 404,
  function_exists: 409,
  no_worker: 503,
  function_timeout: 504,
  function_failed_to_run: 502,
  input_too_large: 413,
  registry_unavailable: 503,
  service_unavailable: 503,
  bad_answer: 502,
  not_found: 404,
  method_not_allowed: 405,
  // No credentials (or malformed ones), and credentials that were refused.
  unauthorized: 401,
  forbidden: 403,
  internal: 500,
  overloaded: 429,
  // An asynchronous call id that is unknown, or whose record is past its retention.
  call_not_found: 404,
}

export class AmpError extends Error {
  readonly code: ErrorCode
  readonly exit: number
  readonly suggestions: string[]

  constructor(code: ErrorCode, message: string, options: {suggestions?: string[]; cause?: unknown} = {}) {
    super(message, {cause: options.cause})
    this.name = 'AmpError'
    this.code = code
    this.exit = EXIT_BY_CODE[code]
    this.suggestions = options.suggestions ?? []
  }
}

export function isAmpError(error: unknown): error is AmpError {
  return error instanceof AmpError
}
