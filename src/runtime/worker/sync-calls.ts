import {Empty, headers, type Msg, type MsgHdrs} from '@nats-io/transport-node'

import type {CallLogPublisher} from '../shared/call-logs.js'
import type {WorkerMetrics} from '../shared/metrics.js'
import {isNoResponders, type NatsConnection} from '../shared/nats.js'
import type {Logger} from '../shared/logger.js'
import {type AcceptStatus, chunks, GONE_STATUS, HEADER, headerValue, HEARTBEAT_INTERVAL_MS, inputSubject} from '../shared/protocol.js'
import {type CallSettings, parseCallSettings, parseInputSize} from './call-headers.js'
import {observeCall} from './call-metrics.js'
import {type ContainerRunner, DEFAULT_MAX_OUTPUT, type RunResult} from './container-runner.js'
import type {Slots} from './slots.js'
import {StdoutStreamer} from './stdout-streamer.js'

/** A listener that stops sending input for this long is gone. */
const INPUT_IDLE_MS = 10_000
const REPLY_TIMEOUT_MS = 10_000
/**
 * A streamed call's stdout event waits for its ack while the HTTP client reads (the listener acks
 * once its socket drained): a client that takes nothing for this long fails the call.
 */
export const STREAM_ACK_TIMEOUT_MS = 60_000
/**
 * A call whose whole input came with it is answered with its result instead of `accepted` when it
 * ends within this long (docs/protocol.md, "Quick calls"): one round trip through NATS instead of
 * three. A call still running then is accepted as any other.
 */
export const QUICK_ANSWER_MS = 50
/** Heartbeats in a row that NATS answers "no responders" before the worker drops the call (a listener reconnecting to NATS resubscribes within that). */
const LISTENER_GONE_AFTER = 3

/** A sync call as its NATS message gives it: the container's settings, and how to answer. */
interface CallRequest extends CallSettings {
  inputSize: number
  replyTo: string
  /** The listener streams stdout to its caller (Amp-Stream): send it as the container writes. */
  stream: boolean
  /** The listener takes small output inside the result event (Amp-Inline-Output): one round trip instead of three. */
  inline: boolean
}

function parseCall(msg: Msg): CallRequest {
  const settings = parseCallSettings(msg.headers)
  const replyTo = msg.headers!.get(HEADER.replyTo)
  if (!/^[A-Za-z0-9._-]+$/.test(replyTo)) throw new TypeError('invalid reply subject')
  const inputSize = parseInputSize(msg.headers)
  if (inputSize < msg.data.length) throw new TypeError('invalid input size')
  return {...settings, inputSize, replyTo, stream: msg.headers!.get(HEADER.stream) === 'true', inline: msg.headers!.get(HEADER.inline) === 'true'}
}

export interface SyncCallsOptions {
  nc: NatsConnection
  workerId: string
  runner: Pick<ContainerRunner, 'run' | 'cancel'>
  slots: Slots
  callLogs: CallLogPublisher
  metrics: WorkerMetrics
  log: Logger
  /** Largest input taken; a larger call is rejected. */
  maxInput: number
  /** Largest NATS payload of an output chunk. */
  chunkSize: number
  /** Draining, or every slot and backlog place taken: a new call is answered busy (the listener asks another worker). */
  full: () => boolean
  /** Counts a call among those the worker drains on close. */
  track: (task: Promise<void>) => void
  /** True once close gave up waiting and killed the containers. */
  gaveUp: () => boolean
  now: () => number
}

/**
 * The worker's side of a sync call over NATS (docs/protocol.md), the mirror of the listener's
 * dispatcher.ts: accepts or refuses the offer, gathers the input chunks, beats while the call
 * waits and runs, streams stdout, and sends the result (in the answer itself for a quick call).
 */
export class SyncCalls {
  private readonly nc: NatsConnection
  private readonly id: string
  private readonly runner: Pick<ContainerRunner, 'run' | 'cancel'>
  private readonly slots: Slots
  private readonly callLogs: CallLogPublisher
  private readonly metrics: WorkerMetrics
  private readonly log: Logger
  private readonly maxInput: number
  private readonly chunkSize: number

  constructor(private readonly options: SyncCallsOptions) {
    this.nc = options.nc
    this.id = options.workerId
    this.runner = options.runner
    this.slots = options.slots
    this.callLogs = options.callLogs
    this.metrics = options.metrics
    this.log = options.log
    this.maxInput = options.maxInput
    this.chunkSize = options.chunkSize
  }

  /** A message on a call subject (amp.v1.call.<fn> or a warm one). */
  onMessage(error: Error | null, msg: Msg): void {
    if (error) this.log.error('subscription failed', {error: error.message})
    else this.onCall(msg)
  }

  private answer(msg: Msg, status: AcceptStatus, extra: Record<string, string> = {}): void {
    const h = headers()
    h.set(HEADER.status, status)
    h.set(HEADER.worker, this.id)
    for (const [key, value] of Object.entries(extra)) h.set(key, headerValue(value))
    msg.respond(Empty, {headers: h})
  }

  private onCall(msg: Msg): void {
    let call: CallRequest
    try {
      call = parseCall(msg)
    } catch (error) {
      this.log.warn('call rejected', {error: (error as Error).message})
      this.metrics.refused.inc({reason: 'rejected'})
      this.answer(msg, 'rejected', {[HEADER.error]: `worker refused the call: ${(error as Error).message}`})
      return
    }
    if (call.inputSize > this.maxInput) {
      this.metrics.refused.inc({reason: 'rejected'})
      this.answer(msg, 'rejected', {[HEADER.error]: `input of ${call.inputSize} bytes is over this worker's limit of ${this.maxInput}`})
      return
    }
    // Draining or full: the listener asks another worker.
    if (this.options.full()) {
      this.metrics.refused.inc({reason: 'busy'})
      this.answer(msg, 'busy')
      return
    }
    const task = this.handle(msg, call).catch((error: Error) => this.log.error('call failed in worker', {call: call.callId, error: error.message}))
    this.options.track(task)
  }

  private async handle(msg: Msg, call: CallRequest): Promise<void> {
    const log = this.log.child({call: call.callId, fn: call.function})
    let callerGone = false
    let answering = false
    let leaveQueue = () => {}
    const stopBeating = this.heartbeat(call, (why) => {
      // Heartbeats still go while the result does: once the listener has it, it rightly says it waits no more.
      if (answering) return
      callerGone = true
      log.warn('nobody waits for the call any more: stopping it', {why})
      leaveQueue()
      this.runner.cancel(call.callId)
    })
    // A listener that takes results in its answer (Amp-Inline-Output), a whole input, not streamed: the answer may wait for the result.
    const quick = call.inline && !call.stream && msg.data.length >= call.inputSize ? this.holdAnswer(msg) : undefined
    try {
      const input = quick ? msg.data : await this.receiveInput(msg, call)
      log.debug('call accepted', {image: call.image, bytes: input.length})
      const queuedAt = this.options.now()
      const queued = this.slots.acquire()
      leaveQueue = queued.leave
      const gotSlot = await queued.slot
      const queueMs = this.options.now() - queuedAt
      const notRun = this.options.gaveUp() ? 'the worker shut down before the call started' : callerGone || !gotSlot ? 'the caller is gone' : undefined
      if (!notRun) this.metrics.containersStarted.inc()
      let result: RunResult
      const callLog = this.callLogs.forCall(call)
      const streamer = call.stream ? this.streamer(call, log) : undefined
      try {
        result = notRun
          ? {outcome: 'failed', error: notRun, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 0}
          : await this.runner.run({
              ...call,
              input,
              onStderr: (chunk) => callLog.write(chunk),
              ...(streamer ? {onStdout: (chunk: Buffer) => streamer.push(chunk)} : {}),
            })
      } finally {
        callLog.end()
        if (gotSlot) this.slots.release()
      }
      log.info('call done', {
        outcome: result.outcome,
        exit: result.exitCode,
        ms: result.durationMs,
        out: result.stdout.length,
        err: result.stderr.length,
        error: result.error,
      })
      observeCall(this.metrics, call, result, queueMs, !notRun)
      answering = true
      // The stdout still coalescing goes before the result; a failed send shows in Amp-Stdout-Size.
      await streamer?.finish().catch(() => {})
      const unanswered = quick?.take() === true
      const output = unanswered ? this.inlineOutput(call, result) : undefined
      if (output) {
        msg.respond(output, {headers: this.resultHeaders(call, result, queueMs, {inline: true, status: 'done'})})
      } else {
        // Too much output for one message: accepted, then the result as for any call.
        if (unanswered) this.answer(msg, 'accepted')
        if (!callerGone) await this.sendResult(call, result, queueMs, streamer?.taken)
      }
    } catch (error) {
      log.warn('call abandoned', {error: (error as Error).message})
    } finally {
      // Nothing answered yet (the worker failed before the result): the listener hears it at once, not at its accept timeout.
      if (quick?.take()) this.answer(msg, 'rejected', {[HEADER.error]: 'the worker could not run the call'})
      stopBeating()
    }
  }

  /**
   * Holds back the answer to a call (quick calls): `take()` is true the first time, when the caller
   * may answer with the result; after QUICK_ANSWER_MS the call is accepted, and `take()` is false.
   */
  private holdAnswer(msg: Msg): {take(): boolean} {
    let answered = false
    const timer = setTimeout(() => {
      answered = true
      this.answer(msg, 'accepted')
    }, QUICK_ANSWER_MS)
    return {
      take: () => {
        if (answered) return false
        answered = true
        clearTimeout(timer)
        return true
      },
    }
  }

  /**
   * Sends a heartbeat every second while the call is queued or running, as a request the listener
   * acks. `onGone` is called once when nobody waits for the call any more: the listener acks with
   * `Amp-Status: gone` (its caller hung up), or NATS answers "no responders" several times in a row
   * (the listener died). Timeouts and disconnects do not count.
   */
  private heartbeat(call: CallRequest, onGone: (why: string) => void): () => void {
    let misses = 0
    let gone = false
    const beat = async () => {
      let why: string | undefined
      try {
        const ack = await this.nc.request(call.replyTo, Empty, {headers: this.eventHeaders(call, 'heartbeat'), timeout: HEARTBEAT_INTERVAL_MS})
        misses = 0
        if (ack.headers?.get(HEADER.status) === GONE_STATUS) why = 'the listener no longer waits for it'
      } catch (error) {
        if (isNoResponders(error) && ++misses >= LISTENER_GONE_AFTER) why = 'its listener is gone'
      }
      if (why && !gone) {
        gone = true
        onGone(why)
      }
    }
    const timer = setInterval(() => void beat(), HEARTBEAT_INTERVAL_MS)
    return () => clearInterval(timer)
  }

  /** Answers the call request and gathers the rest of the input, chunk by chunk. */
  private receiveInput(msg: Msg, call: CallRequest): Promise<Uint8Array> {
    if (msg.data.length >= call.inputSize) {
      this.answer(msg, 'accepted')
      return Promise.resolve(msg.data)
    }
    const subject = inputSubject(this.id, call.callId)
    const parts: Uint8Array[] = [msg.data]
    let received = msg.data.length
    return new Promise((resolve, reject) => {
      let idle: NodeJS.Timeout
      const fail = (reason: string) => {
        clearTimeout(idle)
        sub.unsubscribe()
        reject(new Error(reason))
      }
      const arm = () => {
        clearTimeout(idle)
        idle = setTimeout(() => fail('listener stopped sending input'), INPUT_IDLE_MS)
      }
      const sub = this.nc.subscribe(subject, {
        callback: (error, chunk) => {
          if (error) return fail(error.message)
          if (Number(chunk.headers?.get(HEADER.seq)) !== parts.length) return fail('input chunk out of order')
          parts.push(chunk.data)
          received += chunk.data.length
          chunk.respond()
          if (received > call.inputSize) return fail('more input than announced')
          if (received === call.inputSize) {
            clearTimeout(idle)
            sub.unsubscribe()
            resolve(Buffer.concat(parts))
            return
          }
          arm()
        },
      })
      arm()
      // Subscribed before answering: NATS keeps the order of one connection, so no chunk can arrive too early.
      this.answer(msg, 'accepted', {[HEADER.inputSubject]: subject})
    })
  }

  /**
   * Sends a streamed call's stdout as the container writes it. When the listener cannot take it
   * (gone, or no ack in time) the container is stopped: its output could not reach anyone.
   */
  private streamer(call: CallRequest, log: Logger): StdoutStreamer {
    return new StdoutStreamer({
      chunkSize: this.chunkSize,
      maxBytes: DEFAULT_MAX_OUTPUT,
      send: async (chunk, seq) => {
        const h = this.eventHeaders(call, 'stdout')
        h.set(HEADER.seq, String(seq))
        const ack = await this.nc.request(call.replyTo, chunk, {headers: h, timeout: STREAM_ACK_TIMEOUT_MS})
        if (ack.headers?.get(HEADER.status) === GONE_STATUS) throw new Error('the listener no longer waits for the call')
      },
      onError: (error) => {
        log.warn('could not stream stdout: stopping the call', {error: error.message})
        this.runner.cancel(call.callId)
      },
    })
  }

  private eventHeaders(call: CallRequest, event: string): MsgHdrs {
    const h = headers()
    h.set(HEADER.event, event)
    h.set(HEADER.callId, call.callId)
    h.set(HEADER.worker, this.id)
    return h
  }

  /** Starts pulling asynchronous calls, unless the worker is already stopping; false then. */

  /**
   * `streamed`: the stdout bytes already sent while the container ran (streamed call); none go
   * again. Output that fits one message rides in the result event itself when the listener takes
   * that (Amp-Inline-Output); otherwise it goes in `stdout` and `stderr` chunks first, each acked.
   */
  private async sendResult(call: CallRequest, result: RunResult, queueMs: number, streamed?: number): Promise<void> {
    const output = this.inlineOutput(call, result, streamed)
    if (!output) {
      const stdout = streamed === undefined ? result.stdout : Buffer.alloc(0)
      for (const [event, data] of [['stdout', stdout], ['stderr', result.stderr]] as const) {
        let seq = 0
        for (const chunk of chunks(data, this.chunkSize)) {
          const h = this.eventHeaders(call, event)
          h.set(HEADER.seq, String(seq++))
          await this.nc.request(call.replyTo, chunk, {headers: h, timeout: REPLY_TIMEOUT_MS})
        }
      }
    }
    const headers = this.resultHeaders(call, result, queueMs, {inline: output !== undefined, streamed})
    await this.nc.request(call.replyTo, output ?? Empty, {headers, timeout: REPLY_TIMEOUT_MS})
  }

  /**
   * The output a result carries itself (Amp-Inline-Output): the stdout not streamed, then the
   * stderr, when the listener takes that and they fit one message; undefined otherwise.
   */
  private inlineOutput(call: CallRequest, result: RunResult, streamed?: number): Buffer | undefined {
    const stdout = streamed === undefined ? result.stdout : Buffer.alloc(0)
    if (!call.inline || stdout.length + result.stderr.length > this.chunkSize) return undefined
    return Buffer.concat([stdout, result.stderr])
  }

  /** The headers of a call's result: a `result` event, or with `status` the answer to the call itself (quick calls). */
  private resultHeaders(
    call: CallRequest,
    result: RunResult,
    queueMs: number,
    {inline, status, streamed}: {inline: boolean; status?: 'done'; streamed?: number},
  ): MsgHdrs {
    const h = this.eventHeaders(call, 'result')
    if (status) h.set(HEADER.status, status)
    if (inline) h.set(HEADER.inline, 'true')
    h.set(HEADER.outcome, result.outcome)
    h.set(HEADER.durationMs, String(result.durationMs))
    h.set(HEADER.stdoutSize, String(streamed ?? result.stdout.length))
    h.set(HEADER.stderrSize, String(result.stderr.length))
    if (result.stderrTruncated) h.set(HEADER.stderrTruncated, 'true')
    if (result.exitCode !== undefined) h.set(HEADER.exitCode, String(result.exitCode))
    if (result.error) h.set(HEADER.error, headerValue(result.error))
    h.set(HEADER.queueMs, String(queueMs))
    if (result.startMs !== undefined) h.set(HEADER.startMs, String(result.startMs))
    if (result.runMs !== undefined) h.set(HEADER.runMs, String(result.runMs))
    return h
  }
}
