import {randomBytes} from 'node:crypto'
import {hostname} from 'node:os'

import {AsyncPuller, type AsyncWorkerOptions} from './async-worker.js'
import {type AsyncSettings, AsyncStore, DEFAULT_ASYNC_SETTINGS} from '../shared/async-store.js'
import {logStreamSetup} from '../shared/js-replicas.js'
import {ContainerStarts} from './container-events.js'
import {ContainerRunner} from './container-runner.js'
import {removeOrphans, removeOwnContainers, sweepOrphans} from './orphans.js'
import type {PullPolicy} from '../shared/config.js'
import {DockerEvents} from './docker-events.js'
import {ImageCommands} from './image-commands.js'
import {type PreparedRunner, prepareRunner} from './runner-files.js'
import {daemonRegistry, Registry} from '../shared/metrics.js'
import {type OpsServer, startOpsServer} from '../shared/ops-server.js'
import {type NatsAuth, redactUrls} from '../shared/credentials.js'
import {connectNats, type NatsConnection} from '../shared/nats.js'
import {createLogger, type Logger} from '../shared/logger.js'
import {Slots} from './slots.js'
import {WarmSubjects} from './warm-subjects.js'
import {type Worker, WorkerService} from './worker-service.js'

export {DEFAULT_DRAIN_TIMEOUT_MS, type Worker} from './worker-service.js'
export {QUICK_ANSWER_MS, STREAM_ACK_TIMEOUT_MS} from './sync-calls.js'

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

export interface WorkerDeps {
  nc?: NatsConnection
  runner?: ContainerRunner
}

export const DEFAULT_ORPHAN_SWEEP_MS = 30_000

export function newWorkerId(): string {
  const host = hostname().replace(/[^A-Za-z0-9-]/g, '-').slice(0, 40)
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`
}

/**
 * The worker's composition root: builds its parts (slots, warm subjects, container runner, NATS
 * connection, the service of worker-service.ts), starts them in order and returns the running worker.
 */
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
  // Before the runner, which asks the slots whether it may pre-start and tells the warm subjects each function's free containers.
  const slots = new Slots(options.concurrency)
  const warm = new WarmSubjects()
  const runner =
    deps.runner ??
    new ContainerRunner({
      docker,
      pull: options.pull,
      workerId: id,
      startedAt: (name, waitMs) => starts!.take(name, waitMs),
      prestartAllowed: (starting) => slots.hasFreeSlot(starting),
      prestartMax: options.prestartMax ?? options.concurrency,
      prestartIdleMs: options.prestartIdleMs,
      runner: files.files,
      images,
      note,
      onFree: (fn, free) => warm.freeChanged(fn, free),
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
  const worker = new WorkerService({
    nc,
    runner,
    slots,
    warm,
    settings: {
      concurrency: options.concurrency,
      backlog: options.backlog,
      drainTimeoutMs: options.drainTimeoutMs,
      maxInputBytes: options.maxInputBytes,
      registry: options.metricsRegistry ?? (options.metricsPort === undefined ? new Registry() : daemonRegistry()),
      logReplicas: options.async ? options.async.replicas : undefined,
    },
    log,
    id,
  })
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
