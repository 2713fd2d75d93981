/**
 * The CLI's client for the listener's HTTP API (docs/http-api.md): one object for the commands
 * and the library (src/runtime/index.ts). It only delegates: transport.ts sends the requests and
 * turns failures into AmpErrors; each resource has its file (functions, calls, streamed calls,
 * asynchronous calls and dead letters, logs).
 */
import type {FunctionInput, FunctionPatch, FunctionSpec} from '../shared/function-spec.js'
import type {CallAccepted, CallRecord, DeadLetter} from '../shared/http-contract.js'
import type {LogLine} from '../shared/log-query.js'

import {deadLetters, getCall, waitForCall} from './async-calls.js'
import {call, type CallOutcome, invoke, invokeAsync, type InvokeResult} from './calls.js'
import {createFunction, type CreateResult, getFunction, listFunctions, removeFunction, removeFunctions, type RemoveResult, updateFunction} from './functions.js'
import {logs} from './logs.js'
import {callStreamed, type StdoutSink, type StreamOutcome} from './streamed-call.js'
import {type AmpClientOptions, Transport} from './transport.js'

export {API_PREFIX, RESULT_MEDIA_TYPE} from '../shared/http-contract.js'
export {CALL_WAIT_MS, finalResult} from './async-calls.js'
export type {CallOutcome, InvokeResult} from './calls.js'
export type {CreateResult, RemoveResult} from './functions.js'
export type {StdoutSink, StreamedCall, StreamOutcome} from './streamed-call.js'
export type {AmpClientOptions} from './transport.js'

export class AmpClient {
  readonly server: string
  private readonly transport: Transport

  constructor(options: AmpClientOptions) {
    this.transport = new Transport(options)
    this.server = this.transport.server
  }

  createFunction(name: string, input: FunctionInput, options: {replace?: boolean} = {}): Promise<CreateResult> {
    return createFunction(this.transport, name, input, options)
  }

  getFunction(name: string): Promise<FunctionSpec> {
    return getFunction(this.transport, name)
  }

  /**
   * Changes some settings of a function in place (PATCH). Calls already running finish with the
   * settings they started with; the next call uses the new ones.
   */
  updateFunction(name: string, patch: FunctionPatch): Promise<FunctionSpec> {
    return updateFunction(this.transport, name, patch)
  }

  listFunctions(): Promise<FunctionSpec[]> {
    return listFunctions(this.transport)
  }

  removeFunction(name: string): Promise<FunctionSpec> {
    return removeFunction(this.transport, name)
  }

  /** Removes each function that exists and reports the names that did not; all names are checked first. */
  removeFunctions(names: string[]): Promise<RemoveResult> {
    return removeFunctions(this.transport, names)
  }

  /** Calls a function and waits for its whole outcome (that of its asynchronous call, for a fire-and-forget function). */
  invoke(name: string, input: Buffer): Promise<InvokeResult> {
    return invoke(this.transport, name, input)
  }

  /** Calls a function asynchronously: resolves with the call id once the listener has durably queued the call. */
  invokeAsync(name: string, input: Buffer, options: {callbackUrl?: string} = {}): Promise<CallAccepted> {
    return invokeAsync(this.transport, name, input, options)
  }

  /** Sends one call and returns how it was answered: a result (sync), or 202 with a call id. */
  call(name: string, input: Buffer, options: {async?: boolean; callbackUrl?: string} = {}): Promise<CallOutcome> {
    return call(this.transport, name, input, options)
  }

  /** Calls a function with `Prefer: stream`: its stdout goes to `sink` as the function writes it. */
  callStreamed(name: string, input: Buffer, sink: StdoutSink): Promise<StreamOutcome> {
    return callStreamed(this.transport, name, input, sink)
  }

  /** The record of an asynchronous call; with waitMs the listener holds the answer until it is final or the wait passes. */
  getCall(callId: string, options: {waitMs?: number} = {}): Promise<CallRecord> {
    return getCall(this.transport, callId, options)
  }

  /** Waits until an asynchronous call is final and returns its record (function_timeout after timeoutMs). */
  waitForCall(callId: string, options: {timeoutMs: number}): Promise<CallRecord> {
    return waitForCall(this.transport, callId, options)
  }

  /** Asynchronous calls that failed for good, newest last. */
  deadLetters(query: {function?: string; limit?: number} = {}): Promise<DeadLetter[]> {
    return deadLetters(this.transport, query)
  }

  /** A function's log lines, oldest first; with follow they go on until the caller stops iterating. */
  logs(name: string, query: {callId?: string; since?: string; follow?: boolean} = {}): Promise<AsyncIterable<LogLine>> {
    return logs(this.transport, name, query)
  }
}
