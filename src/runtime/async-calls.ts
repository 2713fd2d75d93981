/**
 * The listener's side of asynchronous calls (docs/async.md): queues a call durably before answering
 * 202, and reads back its record, its result and the dead letters.
 */
import {DeliverPolicy} from '@nats-io/jetstream'
import {Empty} from '@nats-io/transport-node'

import {
  type AsyncSettings,
  AsyncStore,
  asyncCallSubject,
  DEAD_PREFIX,
  DEAD_STREAM,
  deadSubject,
  DEFAULT_ASYNC_SETTINGS,
  FINAL_STATES,
  type StoredCall,
} from './async-store.js'
import {jetStreamProblem} from './call-logs.js'
import {AmpError, isAmpError} from './errors.js'
import type {StoredFunction} from './function-spec.js'
import {API_PREFIX, type AsyncAccepted, type CallRecord, type DeadLetter, toEnvelope} from './http-contract.js'
import type {Logger} from './logger.js'
import type {NatsConnection} from './nats.js'
import {CALL_ID, callHeaders, HEADER} from './protocol.js'

/** The longest a status request may wait for a call to finish. */
export const MAX_WAIT_MS = 60_000
export const MAX_DEAD_LETTERS = 1000

export const callUrl = (callId: string): string => `${API_PREFIX}/calls/${callId}`

export class AsyncCalls {
  private store?: Promise<AsyncStore>

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly settings: AsyncSettings = DEFAULT_ASYNC_SETTINGS,
  ) {}

  /** JetStream, set up on first use; a failure is not kept, so the next call tries again. */
  open(): Promise<AsyncStore> {
    this.store ??= AsyncStore.open(this.nc, this.settings).catch((error: unknown) => {
      this.store = undefined
      throw error
    })
    return this.store
  }

  /** Stores the input and the record, then queues the call; resolves once JetStream has it on disk. */
  async enqueue(callId: string, spec: StoredFunction, input: Uint8Array, callbackUrl?: string): Promise<AsyncAccepted> {
    const store = await this.open()
    const record: StoredCall = {
      callId,
      function: spec.name,
      state: 'queued',
      attempts: 0,
      maxAttempts: spec.retries + 1,
      createdAt: new Date().toISOString(),
      deadLetter: false,
      ...(callbackUrl ? {callbackUrl} : {}),
    }
    const h = callHeaders(callId, spec, input.length)
    h.set(HEADER.maxAttempts, String(record.maxAttempts))
    if (callbackUrl) h.set(HEADER.callbackUrl, callbackUrl)
    try {
      await store.putInput(callId, input)
      await store.putRecord(record)
      // The call id doubles as JetStream's message id: a publish retried after a lost ack is not queued twice.
      await store.js.publish(asyncCallSubject(spec.name), Empty, {headers: h, msgID: callId})
    } catch (error) {
      void store.deleteInput(callId)
      void store.records.delete(callId).catch(() => {})
      throw new AmpError('service_unavailable', `could not queue the call: ${jetStreamProblem(error)}`, {cause: error})
    }
    return {callId, function: spec.name, state: 'queued', statusUrl: callUrl(callId)}
  }

  /** The call's record; with `waitMs`, once it is final or that long has passed. */
  async get(callId: string, waitMs = 0): Promise<CallRecord> {
    if (!CALL_ID.test(callId)) throw notFound(callId)
    const store = await this.reachable()
    let record = (await store.getRecord(callId))?.record
    if (!record) throw notFound(callId)
    if (waitMs > 0 && !FINAL_STATES.has(record.state)) record = (await this.waitFinal(store, callId, waitMs)) ?? record
    return this.publicRecord(store, record)
  }

  /** The dead letters, oldest first: the last `limit` of them, of one function or all. */
  async deadLetters(fn: string | undefined, limit: number): Promise<DeadLetter[]> {
    const store = await this.reachable()
    const info = await store.jsm.streams.info(DEAD_STREAM)
    if (info.state.messages === 0) return []
    const consumer = await store.js.consumers.get(DEAD_STREAM, {
      // One subject as a string: a list needs nats-server 2.10.
      filter_subjects: fn ? deadSubject(fn) : `${DEAD_PREFIX}.*`,
      deliver_policy: DeliverPolicy.All,
    })
    const letters: DeadLetter[] = []
    let pending = (await consumer.info()).num_pending
    while (pending > 0) {
      const batch = await consumer.fetch({max_messages: Math.min(pending, 500), expires: 2000})
      let got = 0
      for await (const msg of batch) {
        got++
        letters.push(msg.json<DeadLetter>())
        if (letters.length > limit) letters.shift()
        pending = msg.info.pending
      }
      if (got === 0) break
    }
    return letters
  }

  /** Follows the record in KV until it is final; undefined when the wait ends first. */
  private async waitFinal(store: AsyncStore, callId: string, waitMs: number): Promise<StoredCall | undefined> {
    const watcher = await store.records.watch({key: callId})
    const timer = setTimeout(() => watcher.stop(), waitMs)
    let latest: StoredCall | undefined
    try {
      for await (const entry of watcher) {
        if (entry.operation !== 'PUT') continue
        latest = entry.json<StoredCall>()
        if (FINAL_STATES.has(latest.state)) break
      }
    } finally {
      clearTimeout(timer)
      watcher.stop()
    }
    return latest
  }

  /** The record as the API shows it: with the result once final, without the worker's bookkeeping. */
  async publicRecord(store: AsyncStore, stored: StoredCall): Promise<CallRecord> {
    const {exit, heartbeatAt: _heartbeat, lost: _lost, ...record} = stored
    if (!FINAL_STATES.has(stored.state) || !exit) return record
    const output = await store.getOutput(stored.callId)
    if (!output) return record
    return {
      ...record,
      result: toEnvelope({
        callId: stored.callId,
        function: stored.function,
        exitCode: exit.exitCode,
        stdout: Buffer.from(output.stdout),
        stderr: Buffer.from(output.stderr),
        stderrTruncated: exit.stderrTruncated,
        durationMs: exit.durationMs,
        worker: exit.worker,
      }),
    }
  }

  private async reachable(): Promise<AsyncStore> {
    try {
      return await this.open()
    } catch (error) {
      this.log.warn('asynchronous calls unavailable', {error: (error as Error).message})
      throw isAmpError(error) ? error : new AmpError('service_unavailable', jetStreamProblem(error))
    }
  }
}

function notFound(callId: string): AmpError {
  return new AmpError('call_not_found', `no asynchronous call ${JSON.stringify(callId.slice(0, 80))}: unknown, or older than the retention time`)
}
