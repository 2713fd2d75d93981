/**
 * Where asynchronous calls live (docs/async.md). All of it is JetStream, file storage:
 *
 * - stream AMP_CALLS (work queue): one message per call waiting to run, `amp.v1.async.call.<fn>`;
 *   workers pull it through the durable consumer `amp-workers` only when they have a free slot, and
 *   ack it once the call is finished and recorded.
 * - KV bucket `amp_calls`: the record of each call (state, attempts, timings), key = call id.
 * - object store `amp_call_io`: each call's input (`<id>.in`, deleted once the call is finished)
 *   and output (`<id>.out`, `<id>.err`), so bodies of up to 8 MiB fit whatever NATS's max_payload.
 * - stream AMP_DEAD: one message per call that failed for good, `amp.v1.async.dead.<fn>`.
 * - stream AMP_CALLBACKS (work queue): one message per result to POST to a callback URL, pulled by
 *   listeners through the durable consumer `amp-callbacks`.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from '@nats-io/jetstream'
import {createHash} from 'node:crypto'
import {type KV, Kvm} from '@nats-io/kv'
import {type ObjectStore, Objm} from '@nats-io/obj'
import type {NatsConnection} from '@nats-io/transport-node'

import {jetStreamProblem} from './call-logs.js'
import {AmpError} from './errors.js'
import type {CallRecord, DeadLetter} from './http-contract.js'
import {ensureStream, openWithReplicas, type ReplicasSetting, type StreamSetup, wantedReplicas} from './js-replicas.js'

export const CALL_STREAM = 'AMP_CALLS'
export const ASYNC_CALL_PREFIX = 'amp.v1.async.call'
export const WORKER_CONSUMER = 'amp-workers'
export const DEAD_STREAM = 'AMP_DEAD'
export const DEAD_PREFIX = 'amp.v1.async.dead'
export const CALLBACK_STREAM = 'AMP_CALLBACKS'
export const CALLBACK_PREFIX = 'amp.v1.async.callback'
export const CALLBACK_CONSUMER = 'amp-callbacks'
export const RECORD_BUCKET = 'amp_calls'
export const IO_BUCKET = 'amp_call_io'

export const asyncCallSubject = (fn: string): string => `${ASYNC_CALL_PREFIX}.${fn}`
export const deadSubject = (fn: string): string => `${DEAD_PREFIX}.${fn}`

export interface AsyncSettings {
  /** How long records, outputs and dead letters are kept (KV and object store max age). */
  retentionMs: number
  /** The workers' lease on a call: redelivered to another worker when not renewed for this long. */
  leaseMs: number
  /** Longest read of one stored input or output (30 s unless given; tests use less). */
  readTimeoutMs?: number
  /** JetStream replicas of every stream, bucket and store (js-replicas.ts); `auto` unless given. */
  replicas?: ReplicasSetting
}

const HOUR = 3_600_000
export const DEFAULT_ASYNC_SETTINGS: AsyncSettings = {retentionMs: 24 * HOUR, leaseMs: 30_000}
/** Dead letters are kept longer than results: someone has to look at them. */
const DEAD_LETTER_AGE_MS = 7 * 24 * HOUR
const GIB = 1024 * 1024 * 1024
const NANOS_PER_MS = 1_000_000
/** Callbacks are POSTed this many times at most. */
export const CALLBACK_ATTEMPTS = 5

/** The record as kept in KV: the public record without the result, plus what the result is made of. */
export interface StoredCall extends Omit<CallRecord, 'result'> {
  /** When the latest attempt's container exited: what the result envelope needs besides the outputs. */
  exit?: {exitCode: number; durationMs: number; stderrTruncated: boolean; worker: string}
  /** Renewed by the worker running the call, with its JetStream lease. */
  heartbeatAt?: string
  /** Attempts whose worker stopped before the container finished: not the function's failures. */
  lost?: number
}

/** Stream configurations: exported so docs/async.md and its test can be checked against them. */
export function asyncStreamConfigs(settings: AsyncSettings): Array<Partial<StreamConfig> & {name: string}> {
  return [
    {
      name: CALL_STREAM,
      description: 'amp: asynchronous calls waiting to run (work queue)',
      subjects: [`${ASYNC_CALL_PREFIX}.*`],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      // A full queue refuses new calls (the caller gets 503) instead of dropping queued ones.
      discard: DiscardPolicy.New,
      max_bytes: GIB,
      duplicate_window: 120_000 * NANOS_PER_MS,
    },
    {
      name: DEAD_STREAM,
      description: 'amp: asynchronous calls that failed for good (dead letters)',
      subjects: [`${DEAD_PREFIX}.*`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_age: DEAD_LETTER_AGE_MS * NANOS_PER_MS,
      max_bytes: GIB,
    },
    {
      name: CALLBACK_STREAM,
      description: 'amp: results to POST to callback URLs (work queue)',
      subjects: [`${CALLBACK_PREFIX}.*`],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      discard: DiscardPolicy.New,
      max_age: settings.retentionMs * NANOS_PER_MS,
      max_bytes: GIB,
    },
  ]
}

/** JetStream's side of asynchronous calls, shared by listeners and workers. */
export class AsyncStore {
  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly records: KV,
    readonly io: ObjectStore,
    readonly settings: AsyncSettings,
    /** What open() found or did to each stream (replicas), for the daemon's log. */
    readonly streams: StreamSetup[],
  ) {}

  /**
   * Creates what is missing (streams, buckets, consumers) and opens it all. What exists keeps its
   * settings (an operator may have tuned them, docs/async.md says how), except replicas, which are
   * raised to the `replicas` setting when fewer (docs/deploy.md).
   */
  static async open(nc: NatsConnection, settings: AsyncSettings = DEFAULT_ASYNC_SETTINGS): Promise<AsyncStore> {
    try {
      const jsm = await jetstreamManager(nc, {timeout: 5000})
      const setting = settings.replicas ?? 'auto'
      const replicas = wantedReplicas(nc, setting)
      const streams: StreamSetup[] = []
      for (const config of asyncStreamConfigs(settings)) streams.push(await ensureStream(jsm, config, replicas, setting))
      // The lease is the consumer's ack wait, whoever created it: renewing on another daemon's setting
      // would let JetStream redeliver running calls (shorter) or leave dead workers' calls waiting (longer).
      const ackWait = await ensureConsumer(jsm, CALL_STREAM, WORKER_CONSUMER, settings.leaseMs, 'amp workers: asynchronous calls')
      settings = {...settings, leaseMs: Math.round(ackWait / NANOS_PER_MS) || settings.leaseMs}
      await ensureConsumer(jsm, CALLBACK_STREAM, CALLBACK_CONSUMER, 30_000, 'amp listeners: callbacks to POST')
      const js = jetstream(nc, {timeout: 5000})
      const records = await openWithReplicas(jsm, `KV_${RECORD_BUCKET}`, replicas, setting, (count) =>
        new Kvm(js).create(RECORD_BUCKET, {
          history: 1,
          ttl: settings.retentionMs,
          storage: StorageType.File,
          replicas: count,
          description: 'amp: records of asynchronous calls',
          // Reads go to the stream leader. A direct get may be answered by any replica, and one that is
          // catching up after a restart kept answering "running" for minutes after a call had finished
          // (npm run test:cluster); a worker reading such a copy could run a finished call again.
          allow_direct: false,
        }),
      )
      const io = await openWithReplicas(jsm, `OBJ_${IO_BUCKET}`, replicas, setting, (count) =>
        new Objm(js).create(IO_BUCKET, {
          ttl: settings.retentionMs * NANOS_PER_MS,
          storage: StorageType.File,
          max_bytes: 8 * GIB,
          replicas: count,
          description: 'amp: input and output of asynchronous calls',
        }),
      )
      streams.push(records.setup, io.setup)
      return new AsyncStore(nc, js, jsm, records.opened, io.opened, settings, streams)
    } catch (error) {
      throw new AmpError('service_unavailable', `asynchronous calls need JetStream: ${jetStreamProblem(error)}`, {cause: error})
    }
  }

  async getRecord(callId: string): Promise<{record: StoredCall; revision: number} | undefined> {
    const entry = await this.records.get(callId)
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined
    return {record: entry.json<StoredCall>(), revision: entry.revision}
  }

  async putRecord(record: StoredCall): Promise<void> {
    await this.records.put(record.callId, JSON.stringify(record))
  }

  async putInput(callId: string, input: Uint8Array): Promise<void> {
    await this.io.putBlob({name: `${callId}.in`}, input)
  }

  async getInput(callId: string): Promise<Uint8Array | null> {
    return this.readBlob(`${callId}.in`)
  }

  /**
   * Reads an object. One of a single chunk (most inputs and outputs) is read with two requests to
   * the stream's leader: nats.js's getBlob reads chunks through an ordered consumer, and after a
   * JetStream failover those stalled for a minute and more (npm run test:cluster), holding up
   * workers and status requests. Larger objects go through getBlob.
   */
  private async readBlob(name: string): Promise<Uint8Array | null> {
    const info = await this.io.info(name)
    if (!info || info.deleted) return null
    if (info.chunks <= 1) {
      const chunk = info.size === 0 ? new Uint8Array() : (await this.jsm.streams.getMessage(`OBJ_${IO_BUCKET}`, {last_by_subj: `$O.${IO_BUCKET}.C.${info.nuid}`}))?.data
      // Replaced or deleted meanwhile (its chunk purged, or another one): what getBlob makes of it.
      if (chunk && chunk.length === info.size && sha256Digest(chunk) === info.digest) return chunk
    }
    return this.readBlobChunks(name)
  }

  /**
   * getBlob with a deadline: an object deleted or replaced while it is read (its chunks purged)
   * leaves nats.js waiting forever for them, and a worker or a status request hung with it.
   */
  private async readBlobChunks(name: string): Promise<Uint8Array | null> {
    const ms = this.settings.readTimeoutMs ?? 30_000
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new AmpError('service_unavailable', `reading ${name} from JetStream took over ${ms} ms (deleted meanwhile?)`)), ms)
    })
    try {
      return await Promise.race([this.io.getBlob(name), late])
    } finally {
      clearTimeout(timer)
    }
  }

  async deleteInput(callId: string): Promise<void> {
    await this.io.delete(`${callId}.in`).catch(() => {})
  }

  async putOutput(callId: string, stdout: Uint8Array, stderr: Uint8Array): Promise<void> {
    await this.io.putBlob({name: `${callId}.out`}, stdout)
    await this.io.putBlob({name: `${callId}.err`}, stderr)
  }

  async getOutput(callId: string): Promise<{stdout: Uint8Array; stderr: Uint8Array} | undefined> {
    const [stdout, stderr] = await Promise.all([this.readBlob(`${callId}.out`), this.readBlob(`${callId}.err`)])
    return stdout && stderr ? {stdout, stderr} : undefined
  }

  async publishDeadLetter(letter: DeadLetter): Promise<void> {
    await this.js.publish(deadSubject(letter.function), JSON.stringify(letter), {msgID: `dead-${letter.callId}`})
  }

  async publishCallback(callId: string, fn: string): Promise<void> {
    await this.js.publish(`${CALLBACK_PREFIX}.${fn}`, JSON.stringify({callId}), {msgID: `callback-${callId}`})
  }
}

/** Creates the consumer unless it exists; resolves with its ack wait (nanoseconds). */
async function ensureConsumer(jsm: JetStreamManager, stream: string, name: string, ackWaitMs: number, description: string): Promise<number> {
  try {
    return (await jsm.consumers.info(stream, name)).config.ack_wait ?? ackWaitMs * NANOS_PER_MS
  } catch (error) {
    if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound)) throw error
    const info = await jsm.consumers.add(stream, {
      durable_name: name,
      description,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: ackWaitMs * NANOS_PER_MS,
      // Unlimited: the worker counts attempts itself, against each function's own limit.
      max_deliver: -1,
      max_ack_pending: 10_000,
    })
    return info.config.ack_wait ?? ackWaitMs * NANOS_PER_MS
  }
}

/** An object's digest as the object store writes it: SHA-256=, then base64url with padding. */
function sha256Digest(data: Uint8Array): string {
  return `SHA-256=${createHash('sha256').update(data).digest('base64').replaceAll('+', '-').replaceAll('/', '_')}`
}
