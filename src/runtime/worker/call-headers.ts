/**
 * What a call's NATS headers (protocol.ts callHeaders) say about the container to run, checked
 * again on arrival: nothing from NATS is trusted. Shared by the sync worker and the async puller.
 */
import type {MsgHdrs} from '@nats-io/transport-node'

import type {RunSpec} from './container-runner.js'
import {settingsFromHeaders} from '../shared/function-fields.js'
import {CALL_ID, HEADER} from '../shared/protocol.js'
import {checkName} from '../shared/validate.js'

export {parseEnvHeader} from '../shared/function-fields.js'

/** What a call's headers say about the container to run (protocol.ts callHeaders): a RunSpec but for the input and the stream sinks. */
export type CallSettings = Omit<RunSpec, 'input' | 'onStdout' | 'onStderr'>

export function parseCallSettings(h: MsgHdrs | undefined): CallSettings {
  if (!h) throw new TypeError('call without headers')
  const callId = h.get(HEADER.callId)
  if (!CALL_ID.test(callId)) throw new TypeError('invalid call id')
  const fn = checkName(h.get(HEADER.function))
  // A setting's absent header is its default, the worker's, or a refusal: function-fields.ts says which.
  const settings = settingsFromHeaders((name) => (h.has(name) ? h.get(name) : undefined))
  return {callId, function: fn, ...settings} as CallSettings
}

/** The announced size of a call's input: digits only (Number() would take a missing or empty header for 0). */
export function parseInputSize(h: MsgHdrs | undefined): number {
  const text = h?.get(HEADER.inputSize) ?? ''
  if (!/^\d{1,15}$/.test(text)) throw new TypeError('invalid input size')
  return Number(text)
}
