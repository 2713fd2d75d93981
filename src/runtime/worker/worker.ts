import {Empty, headers, type Msg, type MsgHdrs, type Subscription} from '@nats-io/transport-node'
import {randomBytes} from 'node:crypto'
import {hostname} from 'node:os'

import {AsyncPuller, type AsyncHost, type AsyncWorkerOptions} from './async-worker.js'
import {type AsyncSettings, AsyncStore, DEFAULT_ASYNC_SETTINGS} from '../shared/async-store.js'
import {CallLogPublisher} from '../shared/call-logs.js'
import {logStreamSetup} from '../shared/js-replicas.js'
import {ContainerStarts} from './container-events.js'
import {ContainerRunner, DEFAULT_MAX_OUTPUT, LABEL, type RunResult} from './container-runner.js'
import type {PullPolicy} from '../shared/config.js'
import {DockerEvents} from './docker-events.js'
import {ImageCommands} from './image-commands.js'
import {type PreparedRunner, prepareRunner} from './runner-files.js'
import {cachedCheck, checkReadiness, type ReadinessReport, trackNats} from '../shared/health.js'
import {daemonRegistry, Registry, WorkerMetrics, type WorkerCallResult} from '../shared/metrics.js'
import {type OpsServer, startOpsServer} from '../shared/ops-server.js'
import {type NatsAuth, redactUrls} from '../shared/credentials.js'
import {connectNats, isNoResponders, type NatsConnection} from '../shared/nats.js'
import {createLogger, type Logger} from '../shared/logger.js'
import {StdoutStreamer} from './stdout-streamer.js'
import {
  type AcceptStatus,
  CALL_SUBJECT_PREFIX,
  chunks,
  chunkSizeFor,
  GONE_STATUS,
  HEADER,
  headerValue,
  HEARTBEAT_INTERVAL_MS,
  FUNCTIONS_CHANGED_SUBJECT,
  inputSubject,
  warmSubject,
  WORKER_QUEUE,
} from '../shared/protocol.js'
import {type CallSettings, parseCallSettings, parseInputSize} from './call-headers.js'
import {checkName} from '../shared/validate.js'

export interface WorkerOptions {
  nats: string
  /** Containers run at once. */
  concurrency: number
  /** Calls accepted beyond `concurrency` that wait for a free slot; past this the worker answers "busy". */
  backlog?: number
  docker: string
  pull?: PullPolicy
  /** How long close() waits for calls in flight before it kills their containers. */
  drainTimeoutMs?: number
  maxInputBytes?: number
  logger?: Logger
  /** Serve /metrics, /health/live and /health/ready on this port (0: any free one); off when undefined. */
  metricsPort?: number
  /** Address of that port; 127.0.0.1 by default. */
  metricsHost?: string
  /** Where the worker's metrics go; tests pass their own. */
  metricsRegistry?: Registry
  /** Credentials and TLS for NATS. */
  natsAuth?: NatsAuth
  /** How often to remove containers left on this host by dead workers (besides at start); 30 s unless given. */
  orphanSweepMs?: number
  /** Most idle pre-started containers across all functions; `concurrency` when absent, 0 turns pools off. */
  prestartMax?: number
  /** A function's pre-started containers are removed after this long without a call; 60 s when absent. */
  prestartIdleMs?: number
  /** Asynchronous calls (docs/async.md): JetStream lease and retention, retry backoff; off when `false`. */
  async?: (Partial<AsyncSettings> & AsyncWorkerOptions) | false
  /** The in-container runner (docs/runner.md): on unless false. */
  runner?: boolean
  /** The runner binary; dist/runner/amp-runner of this package when absent. */
  runnerPath?: string
  /** Where the containers' sockets go (on the Docker host: this machine); see runner-files.ts for the default. */
  runtimeDir?: string
}

export interface Worker {
  id: string
  /** http://host:port of the metrics and health endpoint, when --metrics-port is set. */
  metricsUrl?: string
  /** Ready: NATS connected, docker reachable, not draining. */
  readiness(): Promise<ReadinessReport>
  close(): Promise<void>
}

export interface WorkerDeps {
  nc?: NatsConnection
  runner?: ContainerRunner
}

export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000
export const DEFAULT_ORPHAN_SWEEP_MS = 30_000
const DEFAULT_MAX_INPUT = 64 * 1024 * 1024
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
/** How long a worker stays on a function's warm subject once it has no free container of it (freeChanged). */
const WARM_LINGER_MS = 25
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

export function newWorkerId(): string {
  const host = hostname().replace(/[^A-Za-z0-9-]/g, '-').slice(0, 40)
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`
}

function parseCall(msg: Msg): CallRequest {
  const settings = parseCallSettings(msg.headers)
  const replyTo = msg.headers!.get(HEADER.replyTo)
  if (!/^[A-Za-z0-9._-]+$/.test(replyTo)) throw new TypeError('invalid reply subject')
  const inputSize = parseInputSize(msg.headers)
  if (inputSize < msg.data.length) throw new TypeError('invalid input size')
  return {...settings, inputSize, replyTo, stream: msg.headers!.get(HEADER.stream) === 'true', inline: msg.headers!.get(HEADER.inline) === 'true'}
}

class WorkerService implements Worker, AsyncHost {
  readonly id: string
  /** Publishes each call's stderr lines to JetStream (best effort). */
  readonly callLogs: CallLogPublisher
  private readonly calls = new Set<Promise<void>>()
  private readonly waiting: Array<() => void> = []
  /** Woken at each slot release: the asynchronous puller waits there for room. */
  private slotWaiters: Array<() => void> = []
  private running = 0
  /** Pulls asynchronous calls once JetStream is set up. */
  private puller?: AsyncPuller
  private sub?: Subscription
  private changesSub?: Subscription
  /** `amp.v1.warm.<fn>` subscriptions, held while this worker has a free container of that function up (and WARM_LINGER_MS after). */
  private readonly warmSubs = new Map<string, {sub: Subscription; leaving?: NodeJS.Timeout}>()
  private closing?: Promise<void>
  private gaveUp = false
  private readonly concurrency: number
  private readonly backlog: number
  private readonly maxInput: number
  private readonly chunkSize: number
  readonly metrics: WorkerMetrics
  private readonly nats: {connected(): boolean}
  private readonly dockerUp: () => Promise<boolean>
  /** Stopped last, once the calls are done: the metrics endpoint, the docker events follower. */
  readonly stopLast: Array<() => unknown> = []
  metricsUrl?: string

  constructor(
    private readonly nc: NatsConnection,
    private readonly runner: ContainerRunner,
    private readonly options: WorkerOptions,
    private readonly log: Logger,
    id: string,
  ) {
    this.id = id
    this.callLogs = new CallLogPublisher(nc, id, log, {replicas: options.async ? options.async.replicas : undefined})
    this.concurrency = options.concurrency
    this.backlog = options.backlog ?? options.concurrency * 4
    this.maxInput = options.maxInputBytes ?? DEFAULT_MAX_INPUT
    this.chunkSize = chunkSizeFor(nc.info?.max_payload ?? 1024 * 1024)
    this.nats = trackNats(nc)
    this.dockerUp = cachedCheck(async () => !(await runner.engine()).error, {maxAgeMs: 5000, timeoutMs: 3000})
    const registry = options.metricsRegistry ?? (options.metricsPort === undefined ? new Registry() : daemonRegistry())
    this.metrics = new WorkerMetrics(
      registry,
      {
        natsConnected: () => this.nats.connected(),
        dockerUp: () => this.dockerUp(),
        draining: () => this.closing !== undefined,
        slotsUsed: () => this.running,
        inFlight: () => this.calls.size,
        prestarted: () => this.runner.prestarted,
      },
      options.concurrency,
    )
  }

  readiness(): Promise<ReadinessReport> {
    return checkReadiness({nats: () => this.nats.connected(), docker: () => this.dockerUp()}, () => this.closing !== undefined)
  }

  start(): void {
    this.sub = this.nc.subscribe(`${CALL_SUBJECT_PREFIX}.*`, {queue: WORKER_QUEUE, callback: (error, msg) => this.onMessage(error, msg)})
    // Every worker (no queue group): each drops its own pre-started containers of a changed or removed function.
    this.changesSub = this.nc.subscribe(FUNCTIONS_CHANGED_SUBJECT, {
      callback: (error, msg) => {
        if (error) return
        let fn: string
        try {
          fn = checkName(msg.string())
        } catch {
          return
        }
        void this.runner.drainPrestarted(fn)
      },
    })
  }

  private onMessage(error: Error | null, msg: Msg): void {
    if (error) this.log.error('subscription failed', {error: error.message})
    else this.onCall(msg)
  }

  /**
   * The number of a function's free containers that are up changed: while it is above 0 this worker
   * takes that function's calls on its warm subject too, where listeners offer them first (protocol.ts).
   * Called before the result of the call that freed one is sent, so NATS has the subscription before
   * the caller can send its next call.
   */
  freeChanged(fn: string, free: number): void {
    const warm = this.warmSubs.get(fn)
    if (free > 0) {
      clearTimeout(warm?.leaving)
      if (warm) warm.leaving = undefined
      else if (!this.closing) this.warmSubs.set(fn, {sub: this.nc.subscribe(warmSubject(fn), {queue: WORKER_QUEUE, callback: (error, msg) => this.onMessage(error, msg)})})
    } else if (warm && !warm.leaving) {
      // Under load a warm container is free again within milliseconds: leaving and joining at each call would cost NATS more than the call.
      warm.leaving = setTimeout(() => {
        this.warmSubs.delete(fn)
        // Drained, not unsubscribed: a call NATS routed here before it saw the UNSUB still arrives, and runs (queued, or cold).
        void warm.sub.drain().catch(() => {})
      }, WARM_LINGER_MS)
      warm.leaving.unref()
    }
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
    if (this.closing || this.calls.size >= this.concurrency + this.backlog) {
      this.metrics.refused.inc({reason: 'busy'})
      this.answer(msg, 'busy')
      return
    }
    const task: Promise<void> = this.handle(msg, call)
      .catch((error: Error) => this.log.error('call failed in worker', {call: call.callId, error: error.message}))
      .finally(() => this.calls.delete(task))
    this.calls.add(task)
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
      const queuedAt = Date.now()
      const queued = this.acquire()
      leaveQueue = queued.leave
      const gotSlot = await queued.slot
      const queueMs = Date.now() - queuedAt
      const notRun = this.gaveUp ? 'the worker shut down before the call started' : callerGone || !gotSlot ? 'the caller is gone' : undefined
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
        if (gotSlot) this.release()
      }
      log.info('call done', {
        outcome: result.outcome,
        exit: result.exitCode,
        ms: result.durationMs,
        out: result.stdout.length,
        err: result.stderr.length,
        error: result.error,
      })
      this.observe(call, result, queueMs, !notRun)
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
  startPuller(puller: AsyncPuller): boolean {
    if (this.closing) return false
    this.puller = puller
    puller.start()
    return true
  }

  /**
   * A slot free beyond `starting` (pre-started containers still starting: a start costs the engine
   * as much as a call), no call waiting, and not shutting down.
   */
  hasFreeSlot(starting = 0): boolean {
    return this.running + starting < this.concurrency && this.waiting.length === 0 && !this.closing
  }

  slotFreed(): Promise<void> {
    // The timer is a safety net: a slot may free without a release (a sync call that left the queue).
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 1000)
      this.slotWaiters.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  track(task: Promise<void>): void {
    const tracked = task.finally(() => this.calls.delete(tracked))
    this.calls.add(tracked)
  }

  aborted(): boolean {
    return this.gaveUp
  }

  /** Runs an asynchronous call's container in a slot, as handle() does for a sync call. */
  async run(call: CallSettings, input: Uint8Array): Promise<RunResult> {
    const queuedAt = Date.now()
    await this.acquire().slot
    const queueMs = Date.now() - queuedAt
    const callLog = this.callLogs.forCall(call)
    let result: RunResult
    try {
      if (this.gaveUp) {
        return {outcome: 'failed', error: 'the worker shut down before the call started', stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 0}
      }
      this.metrics.containersStarted.inc()
      result = await this.runner.run({...call, input, onStderr: (chunk) => callLog.write(chunk)})
    } finally {
      callLog.end()
      this.release()
    }
    this.observe(call, result, queueMs)
    return result
  }

  private observe(call: CallSettings, result: RunResult, queueMs: number, ran = true): void {
    const outcome: WorkerCallResult =
      result.outcome === 'exited' ? (result.exitCode === 0 ? 'ok' : 'nonzero_exit') : result.outcome === 'timeout' ? 'timeout' : 'failed'
    this.metrics.calls.inc({function: call.function, result: outcome})
    if (ran) this.metrics.starts.inc({function: call.function, start: result.reused ? 'reused' : result.warm ? 'warm' : 'cold'})
    if (result.killed) this.metrics.containersKilled.inc({reason: result.killed})
    this.metrics.phases.observe(call.function, {queueMs, startMs: result.startMs, runMs: result.runMs})
  }

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

  /**
   * A container slot: `slot` resolves true once the call holds one. `leave()` takes a call that is
   * still waiting out of the queue (its caller is gone), so it frees its backlog place at once;
   * `slot` then resolves false.
   */
  private acquire(): {slot: Promise<boolean>; leave: () => void} {
    if (this.running < this.concurrency) {
      this.running++
      return {slot: Promise.resolve(true), leave: () => {}}
    }
    let settle!: (got: boolean) => void
    const slot = new Promise<boolean>((resolve) => (settle = resolve))
    const waiter = () => settle(true)
    this.waiting.push(waiter)
    const leave = () => {
      const index = this.waiting.indexOf(waiter)
      if (index < 0) return
      this.waiting.splice(index, 1)
      settle(false)
    }
    return {slot, leave}
  }

  private release(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.running--
    for (const wake of this.slotWaiters.splice(0)) wake()
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    const deadline = this.options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS
    this.log.info('worker stopping: no new calls, finishing calls in flight', {inFlight: this.calls.size, deadlineMs: deadline})
    const warm = [...this.warmSubs.values()].map(({sub, leaving}) => {
      clearTimeout(leaving)
      return sub.drain().catch(() => {})
    })
    this.warmSubs.clear()
    await Promise.all([this.sub?.drain().catch(() => {}), ...warm])
    this.changesSub?.unsubscribe()
    this.puller?.stop()
    // Idle pre-started containers go at once (one docker rm), while the calls in flight finish.
    const pools = this.runner.close()
    let timer: NodeJS.Timeout | undefined
    const finished = await Promise.race([
      Promise.allSettled([...this.calls]).then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), deadline))),
    ])
    clearTimeout(timer)
    if (!finished) {
      this.log.warn('drain deadline passed: killing containers still running', {inFlight: this.calls.size})
      this.gaveUp = true
      this.runner.killAll()
      await Promise.allSettled([...this.calls])
    }
    // Also waits for the removal of the pre-started containers the last calls used.
    await pools
    await this.runner.close()
    await this.nc.drain().catch(() => {})
    for (const stop of this.stopLast) await stop()
    this.log.info('worker stopped')
  }
}

export async function startWorker(options: WorkerOptions, deps: WorkerDeps = {}): Promise<Worker> {
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
    throw new TypeError('concurrency must be a whole number of at least 1')
  }
  if (options.prestartMax !== undefined && !(Number.isInteger(options.prestartMax) && options.prestartMax >= 0)) {
    throw new TypeError('prestartMax must be a whole number of at least 0')
  }
  if (options.orphanSweepMs !== undefined && !(Number.isInteger(options.orphanSweepMs) && options.orphanSweepMs > 0)) {
    throw new TypeError('orphanSweepMs must be a whole number of ms above 0')
  }
  const id = newWorkerId()
  const log = (options.logger ?? createLogger()).child({worker: id})
  const docker = options.docker
  // Docker's start events tell when each container really started (the "container start" metric).
  const starts = deps.runner ? undefined : new ContainerStarts({docker, workerId: id, logger: log})
  // The in-container runner: its binary, this worker's socket dir, and what each image runs (read again on image events).
  const files: PreparedRunner = deps.runner ? {cleanup: () => {}} : prepareRunner({enabled: options.runner, binary: options.runnerPath, runtimeDir: options.runtimeDir})
  const images = files.files ? new ImageCommands({docker, pull: options.pull ?? 'missing'}) : undefined
  const imageEvents = images
    ? new DockerEvents({
        docker,
        filters: ['type=image', ...['pull', 'tag', 'untag', 'delete', 'load', 'import'].map((event) => `event=${event}`)],
        onEvent: () => images.invalidate(),
        onFollowing: (following) => {
          images.following = following
          if (!following) images.invalidate()
        },
        warning: 'docker events (images) stopped: image commands are read again every few seconds until it runs again',
        logger: log,
      })
    : undefined
  const noted = new Set<string>()
  const note = (key: string, message: string, fields: Record<string, string>) => {
    if (noted.has(key) || noted.size >= 1000) return
    noted.add(key)
    log.warn(message, fields)
  }
  if (files.off) {
    // Asked for (--no-runner): said, not warned.
    const say = options.runner === false ? log.info.bind(log) : log.warn.bind(log)
    say('the in-container runner is off: answers wait for docker to report each exit, and no container is reused', {why: files.off})
  }
  let service: WorkerService | undefined
  const runner =
    deps.runner ??
    new ContainerRunner({
      docker,
      pull: options.pull,
      workerId: id,
      startedAt: (name, waitMs) => starts!.take(name, waitMs),
      // The service exists once calls arrive; before that there is nothing to pre-start for.
      prestartAllowed: (starting) => service?.hasFreeSlot(starting) ?? false,
      prestartMax: options.prestartMax ?? options.concurrency,
      prestartIdleMs: options.prestartIdleMs,
      runner: files.files,
      images,
      note,
      onFree: (fn, free) => service?.freeChanged(fn, free),
    })
  const engine = await runner.engine()
  if (engine.error) {
    log.warn('docker is not reachable: calls will fail with 502 until it is', {docker: options.docker, error: engine.error})
  }
  await removeOrphans(runner, log)
  let nc: NatsConnection
  try {
    nc = deps.nc ?? (await connectNats(options.nats, `amp-worker ${id}`, options.natsAuth))
  } catch (error) {
    files.cleanup()
    throw error
  }
  const worker = new WorkerService(nc, runner, options, log, id)
  service = worker
  if (starts) {
    starts.start()
    worker.stopLast.push(() => starts.stop())
  }
  if (imageEvents) {
    imageEvents.start()
    worker.stopLast.push(() => imageEvents.stop())
  }
  // Last: the sockets of containers still being removed.
  worker.stopLast.push(() => removeOwnContainers(runner, id, log), () => files.cleanup())
  let ops: OpsServer | undefined
  if (options.metricsPort !== undefined) {
    try {
      ops = await startOpsServer({
        host: options.metricsHost ?? '127.0.0.1',
        port: options.metricsPort,
        registry: worker.metrics.registry,
        readiness: () => worker.readiness(),
      })
    } catch (error) {
      starts?.stop()
      files.cleanup()
      await nc.close()
      throw error
    }
    worker.metricsUrl = ops.url
    worker.stopLast.push(() => ops?.close())
  }
  // Before taking calls, so the first call's log is kept too; without JetStream it warns and goes on.
  await worker.callLogs.start()
  worker.start()
  if (options.async !== false) worker.stopLast.push(startAsync(nc, worker, log, options.async ?? {}))
  // A worker killed with -9 leaves its containers running: live workers on the host remove them without waiting for a restart.
  worker.stopLast.push(sweepOrphans(runner, log, options.orphanSweepMs ?? DEFAULT_ORPHAN_SWEEP_MS))
  await nc.flush()
  log.info('worker ready', {
    nats: redactUrls(options.nats),
    concurrency: options.concurrency,
    prestartMax: options.prestartMax ?? options.concurrency,
    docker: options.docker,
    engine: engine.version,
    runner: runner.usesRunner ? 'on' : 'off',
    metrics: ops?.url,
  })
  return worker
}

/**
 * Sets up JetStream for asynchronous calls and starts pulling them. Without JetStream the worker
 * still serves sync calls: it says so once and tries again every minute. Returns the stopper.
 */
function startAsync(nc: NatsConnection, worker: WorkerService, log: Logger, options: Partial<AsyncSettings> & AsyncWorkerOptions): () => void {
  const {retryBaseMs, pullExpiresMs, ...settings} = options
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  let warned = false
  const attempt = async () => {
    try {
      const store = await AsyncStore.open(nc, {...DEFAULT_ASYNC_SETTINGS, ...settings})
      if (!stopped && worker.startPuller(
          new AsyncPuller(store, worker, log, {
            retryBaseMs,
            pullExpiresMs,
            onOutcome: (fn, outcome) => worker.metrics.asyncCalls.inc({function: fn, outcome}),
          }),
        )) {
        log.info('taking asynchronous calls', {replicas: Math.min(...store.streams.map((stream) => stream.replicas))})
        logStreamSetup(store, log)
      }
    } catch (error) {
      if (!warned) log.warn('asynchronous calls are off until JetStream is reachable', {error: (error as Error).message})
      warned = true
      if (!stopped) timer = setTimeout(() => void attempt(), 60_000)
    }
  }
  void attempt()
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}

/**
 * At the end of a shutdown: any container of this worker still there (a used one docker is still
 * removing, --rm, or one whose runner did not exit) goes now, so a stopped worker leaves none.
 */
async function removeOwnContainers(runner: ContainerRunner, workerId: string, log: Logger): Promise<void> {
  const removed = await runner.removeLabelled(`${LABEL.worker}=${workerId}`)
  if (removed.length > 0) log.debug('removed containers still there at shutdown', {count: removed.length})
}

async function removeOrphans(runner: ContainerRunner, log: Logger): Promise<void> {
  const removed = await runner.removeOrphans()
  if (removed.length > 0) log.warn('removed containers left by dead workers', {count: removed.length, containers: removed.join(',')})
}

/** Runs removeOrphans every `everyMs`, one sweep at a time; returns the function that stops it. */
function sweepOrphans(runner: ContainerRunner, log: Logger, everyMs: number): () => void {
  let sweeping = false
  const timer = setInterval(() => {
    if (sweeping) return
    sweeping = true
    removeOrphans(runner, log)
      .catch((error: Error) => log.warn('orphan sweep failed', {error: error.message}))
      .finally(() => (sweeping = false))
  }, everyMs)
  timer.unref()
  return () => clearInterval(timer)
}
