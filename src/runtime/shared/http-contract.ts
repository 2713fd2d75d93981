/** What the listener's HTTP API and the CLI's client agree on (docs/http-api.md). */
import {AmpError} from './errors.js'

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

// Asynchronous calls (#5, docs/async.md): what the listener answers and the CLI reads.

/** The Prefer token (RFC 7240) that makes a call asynchronous. */
export const RESPOND_ASYNC = 'respond-async'
/** The Prefer token (RFC 7240) that asks for stdout as the function writes it (docs/http-api.md "Streaming"). */
export const PREFER_STREAM = 'stream'
/** Request header: where the listener POSTs the result when an asynchronous call ends. */
export const CALLBACK_URL_HEADER = 'amp-callback-url'

export type CallState = 'queued' | 'running' | 'retrying' | 'succeeded' | 'failed'
export const CALL_STATES: readonly CallState[] = ['queued', 'running', 'retrying', 'succeeded', 'failed']
/** A call in one of these states changes no more. */
export const FINAL_STATES: ReadonlySet<CallState> = new Set<CallState>(['succeeded', 'failed'])

/** The 202 body of an asynchronous call. */
export interface CallAccepted {
  callId: string
  function: string
  state: 'queued'
  /** Path of the call's record: GET it for the status and, once final, the result. */
  statusUrl: string
}

export interface CallRecord {
  callId: string
  function: string
  /** succeeded and failed are final. */
  state: CallState
  /** Attempts started so far. */
  attempts: number
  /** retries + 1. */
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
  /** Why the latest attempt failed when it did not exit (timeout, could not run, ...). */
  error?: string
  /** Of the latest finished attempt. */
  outcome?: 'exited' | 'timeout' | 'failed'
  /** true once it failed for good (state failed). */
  deadLetter: boolean
  callbackUrl?: string
  callback?: {state: 'pending' | 'delivered' | 'failed'; attempts: number; status?: number; error?: string}
  /** Once final, when the latest attempt's container exited. */
  result?: ResultEnvelope
}

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

type Fields = Record<string, unknown>
const isObject = (value: unknown): value is Fields => typeof value === 'object' && value !== null && !Array.isArray(value)
const optional = (value: unknown, type: 'number' | 'string') => value === undefined || typeof value === type
const isCount = (value: unknown) => Number.isInteger(value) && (value as number) >= 0

export function isCallAccepted(value: unknown): value is CallAccepted {
  return (
    isObject(value) &&
    typeof value.callId === 'string' &&
    typeof value.function === 'string' &&
    value.state === 'queued' &&
    typeof value.statusUrl === 'string'
  )
}

/** A record with every required field of the right type; a result must be a whole result envelope. */
export function isCallRecord(value: unknown): value is CallRecord {
  if (!isObject(value)) return false
  const {callback} = value
  return (
    typeof value.callId === 'string' &&
    typeof value.function === 'string' &&
    CALL_STATES.includes(value.state as CallState) &&
    isCount(value.attempts) &&
    isCount(value.maxAttempts) &&
    typeof value.createdAt === 'string' &&
    typeof value.deadLetter === 'boolean' &&
    [value.startedAt, value.finishedAt, value.nextAttemptAt, value.worker, value.error, value.callbackUrl].every((item) =>
      optional(item, 'string'),
    ) &&
    [undefined, 'exited', 'timeout', 'failed'].includes(value.outcome as string) &&
    (callback === undefined || (isObject(callback) && ['pending', 'delivered', 'failed'].includes(callback.state as string) && isCount(callback.attempts))) &&
    (value.result === undefined || fromEnvelope(value.result) !== undefined)
  )
}

export function isDeadLetter(value: unknown): value is DeadLetter {
  return (
    isObject(value) &&
    typeof value.callId === 'string' &&
    typeof value.function === 'string' &&
    isCount(value.attempts) &&
    typeof value.failedAt === 'string' &&
    typeof value.error === 'string' &&
    (value.exitCode === undefined || Number.isInteger(value.exitCode))
  )
}

export const MAX_CALLBACK_URL = 2048

/** Amp-Callback-Url: an absolute http or https URL (the listener answers 400 otherwise; the CLI exits 2). */
export function checkCallbackUrl(text: string): string {
  const url = URL.canParse(text) ? new URL(text) : undefined
  if (!url || !['http:', 'https:'].includes(url.protocol) || /[\s\0]/.test(text) || text.length > MAX_CALLBACK_URL) {
    throw new AmpError('bad_request', `invalid callback URL ${JSON.stringify(text.slice(0, 200))}: give an absolute http:// or https:// URL`)
  }
  return text
}

/** The most dead letters one request lists (GET /_amp/v1/dead-letters?limit=). */
export const MAX_DEAD_LETTERS = 1000

/** A dead-letter limit, checked the same way by the client before it asks and by the listener. */
export function checkDeadLetterLimit(limit: number): number {
  if (!(Number.isInteger(limit) && limit >= 1 && limit <= MAX_DEAD_LETTERS)) throw new AmpError('bad_request', `limit must be a whole number from 1 to ${MAX_DEAD_LETTERS}`)
  return limit
}
