/**
 * The wire protocol between listeners and workers over core NATS (no storage).
 * docs/protocol.md describes it for people writing compatible workers; keep the two in step.
 *
 * 1. The listener sends a request to `amp.v1.call.<function>` (workers listen in queue group
 *    `amp-workers`, so exactly one worker gets it). Headers describe the call; the payload is the
 *    first chunk of the input. NATS "no responders" means no worker is running: 503 at once.
 * 2. The worker answers that request with `Amp-Status: accepted` (plus `Amp-Input-Subject` when
 *    more input chunks must follow), `busy` (its backlog is full: try another) or `rejected`; or,
 *    for a quick call (whole input, listener sends Amp-Inline-Output, ended within 50 ms), with
 *    `done` and the call's result, output in the payload: then nothing else follows.
 * 3. Remaining input chunks go to `Amp-Input-Subject` as requests, one at a time, each answered
 *    by the worker once it has taken it (flow control and proof of delivery).
 * 4. While the call is queued or running the worker sends `heartbeat` events to the listener's
 *    `Amp-Reply-To` subject every second, as requests the listener acks. A listener that hears
 *    nothing for a few seconds knows the worker died and answers 502; a worker whose heartbeats
 *    get "no responders" a few times in a row knows the listener died and kills the container.
 * 5. The worker sends `stdout` and `stderr` chunks as requests to `Amp-Reply-To` (each answered
 *    by the listener) and finally a `result` event that carries the outcome and the sizes, so
 *    the listener can tell that no chunk was lost; output that fits one message may ride in the
 *    result itself instead (Amp-Inline-Output). With `Amp-Stream: true` on the call, `stdout`
 *    chunks go while the container runs, one request in flight at a time (the ack is the flow
 *    control); otherwise all of them go once it has exited.
 */

import {headers, type MsgHdrs} from '@nats-io/transport-node'

import {SETTING_HEADERS, settingHeaders} from './function-fields.js'
import type {StoredFunction} from './function-spec.js'

export const PROTOCOL_VERSION = 'v1'
/** Call ids are UUIDs; a worker takes any id of this form, which cannot start with '-' (it ends up in docker arguments). */
export const CALL_ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/
export const CALL_SUBJECT_PREFIX = 'amp.v1.call'
/**
 * A worker subscribes to `amp.v1.warm.<function>` (queue group amp-workers) only while it has a
 * container of that function up and free (pre-started or warm): the listener offers a call there
 * first, so it goes to such a worker when there is one, and to any worker when NATS answers "no
 * responders".
 */
export const WARM_SUBJECT_PREFIX = 'amp.v1.warm'
export const WORKER_QUEUE = 'amp-workers'
export const REPLY_SUBJECT_PREFIX = 'amp.v1.reply'
export const INPUT_SUBJECT_PREFIX = 'amp.v1.input'
/** Core NATS (fire and forget): a listener publishes a function's name here after changing or removing it; workers drop its pre-started containers. */
export const FUNCTIONS_CHANGED_SUBJECT = 'amp.v1.functions.changed'

export const callSubject = (fn: string): string => `${CALL_SUBJECT_PREFIX}.${fn}`
export const warmSubject = (fn: string): string => `${WARM_SUBJECT_PREFIX}.${fn}`
/** The listener subscribes to `amp.v1.reply.<listenerId>.*` once, and uses one subject per call under it. */
export const replySubject = (listenerId: string, callId: string): string =>
  `${REPLY_SUBJECT_PREFIX}.${listenerId}.${callId}`
export const inputSubject = (workerId: string, callId: string): string =>
  `${INPUT_SUBJECT_PREFIX}.${workerId}.${callId}`

export const HEADER = {
  callId: 'Amp-Call-Id',
  function: 'Amp-Function',
  /** The function's settings (function-fields.ts): Amp-Image, Amp-Timeout-Ms, Amp-Network, the container limits, Amp-Env (never logged), Amp-Prestart, Amp-Reuse, Amp-Reuse-Max-Calls. */
  ...SETTING_HEADERS,
  inputSize: 'Amp-Input-Size',
  replyTo: 'Amp-Reply-To',
  /** `true`: the caller streams stdout, so send `stdout` events as the container writes (docs/protocol.md). Sync calls only. */
  stream: 'Amp-Stream',
  /**
   * `true` on a call: the listener takes a result event that carries the call's output itself
   * (docs/protocol.md, "Small output"). On that result event: its payload is the stdout not sent
   * in `stdout` events followed by the stderr (their sizes are Amp-Stdout-Size and Amp-Stderr-Size).
   */
  inline: 'Amp-Inline-Output',
  status: 'Amp-Status',
  inputSubject: 'Amp-Input-Subject',
  worker: 'Amp-Worker',
  event: 'Amp-Event',
  seq: 'Amp-Seq',
  outcome: 'Amp-Outcome',
  exitCode: 'Amp-Exit-Code',
  durationMs: 'Amp-Duration-Ms',
  // Optional timings of the call on the worker (result event), for metrics: see docs/metrics.md.
  queueMs: 'Amp-Queue-Ms',
  startMs: 'Amp-Start-Ms',
  runMs: 'Amp-Run-Ms',
  stdoutSize: 'Amp-Stdout-Size',
  stderrSize: 'Amp-Stderr-Size',
  stderrTruncated: 'Amp-Stderr-Truncated',
  error: 'Amp-Error',
  // Asynchronous calls (async-store.ts): the attempts allowed, and where to POST the result.
  maxAttempts: 'Amp-Max-Attempts',
  callbackUrl: 'Amp-Callback-Url',
} as const

export type AcceptStatus = 'accepted' | 'busy' | 'rejected'
/** The listener's ack to a heartbeat of a call it no longer waits for (its caller hung up, or it gave up): stop it. */
export const GONE_STATUS = 'gone'
export type CallEvent = 'heartbeat' | 'stdout' | 'stderr' | 'result'
/**
 * exited: the container ran and exited (with Amp-Exit-Code, 0 or not).
 * timeout: the function's timeout passed and its container was killed.
 * failed: the container could not run, or its output broke a limit (Amp-Error says why).
 */
export type Outcome = 'exited' | 'timeout' | 'failed'

export const HEARTBEAT_INTERVAL_MS = 1000
/** A worker silent for this long is taken for dead. */
export const WORKER_SILENCE_MS = 3500
/** Room left in each NATS message for headers. */
export const HEADER_ROOM = 8192
/** The stderr a call keeps by default (a worker's --max-stderr): the rest is cut, in its result and its log. */
export const DEFAULT_MAX_STDERR = 1024 * 1024
export const MAX_CHUNK = 512 * 1024

/** Header values (and HTTP trailers) must be one line of printable ASCII. */
export function headerValue(text: string): string {
  return text.replace(/[^\x20-\x7e]+/g, ' ').slice(0, 1000)
}

export function chunkSizeFor(maxPayload: number): number {
  return Math.max(1024, Math.min(MAX_CHUNK, maxPayload - HEADER_ROOM))
}

export function* chunks(data: Uint8Array, size: number): Generator<Uint8Array> {
  for (let offset = 0; offset < data.length; offset += size) yield data.subarray(offset, offset + size)
}

/**
 * The headers that describe a call to a worker: the function's settings as they are now (a call
 * keeps them even if the function changes while it waits) and the size of its input.
 */
export function callHeaders(callId: string, spec: StoredFunction, inputSize: number): MsgHdrs {
  const h = headers()
  h.set(HEADER.callId, callId)
  h.set(HEADER.function, spec.name)
  for (const [name, value] of settingHeaders(spec)) h.set(name, value)
  h.set(HEADER.inputSize, String(inputSize))
  return h
}
