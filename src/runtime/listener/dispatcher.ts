import {Empty, errors, headers, type Msg, type Subscription} from '@nats-io/transport-node'

import {AmpError} from '../shared/errors.js'
import type {StoredFunction} from '../shared/function-spec.js'
import type {CallResult} from '../shared/http-contract.js'
import type {CallPhases} from '../shared/metrics.js'
import {isNoResponders, type NatsConnection} from '../shared/nats.js'
import {
  callHeaders,
  callSubject,
  chunks,
  chunkSizeFor,
  GONE_STATUS,
  HEADER,
  REPLY_SUBJECT_PREFIX,
  replySubject,
  warmSubject,
  WORKER_SILENCE_MS,
} from '../shared/protocol.js'
import {formatDuration} from '../shared/validate.js'
import {BusyLines, type LinePlace, pause} from './busy-lines.js'

export type {CallResult}

export interface DispatcherOptions {
  /** How long a worker has to take a call before the listener answers 503. */
  acceptTimeoutMs?: number
  /** Most times a call is offered again when the worker that got it is busy; no limit unless given (the wait deadline bounds it). */
  busyRetries?: number
  workerSilenceMs?: number
  /**
   * Added to the function's timeout for time spent waiting for a worker with room: in a worker's
   * backlog, or in this listener while every worker answers busy (that wait ends at the function's
   * timeout or this, whichever is shorter).
   */
  queueAllowanceMs?: number
  /** Gets the worker's timings of each call that ran (result headers), for metrics. */
  onPhases?: (fn: string, phases: CallPhases) => void
  /** False while the NATS connection is known to be down (status events): calls are then refused at once. */
  connected?: () => boolean
}

const DEFAULTS = {acceptTimeoutMs: 5000, busyRetries: Number.POSITIVE_INFINITY, workerSilenceMs: WORKER_SILENCE_MS, queueAllowanceMs: 60_000}
/**
 * Between two offers of a call that found its worker busy: 50 ms doubling to 250 ms. Each offer goes
 * to a random worker of the queue group, so a short pause soon finds one that has room; and only the
 * first call of a line offers (busy-lines.ts), so the offers stay few however many calls wait.
 */
const busyPauseMs = (attempt: number) => Math.min(50 * 2 ** attempt, 250)
const CHUNK_TIMEOUT_MS = 10_000
const LOST_NATS = 'this listener has lost NATS and is reconnecting: try again shortly'

/**
 * The call's fate is unknown: its worker went silent, or output went missing on the way. Still a
 * 502 (function_failed_to_run); a streamed answer says `Amp-Outcome: lost` in its trailer.
 */
export class CallLost extends AmpError {
  constructor(message: string) {
    super('function_failed_to_run', message)
  }
}

export interface CallOptions {
  /**
   * Streams stdout (the call carries Amp-Stream): each chunk goes here as it arrives instead of
   * into the result, whose stdout is then empty. The ack to the worker, its flow control, waits
   * for the returned promise. `worker` is the id of the worker that runs the call. Must not throw.
   */
  onStdout?: (chunk: Uint8Array, worker: string) => Promise<void> | void
}

/** One call waiting for its worker: collects the output chunks and the final result event. */
class PendingCall {
  readonly stdout: Uint8Array[] = []
  readonly stderr: Uint8Array[] = []
  lastHeard = Date.now()
  /** Set once a worker took the call; from then on its silence means it died. */
  accepted = false
  /** Set once the call ended either way: an offer still under way stops there. */
  settled = false
  worker = ''
  /** Bytes given to the stdout sink (streamed calls). */
  streamed = 0
  private streamedSeq = 0
  resolve!: (result: Msg) => void
  reject!: (error: Error) => void
  readonly done = new Promise<Msg>((resolve, reject) => {
    this.resolve = (msg) => {
      this.settled = true
      resolve(msg)
    }
    this.reject = (error) => {
      this.settled = true
      reject(error)
    }
  })

  constructor(readonly onStdout?: CallOptions['onStdout']) {
    // Rejections are read through `done`; this keeps one that lands before anyone awaits from being "unhandled".
    this.done.catch(() => {})
  }

  onEvent(msg: Msg): void {
    this.lastHeard = Date.now()
    const h = msg.headers
    const event = h?.get(HEADER.event)
    if (event === 'stdout' && this.onStdout) {
      this.stream(msg)
      return
    }
    if (event === 'stdout' || event === 'stderr') {
      const parts = this[event]
      if (Number(h?.get(HEADER.seq)) !== parts.length) this.reject(new CallLost(`output of the call arrived out of order (${event})`))
      parts.push(msg.data)
    } else if (event === 'result') {
      this.onResult(msg)
    }
    if (msg.reply) msg.respond()
  }

  /** The call's result: a `result` event, or the worker's answer to a quick call. */
  onResult(msg: Msg): void {
    if (msg.headers?.get(HEADER.inline) === 'true') this.takeInline(msg)
    this.resolve(msg)
  }

  /** A result that carries the output itself: the stdout not streamed, then the stderr (sizes in its headers). */
  private takeInline(msg: Msg): void {
    const stdoutSize = this.onStdout ? 0 : Number(msg.headers?.get(HEADER.stdoutSize))
    if (!Number.isInteger(stdoutSize) || stdoutSize < 0 || stdoutSize > msg.data.length) return
    if (stdoutSize > 0) this.stdout.push(msg.data.subarray(0, stdoutSize))
    if (msg.data.length > stdoutSize) this.stderr.push(msg.data.subarray(stdoutSize))
  }

  /** A stdout chunk of a streamed call: to the sink, acked once the sink has taken it. */
  private stream(msg: Msg): void {
    if (Number(msg.headers?.get(HEADER.seq)) !== this.streamedSeq++) {
      this.reject(new CallLost('output of the call arrived out of order (stdout)'))
    }
    this.streamed += msg.data.length
    const ack = () => {
      this.lastHeard = Date.now()
      if (msg.reply) msg.respond()
    }
    // Chunks after the call settled (caller gone) are acked at once; the heartbeat tells the worker to stop.
    if (this.settled) return ack()
    Promise.resolve(this.onStdout!(msg.data, msg.headers?.get(HEADER.worker) || this.worker)).then(ack, ack)
  }
}

/** The listener's side of the NATS protocol (see protocol.ts): offers calls to workers and waits for the answers. */
export class Dispatcher {
  private readonly pending = new Map<string, PendingCall>()
  private readonly busyLines = new BusyLines()
  private sub?: Subscription
  private readonly options: typeof DEFAULTS
  private readonly onPhases?: (fn: string, phases: CallPhases) => void
  private readonly connected: () => boolean

  constructor(private readonly nc: NatsConnection, private readonly listenerId: string, options: DispatcherOptions = {}) {
    const {onPhases, connected, ...rest} = options
    this.options = {...DEFAULTS, ...rest}
    this.onPhases = onPhases
    this.connected = connected ?? (() => true)
  }

  start(): void {
    this.sub = this.nc.subscribe(`${REPLY_SUBJECT_PREFIX}.${this.listenerId}.*`, {
      callback: (error, msg) => {
        if (error) return
        const callId = msg.subject.slice(msg.subject.lastIndexOf('.') + 1)
        const call = this.pending.get(callId)
        if (call) call.onEvent(msg)
        else if (msg.reply) msg.respond(Empty, {headers: goneHeaders()}) // a call no one waits for: the worker moves on, and stops it
      },
    })
  }

  async call(callId: string, spec: StoredFunction, input: Uint8Array, options: CallOptions = {}): Promise<CallResult> {
    const pending = new PendingCall(options.onStdout)
    const started = Date.now()
    this.pending.set(callId, pending)
    const watchdog = setInterval(() => {
      if (pending.accepted && Date.now() - pending.lastHeard > this.options.workerSilenceMs) {
        pending.reject(new CallLost(`worker ${pending.worker || '?'} stopped responding during the call`))
      }
    }, 250)
    const cap = setTimeout(
      () => pending.reject(new AmpError('function_timeout', `function ${spec.name} did not finish in time`)),
      spec.timeoutMs + this.options.queueAllowanceMs,
    )
    try {
      // The offer waits for a worker's answer; a lost connection or a caller who hung up ends that wait at once.
      const offered = this.offer(callId, spec, input, pending, started)
      offered.catch(() => {})
      await Promise.race([offered, pending.done])
      const result = await pending.done
      return this.finish(callId, spec, pending, result)
    } finally {
      clearInterval(watchdog)
      clearTimeout(cap)
      this.pending.delete(callId)
    }
  }

  /** Sends the call to one worker of the queue group, then the rest of its input. */
  private async offer(callId: string, spec: StoredFunction, input: Uint8Array, pending: PendingCall, started: number): Promise<void> {
    const size = chunkSizeFor(this.nc.info?.max_payload ?? 1024 * 1024)
    const h = callHeaders(callId, spec, input.length)
    h.set(HEADER.replyTo, replySubject(this.listenerId, callId))
    if (pending.onStdout) h.set(HEADER.stream, 'true')
    h.set(HEADER.inline, 'true')
    // The environment header (up to 43 KiB) takes its room from the first chunk, so the message stays under max_payload.
    const firstSize = Math.max(0, size - (h.get(HEADER.env)?.length ?? 0))
    const first = input.subarray(0, firstSize)
    const rest = [...chunks(input.subarray(firstSize), size)]

    const answer = await this.offerUntilTaken(spec, first, h, pending, started)
    // Given up while the worker answered: it runs the call and learns from the first heartbeat that no one waits.
    if (!answer || pending.settled) return
    const status = answer.headers?.get(HEADER.status)
    pending.worker = answer.headers?.get(HEADER.worker) ?? ''
    // A quick call (docs/protocol.md): the answer is its result.
    if (status === 'done') return pending.onResult(answer)
    pending.lastHeard = Date.now()
    pending.accepted = status === 'accepted'
    if (status !== 'accepted') {
      throw new AmpError('function_failed_to_run', answer.headers?.get(HEADER.error) || 'the worker refused the call')
    }
    const inputSubject = answer.headers?.get(HEADER.inputSubject)
    if (rest.length === 0) return
    if (!inputSubject) throw new AmpError('function_failed_to_run', 'the worker did not ask for the rest of the input')
    let seq = 1
    for (const chunk of rest) {
      if (pending.settled) return
      const ch = headers()
      ch.set(HEADER.callId, callId)
      ch.set(HEADER.seq, String(seq++))
      try {
        await this.nc.request(inputSubject, chunk, {headers: ch, timeout: CHUNK_TIMEOUT_MS})
      } catch (error) {
        throw new AmpError('function_failed_to_run', `worker ${pending.worker} stopped taking input: ${(error as Error).message}`)
      }
      pending.lastHeard = Date.now()
    }
  }

  /**
   * Offers the call until a worker answers other than busy; undefined when the call ended meanwhile
   * (its caller hung up), so it is never offered again. While every worker is busy the call waits in
   * its function's line (busy-lines.ts) and is offered again when first, until its deadline: the
   * function's timeout or the queue allowance from when the call came, whichever is shorter. Then
   * (or after `busyRetries` offers again) it is answered no_worker, 503.
   */
  private async offerUntilTaken(
    spec: StoredFunction,
    data: Uint8Array,
    h: ReturnType<typeof headers>,
    pending: PendingCall,
    started: number,
  ): Promise<Msg | undefined> {
    const deadline = started + Math.min(spec.timeoutMs, this.options.queueAllowanceMs)
    // Calls of the function already wait: this one goes behind them rather than take the room they wait for.
    let place: LinePlace | undefined = this.busyLines.waiting(spec.name) ? this.busyLines.join(spec.name) : undefined
    try {
      for (let attempt = 0; ; attempt++) {
        const myTurn = place ? await place.turn(deadline - Date.now(), pending.done) : true
        if (pending.settled) return undefined
        if (!myTurn) throw busy()
        // Offered while disconnected, the call would sit in the reconnect buffer until the accept timeout.
        if (!this.connected()) throw new AmpError('service_unavailable', LOST_NATS)
        const answer = await this.offerOnce(spec, data, h)
        if (answer.headers?.get(HEADER.status) !== 'busy') return answer
        if (pending.settled) return undefined
        if (attempt >= this.options.busyRetries || Date.now() >= deadline) throw busy()
        place ??= this.busyLines.join(spec.name)
        await pause(Math.min(busyPauseMs(attempt), deadline - Date.now()), pending.done)
      }
    } finally {
      place?.leave()
    }
  }

  /**
   * Offers the call once: first to the workers that have a container of the function up and free
   * (its warm subject, protocol.ts), when the function keeps any; when none has ("no responders",
   * answered at once) or the one that got it is busy, to any worker.
   */
  private async offerOnce(spec: StoredFunction, data: Uint8Array, h: ReturnType<typeof headers>): Promise<Msg> {
    if (spec.prestart > 0) {
      try {
        const answer = await this.nc.request(warmSubject(spec.name), data, {headers: h, timeout: this.options.acceptTimeoutMs})
        if (answer.headers?.get(HEADER.status) !== 'busy') return answer
      } catch (error) {
        if (!isNoResponders(error)) throw this.requestFailed(error)
      }
    }
    return this.request(callSubject(spec.name), data, h)
  }

  private async request(subject: string, data: Uint8Array, h: ReturnType<typeof headers>): Promise<Msg> {
    try {
      return await this.nc.request(subject, data, {headers: h, timeout: this.options.acceptTimeoutMs})
    } catch (error) {
      throw this.requestFailed(error)
    }
  }

  private requestFailed(error: unknown): AmpError {
    if (isNoResponders(error)) return new AmpError('no_worker', 'no worker is running: start one with `amp worker start`')
    if (error instanceof errors.TimeoutError || (error as Error).name === 'TimeoutError') {
      return new AmpError('no_worker', `no worker took the call within ${formatDuration(this.options.acceptTimeoutMs)}`)
    }
    return new AmpError('no_worker', `cannot reach workers over NATS: ${(error as Error).message}`)
  }

  private finish(callId: string, spec: StoredFunction, pending: PendingCall, msg: Msg): CallResult {
    const h = msg.headers
    const outcome = h?.get(HEADER.outcome)
    const worker = h?.get(HEADER.worker) || pending.worker
    this.onPhases?.(spec.name, {queueMs: msHeader(h, HEADER.queueMs), startMs: msHeader(h, HEADER.startMs), runMs: msHeader(h, HEADER.runMs)})
    if (outcome === 'timeout') {
      throw new AmpError(
        'function_timeout',
        `function ${spec.name} timed out after ${formatDuration(spec.timeoutMs)}; its container was killed`,
      )
    }
    if (outcome !== 'exited') {
      throw new AmpError('function_failed_to_run', h?.get(HEADER.error) || 'the container could not run')
    }
    // A worker that breaks the protocol must not turn into "the function exited NaN".
    const exitCode = Number(h?.get(HEADER.exitCode) || Number.NaN)
    if (!Number.isInteger(exitCode) || exitCode < 0 || exitCode > 255) {
      throw new AmpError('function_failed_to_run', `worker ${worker || '?'} sent a result without a valid exit code`)
    }
    const stdout = Buffer.concat(pending.stdout)
    const stderr = Buffer.concat(pending.stderr)
    const stdoutSize = pending.onStdout ? pending.streamed : stdout.length
    if (stdoutSize !== Number(h?.get(HEADER.stdoutSize)) || stderr.length !== Number(h?.get(HEADER.stderrSize))) {
      throw new CallLost('part of the output was lost between worker and listener')
    }
    return {
      callId,
      function: spec.name,
      exitCode,
      stdout,
      stderr,
      stderrTruncated: h?.get(HEADER.stderrTruncated) === 'true',
      durationMs: Number(h?.get(HEADER.durationMs)),
      worker,
    }
  }

  /** Stops waiting for a call whose caller is gone; its worker learns it from the next heartbeat and kills the container. */
  abandon(callId: string): void {
    this.pending.get(callId)?.reject(new AmpError('function_failed_to_run', 'the caller hung up before the call finished'))
  }

  /**
   * The NATS connection dropped: a call no worker has taken yet would wait out the accept timeout in the
   * reconnect buffer, so it is refused now; calls already running are left to the worker-silence watchdog.
   */
  connectionLost(): void {
    for (const call of this.pending.values()) {
      if (!call.accepted) call.reject(new AmpError('service_unavailable', LOST_NATS))
    }
  }

  get inFlight(): number {
    return this.pending.size
  }

  /** Gives up the calls still out (the listener is past its drain deadline), so nothing keeps it waiting for their workers. */
  async close(): Promise<void> {
    for (const call of this.pending.values()) {
      call.reject(new AmpError('service_unavailable', 'the listener shut down before the call finished'))
    }
    await this.sub?.drain().catch(() => {})
  }
}

function busy(): AmpError {
  return new AmpError('no_worker', 'all workers are busy: try again shortly')
}

function goneHeaders(): ReturnType<typeof headers> {
  const h = headers()
  h.set(HEADER.status, GONE_STATUS)
  return h
}

/** An optional, non-negative ms header; undefined when absent or not a number (older workers send none). */
function msHeader(h: Msg['headers'], name: string): number | undefined {
  const text = h?.get(name)
  const ms = text ? Number(text) : Number.NaN
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined
}

