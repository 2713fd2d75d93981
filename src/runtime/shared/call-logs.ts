/**
 * Per-call function logs (docs/operations.md "Logs", docs/protocol.md "Logs"). Each line a function writes on
 * stderr becomes one NATS message on `amp.v1.logs.<function>.<callId>`, which the JetStream stream
 * AMP_LOGS keeps within its limits. Workers publish with core NATS (no ack per line), so logging
 * never slows or fails a call; the logs are best effort. Listeners read them with an ordered consumer.
 */
import {
  DiscardPolicy,
  type JetStreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from '@nats-io/jetstream'
import {headers, type MsgHdrs, type NatsConnection} from '@nats-io/transport-node'

import {formatBytes} from './bytes.js'
import type {LogLine} from './log-query.js'
import {DEFAULT_MAX_STDERR} from './protocol.js'
import {AmpError} from './errors.js'
import {ensureStream, raiseReplicas, type ReplicasSetting, type StreamSetup, logStreamSetup, streamFields, streamInfo, wantedReplicas} from './js-replicas.js'
import type {Logger} from './logger.js'
import {HEADER} from './protocol.js'

export const LOG_STREAM = 'AMP_LOGS'
export const LOG_SUBJECT_PREFIX = 'amp.v1.logs'
/** Set (to "true") on the one line that says a call's log was cut. */
export const LOG_TRUNCATED_HEADER = 'Amp-Log-Truncated'

const GIB = 1024 * 1024 * 1024
/** The stream's limits when a worker creates it; the oldest lines go first. */
export const LOG_LIMITS = {
  maxAgeMs: 24 * 3_600_000,
  maxBytes: GIB,
  maxMessageBytes: 64 * 1024,
} as const
/** Longest piece of one line per message: longer lines are split, leaving room for the headers. */
export const MAX_LINE_BYTES = LOG_LIMITS.maxMessageBytes - 4096
/** stderr published per call at most, as much as a call's result keeps, so one chatty call cannot evict every other log. */
export const MAX_CALL_LOG_BYTES = DEFAULT_MAX_STDERR
/** How long JetStream API requests may take: a worker must start, and a call run, without JetStream. */
const API_TIMEOUT_MS = 5000
/** A worker that could not set the stream up tries again this often (and after each reconnect). */
const RETRY_SETUP_MS = 60_000
/** Reading without --follow: stop when no line came for this long (lines may age out while we read). */
const READ_IDLE_MS = 5000

export const logSubject = (fn: string, callId: string): string => `${LOG_SUBJECT_PREFIX}.${fn}.${callId}`
/** The subject filter for one call, or every call of a function. */
export const logFilter = (fn: string, callId?: string): string => logSubject(fn, callId ?? '*')

const NANOS_PER_MS = 1_000_000

export function logStreamConfig(): Partial<StreamConfig> & {name: string} {
  return {
    name: LOG_STREAM,
    description: 'amp: stderr of function calls, one message per line (amp function logs)',
    subjects: [`${LOG_SUBJECT_PREFIX}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: LOG_LIMITS.maxAgeMs * NANOS_PER_MS,
    max_bytes: LOG_LIMITS.maxBytes,
    max_msg_size: LOG_LIMITS.maxMessageBytes,
  }
}

/** Why JetStream cannot keep logs, in words that say what to do. */
export function jetStreamProblem(error: unknown): string {
  const e = error as Error
  if (e?.name === 'JetStreamNotEnabled' || (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.JetStreamNotEnabledForAccount)) {
    return 'the NATS server has no JetStream: start nats-server with -js (and a store dir, -sd DIR)'
  }
  return e?.message ?? String(error)
}

/**
 * Creates the stream when it is missing. An existing stream keeps its limits: an operator may have
 * changed them (nats stream edit AMP_LOGS --max-age 72h); only a missing subject is added back, and
 * fewer replicas than the setting asks for are raised (js-replicas.ts).
 */
export async function ensureLogStream(nc: NatsConnection, timeoutMs = API_TIMEOUT_MS, setting: ReplicasSetting = 'auto'): Promise<StreamSetup> {
  const jsm: JetStreamManager = await jetstreamManager(nc, {timeout: timeoutMs})
  const wanted = logStreamConfig()
  const replicas = wantedReplicas(nc, setting)
  const info = await streamInfo(jsm, LOG_STREAM)
  if (info) {
    const subjects = info.config.subjects ?? []
    if (!subjects.includes(wanted.subjects![0])) {
      await jsm.streams.update(LOG_STREAM, {...info.config, subjects: [...subjects, ...wanted.subjects!]})
      info.config.subjects = [...subjects, ...wanted.subjects!]
    }
    return raiseReplicas(jsm, info, replicas, setting)
  }
  return ensureStream(jsm, wanted, replicas, setting)
}

/** Cuts a byte stream into lines (without "\n" or "\r\n"); a line longer than `max` bytes goes out in pieces. */
export class LineSplitter {
  private pending = Buffer.alloc(0)
  /** Part of the current line already went out. */
  private split = false

  constructor(
    private readonly max: number,
    private readonly emit: (line: Buffer) => void,
  ) {}

  write(chunk: Buffer): void {
    let start = 0
    while (start <= chunk.length) {
      const newline = chunk.indexOf(0x0a, start)
      this.add(chunk.subarray(start, newline === -1 ? chunk.length : newline))
      if (newline === -1) return
      this.endLine()
      start = newline + 1
    }
  }

  /** The end of the stream: a last line without a newline still counts. */
  end(): void {
    if (this.pending.length > 0) this.endLine()
  }

  private add(part: Buffer): void {
    if (part.length === 0) return
    let buffer = this.pending.length === 0 ? part : Buffer.concat([this.pending, part])
    while (buffer.length > this.max) {
      // Cut on a UTF-8 character boundary, so every piece decodes on its own.
      let cut = this.max
      while (cut > this.max - 4 && (buffer[cut] & 0xc0) === 0x80) cut--
      this.emit(buffer.subarray(0, cut))
      this.split = true
      buffer = buffer.subarray(cut)
    }
    this.pending = Buffer.from(buffer)
  }

  private endLine(): void {
    let line = this.pending
    if (line.at(-1) === 0x0d) line = line.subarray(0, -1)
    if (line.length > 0 || !this.split) this.emit(line)
    this.pending = Buffer.alloc(0)
    this.split = false
  }
}

/** Where the container runner hands a call's stderr, chunk by chunk, as it arrives. */
export interface CallLog {
  write(chunk: Buffer): void
  /** The call is over: publishes a last line that had no newline. */
  end(): void
}

/** The worker's side: publishes each call's stderr lines. Never throws and never waits. */
export class CallLogPublisher {
  private streamReady = false
  private warned = false
  private retry?: NodeJS.Timeout

  constructor(
    private readonly nc: NatsConnection,
    private readonly workerId: string,
    private readonly log: Logger,
    private readonly options: {maxCallBytes?: number; timeoutMs?: number; replicas?: ReplicasSetting} = {},
  ) {}

  /** Makes sure the stream exists; when it cannot, warns once and tries again later. Never throws. */
  async start(): Promise<void> {
    await this.setup()
    void this.watchReconnects()
  }

  get ready(): boolean {
    return this.streamReady
  }

  private async setup(): Promise<void> {
    if (this.streamReady || this.nc.isClosed()) return
    try {
      const result = await ensureLogStream(this.nc, this.options.timeoutMs, this.options.replicas)
      this.streamReady = true
      clearInterval(this.retry)
      this.log.info(this.warned ? 'per-call logs are on again' : 'per-call logs are kept in JetStream', streamFields(result))
      logStreamSetup({streams: [result]}, this.log)
    } catch (error) {
      if (!this.warned) {
        this.log.warn('per-call logs are off: calls still run, but amp function logs will show nothing', {
          stream: LOG_STREAM,
          error: jetStreamProblem(error),
        })
      }
      this.warned = true
      this.retry ??= setInterval(() => void this.setup(), RETRY_SETUP_MS).unref()
    }
  }

  private async watchReconnects(): Promise<void> {
    try {
      for await (const status of this.nc.status()) {
        if (status.type === 'reconnect') await this.setup()
      }
    } catch {
      // The status stream only ends with the connection.
    } finally {
      clearInterval(this.retry)
    }
  }

  forCall(call: {callId: string; function: string}): CallLog {
    const subject = logSubject(call.function, call.callId)
    const max = this.options.maxCallBytes ?? MAX_CALL_LOG_BYTES
    const lineHeaders = this.headers(call)
    let sent = 0
    let cut = false
    const publish = (line: Buffer, h: MsgHdrs) => {
      try {
        this.nc.publish(subject, line, {headers: h})
      } catch {
        // Closed or over the reconnect buffer: a lost log line must not cost the call.
      }
    }
    const splitter = new LineSplitter(MAX_LINE_BYTES, (line) => {
      if (cut) return
      if (sent + line.length > max) {
        cut = true
        const h = this.headers(call)
        h.set(LOG_TRUNCATED_HEADER, 'true')
        publish(Buffer.from(`[amp] log cut here: the call wrote more than ${formatBytes(max)} on stderr`), h)
        return
      }
      sent += line.length
      publish(line, lineHeaders)
    })
    return {
      write: (chunk) => splitter.write(chunk),
      end: () => splitter.end(),
    }
  }

  private headers(call: {callId: string; function: string}): MsgHdrs {
    const h = headers()
    h.set(HEADER.callId, call.callId)
    h.set(HEADER.function, call.function)
    h.set(HEADER.worker, this.workerId)
    return h
  }
}

/** One line of a function's log, as the listener serves it (NDJSON) and `amp function logs --json` prints it. */
export type {LogLine} from './log-query.js'

export interface LogQuery {
  function: string
  callId?: string
  /** Only lines from this time on. */
  since?: Date
  /** Keep the cursor open and deliver new lines as they come. */
  follow?: boolean
}

export interface LogCursor {
  lines: AsyncIterable<LogLine>
  /** Ends `lines` (idempotent). */
  close(): void
}

function toLogLine(msg: JsMsg, fn: string): LogLine {
  const h = msg.headers
  const line: LogLine = {
    time: msg.time.toISOString(),
    function: h?.get(HEADER.function) || fn,
    callId: h?.get(HEADER.callId) || msg.subject.split('.').at(-1) || '',
    worker: h?.get(HEADER.worker) ?? '',
    line: Buffer.from(msg.data).toString('utf8'),
  }
  if (h?.get(LOG_TRUNCATED_HEADER) === 'true') line.truncated = true
  return line
}

/** The listener's side: reads a function's log lines from the stream. */
export class CallLogReader {
  constructor(
    private readonly nc: NatsConnection,
    private readonly options: {timeoutMs?: number; idleMs?: number} = {},
  ) {}

  /**
   * Opens a cursor on the lines of one function (or one call). Fails with service_unavailable when
   * JetStream or the stream is missing; once it returns, `lines` only ends by close() or, without
   * follow, when every line there was has been delivered.
   */
  async open(query: LogQuery): Promise<LogCursor> {
    const js = jetstream(this.nc, {timeout: this.options.timeoutMs ?? API_TIMEOUT_MS})
    let consumer
    try {
      consumer = await js.consumers.get(LOG_STREAM, {
        filter_subjects: logFilter(query.function, query.callId),
        ...(query.since ? {opt_start_time: query.since.toISOString()} : {}),
      })
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) {
        throw new AmpError('service_unavailable', `no function logs are kept: the JetStream stream ${LOG_STREAM} does not exist`, {
          suggestions: ['a worker creates it when it starts on a NATS server with JetStream (nats-server -js); see docs/operations.md "Logs"'],
        })
      }
      throw new AmpError('service_unavailable', `cannot read function logs: ${jetStreamProblem(error)}`, {cause: error})
    }
    const pending = (await consumer.info(true)).num_pending
    const messages = query.follow || pending > 0 ? await consumer.consume({max_messages: 256}) : undefined
    let closed = false
    const close = () => {
      if (closed) return
      closed = true
      messages?.stop()
      // The server drops an idle ordered consumer by itself after a while; do not leave it until then.
      consumer.delete().catch(() => {})
    }
    const idleMs = this.options.idleMs ?? READ_IDLE_MS
    const lines = async function* (): AsyncGenerator<LogLine> {
      if (!messages) return close()
      let idle: NodeJS.Timeout | undefined
      const arm = () => {
        if (query.follow) return
        clearTimeout(idle)
        idle = setTimeout(close, idleMs)
      }
      try {
        arm()
        for await (const msg of messages) {
          yield toLogLine(msg, query.function)
          if (!query.follow && msg.info.pending === 0) break
          arm()
        }
      } finally {
        clearTimeout(idle)
        close()
      }
    }
    return {lines: lines(), close}
  }
}
