/**
 * An amp stack inside the test process, for integration suites: a real nats-server and etcd
 * (services.ts), workers on the local dockerd and listeners, all logging to silentLogger, and an
 * AmpClient for the first listener. Start it in `before` and call `stop()` in `after`.
 */
import {expect} from 'chai'
import {request} from 'undici'

import {AmpClient} from '../../src/runtime/client/client.js'
import {startListener, type Listener, type ListenerOptions} from '../../src/runtime/listener/listener.js'
import {silentLogger} from '../../src/runtime/shared/logger.js'
import {startWorker, type Worker, type WorkerOptions} from '../../src/runtime/worker/worker.js'
import {ensureTestImages} from './images.js'
import {DOCKER, requireDocker, startEtcd, startNats, type NatsOptions, type ServiceHandle} from './services.js'

export type WorkerSettings = Partial<Omit<WorkerOptions, 'nats'>>
export type ListenerSettings = Partial<Omit<ListenerOptions, 'nats' | 'etcd'>>

export interface TestStackOptions {
  /** nats-server options: {jetStream: false}, {maxPayload}... */
  nats?: NatsOptions
  /** Each worker's settings (concurrency 4, the tests' docker, silentLogger unless given); false: no worker. */
  worker?: WorkerSettings | false
  /** How many workers; 1 unless given. */
  workers?: number
  /** Each listener's settings (127.0.0.1, any free port, silentLogger unless given). */
  listener?: ListenerSettings
  /** How many listeners; 1 unless given. */
  listeners?: number
  /** requireDocker() and ensureTestImages() first; on unless `worker` is false. */
  docker?: boolean
}

export interface TestStack {
  nats: ServiceHandle
  etcd: ServiceHandle
  /** The first listener. */
  listener: Listener
  listeners: Listener[]
  /** The first worker. */
  worker: Worker
  /** Every worker the stack started, addWorker's too. */
  workers: Worker[]
  /** For the first listener. */
  client: AmpClient
  /** Starts one more worker on the stack's NATS, with the stack's worker settings and `settings` over them; stop() closes it too. */
  addWorker(settings?: WorkerSettings): Promise<Worker>
  /** Closes the listeners, then the workers, then stops NATS and etcd. */
  stop(): Promise<void>
}

/** A stack started with `worker: false`: no `worker` (`workers` is empty until addWorker). */
export type StackWithoutWorker = Omit<TestStack, 'worker'>

export function startTestStack(options: TestStackOptions & {worker: false}): Promise<StackWithoutWorker>
export function startTestStack(options?: TestStackOptions): Promise<TestStack>
export async function startTestStack(options: TestStackOptions = {}): Promise<StackWithoutWorker & {worker?: Worker}> {
  const withWorkers = options.worker !== false
  if (options.docker ?? withWorkers) {
    await requireDocker()
    await ensureTestImages()
  }
  const [nats, etcd] = await Promise.all([startNats(options.nats), startEtcd()])
  const workerSettings = options.worker || {}
  const listeners: Listener[] = []
  const workers: Worker[] = []
  const addWorker = async (settings: WorkerSettings = {}) => {
    const worker = await startWorker({concurrency: 4, docker: DOCKER, logger: silentLogger, ...workerSettings, ...settings, nats: nats.url})
    workers.push(worker)
    return worker
  }
  const stop = async () => {
    for (const listener of listeners) await listener.close()
    for (const worker of workers) await worker.close()
    await Promise.all([nats.stop(), etcd.stop()])
  }
  try {
    for (let i = 0; i < (withWorkers ? (options.workers ?? 1) : 0); i++) await addWorker()
    for (let i = 0; i < (options.listeners ?? 1); i++) {
      listeners.push(
        await startListener({host: '127.0.0.1', port: 0, logger: silentLogger, ...options.listener, nats: nats.url, etcd: [etcd.url]}),
      )
    }
  } catch (error) {
    await stop().catch(() => {})
    throw error
  }
  return {
    nats,
    etcd,
    listener: listeners[0],
    listeners,
    worker: workers[0],
    workers,
    client: new AmpClient({server: listeners[0].url}),
    addWorker,
    stop,
  }
}

/** Creates a function, or replaces it, through a listener's HTTP API. */
export async function createFunction(listener: Listener, name: string, spec: Record<string, unknown>): Promise<void> {
  const res = await request(`${listener.url}/_amp/v1/functions/${name}?replace=true`, {method: 'PUT', body: JSON.stringify(spec)})
  expect(res.statusCode, await res.body.text()).to.be.oneOf([200, 201])
}
