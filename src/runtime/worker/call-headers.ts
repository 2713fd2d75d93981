/**
 * What a call's NATS headers (protocol.ts callHeaders) say about the container to run, checked
 * again on arrival: nothing from NATS is trusted. Shared by the sync worker and the async puller.
 */
import type {MsgHdrs} from '@nats-io/transport-node'

import type {RunSpec} from './container-runner.js'
import {DEFAULT_CPUS, DEFAULT_MEMORY_BYTES, DEFAULT_PIDS_LIMIT} from '../shared/function-spec.js'
import {CALL_ID, HEADER} from '../shared/protocol.js'
import {
  checkCpus,
  checkEnv,
  checkImage,
  checkMemoryBytes,
  checkName,
  checkNetwork,
  checkPidsLimit,
  checkPrestart,
  checkReuseMaxCalls,
  checkTimeoutMs,
  MAX_ENV_BYTES,
} from '../shared/validate.js'

/** What a call's headers say about the container to run (protocol.ts callHeaders): a RunSpec but for the input and the stream sinks. */
export type CallSettings = Omit<RunSpec, 'input' | 'onStdout' | 'onStderr'>

export function parseCallSettings(h: MsgHdrs | undefined): CallSettings {
  if (!h) throw new TypeError('call without headers')
  const callId = h.get(HEADER.callId)
  if (!CALL_ID.test(callId)) throw new TypeError('invalid call id')
  return {
    callId,
    function: checkName(h.get(HEADER.function)),
    image: checkImage(h.get(HEADER.image)),
    network: checkNetwork(h.get(HEADER.network)),
    timeoutMs: checkTimeoutMs(Number(h.get(HEADER.timeoutMs))),
    // Absent from calls of older listeners: those get the default limits.
    memoryBytes: h.has(HEADER.memoryBytes) ? checkMemoryBytes(Number(h.get(HEADER.memoryBytes))) : DEFAULT_MEMORY_BYTES,
    cpus: h.has(HEADER.cpus) ? checkCpus(Number(h.get(HEADER.cpus))) : DEFAULT_CPUS,
    pidsLimit: h.has(HEADER.pidsLimit) ? checkPidsLimit(Number(h.get(HEADER.pidsLimit))) : DEFAULT_PIDS_LIMIT,
    env: h.has(HEADER.env) ? parseEnvHeader(h.get(HEADER.env)) : {},
    ...(h.has(HEADER.prestart) ? {prestart: checkPrestart(Number(h.get(HEADER.prestart)))} : {}),
    // Only the exact `true` turns reuse on: anything else (or nothing) runs a fresh container per call.
    ...(h.get(HEADER.reuse) === 'true' ? {reuse: true} : {}),
    ...(h.has(HEADER.reuseMaxCalls) ? {reuseMaxCalls: checkReuseMaxCalls(Number(h.get(HEADER.reuseMaxCalls)))} : {}),
  }
}

/** The announced size of a call's input: digits only (Number() would take a missing or empty header for 0). */
export function parseInputSize(h: MsgHdrs | undefined): number {
  const text = h?.get(HEADER.inputSize) ?? ''
  if (!/^\d{1,15}$/.test(text)) throw new TypeError('invalid input size')
  return Number(text)
}

/**
 * Decodes Amp-Env (base64 of KEY=VALUE lines) and checks every name and value again: what arrives
 * over NATS is not trusted. Errors name no value (values may be secrets).
 */
export function parseEnvHeader(text: string): Record<string, string> {
  if (text.length > Math.ceil(MAX_ENV_BYTES / 3) * 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new TypeError('invalid Amp-Env header: expected base64')
  }
  const lines = Buffer.from(text, 'base64').toString('utf8')
  if (!lines.endsWith('\n')) throw new TypeError('invalid Amp-Env header: expected KEY=VALUE lines')
  const entries = lines.slice(0, -1).split('\n').map((line) => {
    const eq = line.indexOf('=')
    if (eq <= 0) throw new TypeError('invalid Amp-Env header: expected KEY=VALUE lines')
    return [line.slice(0, eq), line.slice(eq + 1)] as const
  })
  if (new Set(entries.map(([key]) => key)).size !== entries.length) throw new TypeError('invalid Amp-Env header: a name given twice')
  return checkEnv(Object.fromEntries(entries))
}

