/**
 * The listener's side of asynchronous calls (docs/async.md): queues a call durably before answering
 * 202, and reads back its record, its result and the dead letters.
 */
import {DeliverPolicy} from '@nats-io/jetstream'
import {Empty, type MsgHdrs} from '@nats-io/transport-node'

import {
  type AsyncSettings,
  AsyncStore,
  asyncCallSubject,
  CALL_STREAM,
  DEAD_PREFIX,
  DEAD_STREAM,
  deadSubject,
  DEFAULT_ASYNC_SETTINGS,
  type StoredCall,
  WORKER_CONSUMER,
} from '../shared/async-store.js'
import {jetStreamProblem} from '../shared/call-logs.js'
import {logStreamSetup} from '../shared/js-replicas.js'
import {AmpError, isAmpError} from '../shared/errors.js'
import type {StoredFunction} from '../shared/function-spec.js'
import {API_PREFIX, type CallAccepted, type CallRecord, type DeadLetter, FINAL_STATES, toEnvelope} from '../shared/http-contract.js'
import type {Logger} from '../shared/logger.js'
import type {AsyncQueueState} from '../shared/metrics.js'
import {redactUrls} from '../shared/credentials.js'
import {isNoResponders, type NatsConnection} from '../shared/nats.js'
import {CALL_ID, callHeaders, HEADER} from '../shared/protocol.js'
import {untilStored} from './store-retry.js'

/** The longest a status request may wait for a call to finish. */
export const MAX_WAIT_MS = 60_000
/** A publish whose acknowledgement does not come within this is sent again (same message id). */
const PUBLISH_TIMEOUT_MS = 3000
const PUBLISH_ATTEMPTS = 3
/** How long queueing a call may keep trying while JetStream elects leaders (store-retry.ts); past it, the caller gets 503. */
const STORE_DEADLINE_MS = 15_000
const STORE_RETRY_MS = 250

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
    this.store ??= AsyncStore.open(this.nc, this.settings).then(
      (store) => {
        logStreamSetup(store, this.log)
        return store
      },
      (error: unknown) => {
        this.store = undefined
        throw error
      },
    )
    return this.store
  }

  /** Stores the input and the record, then queues the call; resolves once JetStream has it on disk. */
  async enqueue(callId: string, spec: StoredFunction, input: Uint8Array, callbackUrl?: string): Promise<CallAccepted> {
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
    const retry = {deadline: Date.now() + STORE_DEADLINE_MS, jetStream: store.nc.info?.jetstream === true, retryMs: STORE_RETRY_MS}
    try {
      await untilStored(() => store.putInput(callId, input), retry)
      await untilStored(() => store.putRecord(record), retry)
      await untilStored(() => this.publish(store, asyncCallSubject(spec.name), h, callId), retry)
    } catch (error) {
      void store.deleteInput(callId)
      void store.records.delete(callId).catch(() => {})
      // On a server with JetStream, no responders is a stream without a leader, not a missing -js.
      const why = retry.jetStream && isNoResponders(error) ? `JetStream found no leader for amp's streams within ${STORE_DEADLINE_MS / 1000} s (a NATS node lost?)` : jetStreamProblem(error)
      throw new AmpError('service_unavailable', `could not queue the call: ${why}`, {cause: error})
    }
    return {callId, function: spec.name, state: 'queued', statusUrl: callUrl(callId)}
  }

  /**
   * Queues the call. The call id doubles as JetStream's message id, so when an acknowledgement is
   * lost the publish is sent again without queueing the call twice; only when every try fails does
   * the caller get 503 (and the call may then still be queued: a worker drops it, see async-worker.ts).
   */
  private async publish(store: AsyncStore, subject: string, h: MsgHdrs, callId: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await store.js.publish(subject, Empty, {headers: h, msgID: callId, timeout: PUBLISH_TIMEOUT_MS})
        return
      } catch (error) {
        if (attempt >= PUBLISH_ATTEMPTS || isNoResponders(error)) throw error
      }
    }
  }

  /** The call's record; with `waitMs`, once it is final, that long has passed, or `signal` aborts (the caller hung up). */
  async get(callId: string, waitMs = 0, signal?: AbortSignal): Promise<CallRecord> {
    if (!CALL_ID.test(callId)) throw notFound(callId)
    const store = await this.reachable()
    let record = (await store.getRecord(callId))?.record
    if (!record) throw notFound(callId)
    if (waitMs > 0 && !FINAL_STATES.has(record.state)) record = (await this.waitFinal(store, callId, waitMs, signal)) ?? record
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
    try {
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
    } finally {
      // An ordered consumer is ephemeral, but would linger on the server until its inactivity timeout.
      await consumer.delete().catch(() => {})
    }
    return letters
  }

  /** How many calls wait, run and lie dead (metrics); NaN for what cannot be read. */
  async queueState(): Promise<AsyncQueueState> {
    try {
      const store = await this.open()
      const [consumer, dead] = await Promise.all([store.jsm.consumers.info(CALL_STREAM, WORKER_CONSUMER), store.jsm.streams.info(DEAD_STREAM)])
      return {waiting: consumer.num_pending, taken: consumer.num_ack_pending, deadLetters: dead.state.messages}
    } catch {
      return {waiting: Number.NaN, taken: Number.NaN, deadLetters: Number.NaN}
    }
  }

  /** Follows the record in KV until it is final; undefined when the wait ends first. */
  private async waitFinal(store: AsyncStore, callId: string, waitMs: number, signal?: AbortSignal): Promise<StoredCall | undefined> {
    const watcher = await store.records.watch({key: callId})
    const timer = setTimeout(() => watcher.stop(), waitMs)
    const stop = () => watcher.stop()
    signal?.addEventListener('abort', stop, {once: true})
    if (signal?.aborted) stop()
    let latest: StoredCall | undefined
    try {
      for await (const entry of watcher) {
        if (entry.operation !== 'PUT') continue
        latest = entry.json<StoredCall>()
        if (FINAL_STATES.has(latest.state)) break
      }
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', stop)
      watcher.stop()
    }
    return latest
  }

  /** The record as the API shows it: with the result once final, without the worker's bookkeeping. */
  async publicRecord(store: AsyncStore, stored: StoredCall): Promise<CallRecord> {
    const {exit, heartbeatAt: _heartbeat, lost: _lost, ...rest} = stored
    // Credentials in a callback URL are the caller's secret: the record shows the URL without them.
    const record = rest.callbackUrl ? {...rest, callbackUrl: redactUrls(rest.callbackUrl)} : rest
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
