/** What the listener's HTTP API and the CLI's client agree on (README "HTTP API"). */

/** API routes start with "/_amp/": "_" cannot appear in a function name, so no function can shadow them. */
export const API_PREFIX = '/_amp/v1'
/** Asks the listener for the whole outcome of a call (stdout, stderr, exit code) as JSON. */
export const RESULT_MEDIA_TYPE = 'application/vnd.amp.result+json'

/** The outcome of one call whose container ran and exited. */
export interface CallResult {
  callId: string
  function: string
  exitCode: number
  stdout: Buffer
  stderr: Buffer
  stderrTruncated: boolean
  durationMs: number
  worker: string
}

/** A CallResult as JSON (the result envelope, and `amp function invoke --json`): outputs in base64, so any bytes survive. */
export type ResultEnvelope = Omit<CallResult, 'stdout' | 'stderr'> & {stdout: string; stderr: string}

export function toEnvelope(result: CallResult): ResultEnvelope {
  return {
    callId: result.callId,
    function: result.function,
    exitCode: result.exitCode,
    stdout: result.stdout.toString('base64'),
    stderr: result.stderr.toString('base64'),
    stderrTruncated: result.stderrTruncated,
    durationMs: result.durationMs,
    worker: result.worker,
  }
}

/** Reads an envelope back; undefined when any field is missing or of the wrong type. */
export function fromEnvelope(data: unknown): CallResult | undefined {
  if (typeof data !== 'object' || data === null) return undefined
  const e = data as Record<string, unknown>
  const ok =
    typeof e.callId === 'string' &&
    typeof e.function === 'string' &&
    Number.isInteger(e.exitCode) &&
    isBase64(e.stdout) &&
    isBase64(e.stderr) &&
    typeof e.stderrTruncated === 'boolean' &&
    typeof e.durationMs === 'number' &&
    typeof e.worker === 'string'
  if (!ok) return undefined
  const envelope = e as unknown as ResultEnvelope
  return {...envelope, stdout: Buffer.from(envelope.stdout, 'base64'), stderr: Buffer.from(envelope.stderr, 'base64')}
}

function isBase64(value: unknown): value is string {
  return typeof value === 'string' && value.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(value)
}

/** Where an asynchronous call is; succeeded and failed are final (docs/async.md). */
export type CallState = 'queued' | 'running' | 'retrying' | 'succeeded' | 'failed'

/** What GET /_amp/v1/calls/<id> answers about an asynchronous call. */
export interface CallRecord {
  callId: string
  function: string
  state: CallState
  /** Attempts started so far. */
  attempts: number
  /** The function's retries + 1. */
  maxAttempts: number
  createdAt: string
  /** Of the latest attempt. */
  startedAt?: string
  /** Once final. */
  finishedAt?: string
  /** While retrying. */
  nextAttemptAt?: string
  /** Of the latest attempt. */
  worker?: string
  /** Why the latest attempt failed, when it did not exit 0. */
  error?: string
  /** Of the latest finished attempt. */
  outcome?: 'exited' | 'timeout' | 'failed'
  /** True once the call failed for good and went to the dead letters. */
  deadLetter: boolean
  callbackUrl?: string
  callback?: {state: 'pending' | 'delivered' | 'failed'; attempts: number; status?: number; error?: string}
  /** Once final, when the latest attempt's container exited. */
  result?: ResultEnvelope
}

/** One call that failed for good (GET /_amp/v1/dead-letters). */
export interface DeadLetter {
  callId: string
  function: string
  attempts: number
  failedAt: string
  /** The last failure, one line. */
  error: string
  /** When the last attempt exited non-zero. */
  exitCode?: number
}

/** The answer to an asynchronous call (202). */
export interface AsyncAccepted {
  callId: string
  function: string
  state: 'queued'
  statusUrl: string
}
