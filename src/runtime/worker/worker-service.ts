import type {Subscription} from '@nats-io/transport-node'

import type {AsyncHost, AsyncPuller} from './async-worker.js'
import {CallLogPublisher} from '../shared/call-logs.js'
import {type CallSettings} from './call-headers.js'
import {observeCall} from './call-metrics.js'
import {type Clock, realClock} from './clock.js'
import type {ContainerRunner, RunResult} from './container-runner.js'
import {cachedCheck, checkReadiness, type ReadinessReport, trackNats} from '../shared/health.js'
import {type ReplicasSetting} from '../shared/js-replicas.js'
import {type Registry, WorkerMetrics} from '../shared/metrics.js'
import type {Logger} from '../shared/logger.js'
import type {NatsConnection} from '../shared/nats.js'
import {CALL_SUBJECT_PREFIX, chunkSizeFor, FUNCTIONS_CHANGED_SUBJECT, WORKER_QUEUE} from '../shared/protocol.js'
import type {Slots} from './slots.js'
import {SyncCalls} from './sync-calls.js'
import {checkName} from '../shared/validate.js'
import type {WarmSubjects} from './warm-subjects.js'

export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000
const DEFAULT_MAX_INPUT = 64 * 1024 * 1024

export interface Worker {
  id: string
  /** http://host:port of the metrics and health endpoint, when --metrics-port is set. */
  metricsUrl?: string
  /** Ready: NATS connected, docker reachable, not draining. */
  readiness(): Promise<ReadinessReport>
  close(): Promise<void>
}

/** The worker's settings (worker.ts WorkerOptions) that the service reads. */
export interface ServiceSettings {
  /** Containers run at once. */
  concurrency: number
  /** Calls accepted beyond `concurrency` that wait for a free slot (4 × concurrency when absent); past this the worker answers "busy". */
  backlog?: number
  /** How long close() waits for calls in flight before it kills their containers. */
  drainTimeoutMs?: number
  maxInputBytes?: number
  /** Where the worker's metrics go. */
  registry: Registry
  /** JetStream replicas of the log stream, when this worker creates it. */
  logReplicas?: ReplicasSetting
}

/** What the service asks of the container runner. */
export type ServiceRunner = Pick<ContainerRunner, 'engine' | 'run' | 'cancel' | 'close' | 'killAll' | 'drainPrestarted' | 'prestarted'>

export interface WorkerServiceParts {
  nc: NatsConnection
  runner: ServiceRunner
  /** Made before the runner, which asks them whether it may pre-start. */
  slots: Slots
  /** Made before the runner, which tells it each function's free containers. */
  warm: WarmSubjects
  settings: ServiceSettings
  log: Logger
  id: string
  /** The drain deadline and the calls' queue time; the real clock unless a test gives its own. */
  clock?: Clock
}

/**
 * A running worker: takes sync calls (sync-calls.ts) and asynchronous ones (the puller, through
 * AsyncHost) into its slots, tells readiness and metrics, and drains on close: no new calls, the
 * calls in flight finish, or are killed at the drain deadline.
 */
export class WorkerService implements Worker, AsyncHost {
  readonly id: string
  /** Publishes each call's stderr lines to JetStream (best effort). */
  readonly callLogs: CallLogPublisher
  readonly metrics: WorkerMetrics
  /** Stopped last, once the calls are done: the metrics endpoint, the docker events follower. */
  readonly stopLast: Array<() => unknown> = []
  metricsUrl?: string
  private readonly calls = new Set<Promise<void>>()
  /** Pulls asynchronous calls once JetStream is set up. */
  private puller?: AsyncPuller
  private sub?: Subscription
  private changesSub?: Subscription
  private closing?: Promise<void>
  private gaveUp = false
  private readonly nc: NatsConnection
  private readonly runner: ServiceRunner
  private readonly slots: Slots
  private readonly warm: WarmSubjects
  private readonly settings: ServiceSettings
  private readonly log: Logger
  private readonly clock: Clock
  private readonly sync: SyncCalls
  private readonly nats: {connected(): boolean}
  private readonly dockerUp: () => Promise<boolean>

  constructor({nc, runner, slots, warm, settings, log, id, clock = realClock}: WorkerServiceParts) {
    this.id = id
    this.nc = nc
    this.runner = runner
    this.slots = slots
    this.warm = warm
    this.settings = settings
    this.log = log
    this.clock = clock
    this.callLogs = new CallLogPublisher(nc, id, log, {replicas: settings.logReplicas})
    this.nats = trackNats(nc)
    this.dockerUp = cachedCheck(async () => !(await runner.engine()).error, {maxAgeMs: 5000, timeoutMs: 3000})
    this.metrics = new WorkerMetrics(
      settings.registry,
      {
        natsConnected: () => this.nats.connected(),
        dockerUp: () => this.dockerUp(),
        draining: () => this.closing !== undefined,
        slotsUsed: () => this.slots.used,
        inFlight: () => this.calls.size,
        prestarted: () => this.runner.prestarted,
      },
      settings.concurrency,
    )
    const backlog = settings.backlog ?? settings.concurrency * 4
    this.sync = new SyncCalls({
      nc,
      workerId: id,
      runner,
      slots,
      callLogs: this.callLogs,
      metrics: this.metrics,
      log,
      maxInput: settings.maxInputBytes ?? DEFAULT_MAX_INPUT,
      chunkSize: chunkSizeFor(nc.info?.max_payload ?? 1024 * 1024),
      full: () => this.closing !== undefined || this.calls.size >= settings.concurrency + backlog,
      track: (task) => this.track(task),
      gaveUp: () => this.gaveUp,
      now: () => this.clock.now(),
    })
  }

  readiness(): Promise<ReadinessReport> {
    return checkReadiness({nats: () => this.nats.connected(), docker: () => this.dockerUp()}, () => this.closing !== undefined)
  }

  start(): void {
    const onMessage = this.sync.onMessage.bind(this.sync)
    this.sub = this.nc.subscribe(`${CALL_SUBJECT_PREFIX}.*`, {queue: WORKER_QUEUE, callback: onMessage})
    this.warm.start((subject) => this.nc.subscribe(subject, {queue: WORKER_QUEUE, callback: onMessage}))
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

  /** Starts pulling asynchronous calls, unless the worker is already stopping; false then. */
  startPuller(puller: AsyncPuller): boolean {
    if (this.closing) return false
    this.puller = puller
    puller.start()
    return true
  }

  hasFreeSlot(): boolean {
    return this.slots.hasFreeSlot()
  }

  slotFreed(): Promise<void> {
    return this.slots.slotFreed()
  }

  track(task: Promise<void>): void {
    const tracked = task.finally(() => this.calls.delete(tracked))
    this.calls.add(tracked)
  }

  aborted(): boolean {
    return this.gaveUp
  }

  /** Runs an asynchronous call's container in a slot, as sync-calls.ts does for a sync call. */
  async run(call: CallSettings, input: Uint8Array): Promise<RunResult> {
    const queuedAt = this.clock.now()
    await this.slots.acquire().slot
    const queueMs = this.clock.now() - queuedAt
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
      this.slots.release()
    }
    observeCall(this.metrics, call, result, queueMs)
    return result
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    const deadline = this.settings.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS
    this.log.info('worker stopping: no new calls, finishing calls in flight', {inFlight: this.calls.size, deadlineMs: deadline})
    this.slots.drain()
    const warm = this.warm.close()
    await Promise.all([this.sub?.drain().catch(() => {}), warm])
    this.changesSub?.unsubscribe()
    this.puller?.stop()
    // Idle pre-started containers go at once (one docker rm), while the calls in flight finish.
    const pools = this.runner.close()
    let cancel = () => {}
    const finished = await Promise.race([
      Promise.allSettled([...this.calls]).then(() => true),
      new Promise<false>((resolve) => (cancel = this.clock.after(deadline, () => resolve(false)))),
    ])
    cancel()
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
