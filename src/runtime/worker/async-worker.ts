/**
 * The worker's side of asynchronous calls (docs/async.md): pulls one call at a time from the work
 * queue, and only while a container slot is free; holds the JetStream lease while the container
 * runs; records the outcome, then acks. Failures are tried again with backoff up to the function's
 * limit, then go to the dead letters.
 */
import {setTimeout as sleep} from 'node:timers/promises'
import type {JsMsg} from '@nats-io/jetstream'

import {type AsyncStore, CALL_STREAM, type StoredCall, WORKER_CONSUMER} from '../shared/async-store.js'
import type {RunResult} from './container-runner.js'
import type {Logger} from '../shared/logger.js'
import {FINAL_STATES} from '../shared/http-contract.js'
import {HEADER, headerValue} from '../shared/protocol.js'
import {PullLoop} from '../shared/pull-loop.js'
import {type CallSettings, parseCallSettings, parseInputSize} from './call-headers.js'

export interface AsyncHost {
  readonly id: string
  /** True when a container slot is free and no call waits for one. */
  hasFreeSlot(): boolean
  /** Resolves when a slot is released (or soon after, as a safety net). */
  slotFreed(): Promise<void>
  /** Runs the call's container in a slot, waiting for one, as a sync call runs. */
  run(call: CallSettings, input: Uint8Array): Promise<RunResult>
  /** Counts the call among those the worker drains on shutdown. */
  track(task: Promise<void>): void
  /** True once shutdown gave up waiting and killed the containers. */
  aborted(): boolean
}

/**
 * What became of one delivery of an asynchronous call (metrics): succeeded, retried (failed, tried
 * again later), dead_lettered, requeued (the worker shut down), skipped (finished before, or still
 * held by a live worker), dropped (taken back by its listener), refused (malformed).
 */
export type AsyncOutcome = 'succeeded' | 'retried' | 'dead_lettered' | 'requeued' | 'skipped' | 'dropped' | 'refused'

export interface AsyncWorkerOptions {
  /** Told each delivery's outcome, by function ("" when the message was malformed). */
  onOutcome?: (fn: string, outcome: AsyncOutcome) => void
  /** First retry delay; each next one is 4 times longer, up to 5 minutes. */
  retryBaseMs?: number
  /** How long one pull waits for a call. */
  pullExpiresMs?: number
  /** How long recording an outcome (or reading the input) is tried through a NATS outage. */
  persistForMs?: number
}

const MAX_RETRY_DELAY_MS = 300_000
/** Attempts lost to dying workers before a call is given up (one that kills its worker each time must end). */
export const MAX_LOST_ATTEMPTS = 3
/** Recording an outcome is retried this long through a NATS outage before the call is left to redelivery. */
const PERSIST_FOR_MS = 60_000
/** A call put back because its input could not be read is delivered again after this. */
const READ_AGAIN_MS = 1000

export function retryDelayMs(attempt: number, baseMs: number): number {
  return Math.min(baseMs * 4 ** Math.max(0, attempt - 1), MAX_RETRY_DELAY_MS)
}

export class AsyncPuller {
  private readonly loop: PullLoop
  /** Calls running here: JetStream redelivers one when its lease lapsed (NATS away), and it must not run twice. */
  private readonly running = new Set<string>()
  /** Calls whose record the lease timer still renews: none once their outcome is being written. */
  private readonly beating = new Set<string>()
  private readonly retryBaseMs: number
  private readonly persistForMs: number
  private readonly onOutcome: (fn: string, outcome: AsyncOutcome) => void

  constructor(
    private readonly store: AsyncStore,
    private readonly host: AsyncHost,
    private readonly log: Logger,
    options: AsyncWorkerOptions = {},
  ) {
    this.retryBaseMs = options.retryBaseMs ?? 1000
    this.persistForMs = options.persistForMs ?? PERSIST_FOR_MS
    this.onOutcome = options.onOutcome ?? (() => {})
    this.loop = new PullLoop({
      consumer: () => this.store.js.consumers.get(CALL_STREAM, WORKER_CONSUMER),
      hasRoom: () => this.host.hasFreeSlot(),
      // Short naps while full as well: a slot may free without a release (a sync call left the queue).
      roomFreed: () => Promise.race([this.host.slotFreed(), sleep(200)]),
      take: (msg) => this.take(msg),
      onPullError: (error) => this.log.debug('pulling asynchronous calls failed; trying again', {error: error.message}),
      expiresMs: options.pullExpiresMs ?? 5000,
      retryMs: 1000,
    })
  }

  start(): void {
    this.loop.start()
  }

  /** Stops pulling; calls already pulled go on (the worker drains them). */
  stop(): void {
    this.loop.stop()
  }

  /**
   * The next pull waits until this call holds its container slot (or is done): until then the slot
   * still looks free, and the worker would take more calls than it has slots, to run them late and,
   * if it dies, run them again elsewhere.
   */
  private take(msg: JsMsg): Promise<void> {
    let admit!: () => void
    const admitted = new Promise<void>((resolve) => (admit = resolve))
    this.host.track(
      this.handle(msg, admit)
        .catch((error: Error) => this.log.error('asynchronous call failed in worker', {error: error.message}))
        .finally(admit),
    )
    return admitted
  }

  private async handle(msg: JsMsg, admitted: () => void = () => {}): Promise<void> {
    let call: CallSettings
    let maxAttempts: number
    try {
      call = parseCallSettings(msg.headers)
      maxAttempts = Number(msg.headers?.get(HEADER.maxAttempts))
      if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new TypeError('invalid Amp-Max-Attempts')
      parseInputSize(msg.headers)
    } catch (error) {
      // It can never run: nothing to retry, and no call id to record it under.
      this.log.warn('asynchronous call refused', {error: (error as Error).message})
      msg.term('malformed call')
      this.onOutcome('', 'refused')
      return
    }
    const log = this.log.child({call: call.callId, fn: call.function})
    const now = new Date().toISOString()
    const found = await this.store.getRecord(call.callId)
    if (!found && (await this.abandoned(msg, call.callId))) {
      log.warn('asynchronous call dropped: its listener could not confirm it, and its caller was told 503')
      msg.ack()
      this.onOutcome(call.function, 'dropped')
      return
    }
    let record: StoredCall = found?.record ?? {
      callId: call.callId,
      function: call.function,
      state: 'queued',
      attempts: 0,
      maxAttempts,
      createdAt: now,
      deadLetter: false,
      ...(msg.headers?.get(HEADER.callbackUrl) ? {callbackUrl: msg.headers.get(HEADER.callbackUrl)} : {}),
    }
    if (FINAL_STATES.has(record.state)) {
      // Finished before, and the ack was lost: do not run it again.
      log.info('asynchronous call already finished: acking it again', {state: record.state})
      msg.ack()
      this.onOutcome(call.function, 'skipped')
      return
    }
    if (this.running.has(call.callId) || (record.state === 'running' && record.worker !== this.host.id && this.leaseHeld(record))) {
      // It still runs, here or on a worker that renews its lease (JetStream redelivered it while NATS was away): leave it be.
      log.info('asynchronous call still runs', {worker: record.worker})
      msg.nak(this.store.settings.leaseMs / 2)
      this.onOutcome(call.function, 'skipped')
      return
    }
    // Attempts are counted in the record, not by JetStream's deliveries: a delivery whose worker died
    // (the record still says running) is lost, not failed, and another worker runs the call again.
    const lost = (record.lost ?? 0) + (record.state === 'running' ? 1 : 0)
    const failures = record.attempts - lost
    if (lost > MAX_LOST_ATTEMPTS) {
      await this.finish(msg, {...record, lost}, undefined, `gave up: its worker stopped during ${lost} attempts`)
      return
    }
    // Claimed before the next await: a second delivery of the call to this worker sees it at once.
    this.running.add(call.callId)
    const attempt = record.attempts + 1
    record = {...record, state: 'running', attempts: attempt, lost, startedAt: now, worker: this.host.id, heartbeatAt: now}
    delete record.nextAttemptAt
    let lease: NodeJS.Timeout | undefined
    try {
      await this.persist(() => this.store.putRecord(record))
      log.info('asynchronous call started', {attempt, of: maxAttempts})
      this.beating.add(call.callId)
      lease = setInterval(() => {
        msg.working()
        // A renewal written after the outcome would put the call back to running for good.
        if (this.beating.has(call.callId)) this.store.putRecord({...record, heartbeatAt: new Date().toISOString()}).catch(() => {})
      }, this.store.settings.leaseMs / 3)
      const input = await this.persist(() => this.store.getInput(call.callId)).catch(async (error: Error) => {
        // Nothing ran: the attempt does not count (the call would read as run twice), and the next delivery tries again.
        this.beating.delete(call.callId)
        await this.store.putRecord({...record, state: 'queued', attempts: attempt - 1}).catch(() => {})
        msg.nak(READ_AGAIN_MS)
        log.warn('asynchronous call put back: its input could not be read', {error: error.message})
        this.onOutcome(call.function, 'requeued')
        return undefined
      })
      if (input === undefined) return
      if (!input) {
        await this.finish(msg, record, undefined, 'its input is gone (kept for the retention time only)')
        return
      }
      // run() takes its slot before its first await.
      // The delivery names the container: a retry never meets the container of an earlier delivery.
      const running = this.host.run({...call, run: msg.info.deliveryCount}, input)
      admitted()
      const result = await running
      if (this.host.aborted()) {
        this.beating.delete(call.callId)
        // Killed by the worker's shutdown, not the function's fault: straight back to the queue.
        await this.store.putRecord({...record, state: 'queued', attempts: attempt - 1}).catch(() => {})
        msg.nak()
        this.onOutcome(call.function, 'requeued')
        return
      }
      await this.persist(() => this.store.putOutput(call.callId, result.stdout, result.stderr))
      const failure = failureOf(result)
      if (!failure || failures + 1 >= maxAttempts) {
        await this.finish(msg, record, result, failure)
        return
      }
      const delay = retryDelayMs(failures + 1, this.retryBaseMs)
      this.beating.delete(call.callId)
      await this.persist(() =>
        this.store.putRecord({
          ...record,
          ...outcomeOf(result, this.host.id),
          state: 'retrying',
          error: failure,
          nextAttemptAt: new Date(Date.now() + delay).toISOString(),
        }),
      )
      log.info('asynchronous call failed: trying again', {attempt, of: maxAttempts, delayMs: delay, error: failure})
      msg.nak(delay)
      this.onOutcome(call.function, 'retried')
    } finally {
      clearInterval(lease)
      this.running.delete(call.callId)
      this.beating.delete(call.callId)
    }
  }

  /** Records the call as finished (dead letter when it failed), queues its callback, then acks it. */
  private async finish(msg: JsMsg, record: StoredCall, result: RunResult | undefined, failure: string | undefined): Promise<void> {
    const finishedAt = new Date().toISOString()
    const final: StoredCall = {
      ...record,
      ...(result ? outcomeOf(result, this.host.id) : {}),
      state: failure ? 'failed' : 'succeeded',
      finishedAt,
      deadLetter: Boolean(failure),
      ...(failure ? {error: headerValue(failure)} : {}),
      ...(record.callbackUrl ? {callback: {state: 'pending' as const, attempts: 0}} : {}),
    }
    this.beating.delete(record.callId)
    if (!failure) delete final.error
    delete final.heartbeatAt
    delete final.nextAttemptAt
    if (failure) {
      await this.persist(() =>
        this.store.publishDeadLetter({
          callId: record.callId,
          function: record.function,
          attempts: final.attempts,
          failedAt: finishedAt,
          error: final.error!,
          ...(final.exit ? {exitCode: final.exit.exitCode} : {}),
        }),
      )
    }
    await this.persist(() => this.store.putRecord(final))
    if (record.callbackUrl) await this.persist(() => this.store.publishCallback(record.callId, record.function))
    await this.persist(() => msg.ackAck())
    this.onOutcome(record.function, failure ? 'dead_lettered' : 'succeeded')
    await this.store.deleteInput(record.callId)
    this.log.info('asynchronous call finished', {call: record.callId, fn: record.function, state: final.state, attempts: final.attempts})
  }

  /**
   * A call with neither record nor input, queued within the retention time: its listener stored it,
   * got no acknowledgement from JetStream, answered the caller 503 and took its input and record back.
   * (Past the retention time, they expired instead: that call goes to the dead letters.)
   */
  private async abandoned(msg: JsMsg, callId: string): Promise<boolean> {
    const age = Date.now() - msg.info.timestampNanos / 1_000_000
    if (!(age < this.store.settings.retentionMs)) return false
    return (await this.persist(() => this.store.getInput(callId))) === null
  }

  private leaseHeld(record: StoredCall): boolean {
    const age = Date.now() - Date.parse(record.heartbeatAt ?? '')
    // A live worker renews every third of the lease; a dead one's last renewal is a whole lease old when JetStream redelivers.
    return age < (this.store.settings.leaseMs * 2) / 3
  }

  /** Runs a JetStream write until it succeeds: through a NATS outage it would otherwise be lost. */
  private async persist<T>(write: () => Promise<T>): Promise<T> {
    const until = Date.now() + this.persistForMs
    for (;;) {
      try {
        return await write()
      } catch (error) {
        if (Date.now() > until) throw error
        await sleep(500)
      }
    }
  }
}

/** Why an attempt failed, or undefined when it exited 0. */
function failureOf(result: RunResult): string | undefined {
  if (result.outcome === 'exited') return result.exitCode === 0 ? undefined : `the function exited ${result.exitCode}`
  if (result.outcome === 'timeout') return 'the function timed out; its container was killed'
  return result.error ?? 'the container could not run'
}

/** The latest attempt's outcome; `exit` only when its container exited (an earlier attempt's is dropped). */
function outcomeOf(result: RunResult, worker: string): Pick<StoredCall, 'outcome' | 'exit'> {
  const exited = result.outcome === 'exited' && result.exitCode !== undefined
  return {
    outcome: result.outcome,
    exit: exited ? {exitCode: result.exitCode!, durationMs: result.durationMs, stderrTruncated: result.stderrTruncated, worker} : undefined,
  }
}
