/**
 * `amp up`: the whole stack on one machine. Uses the NATS server and etcd at the given URLs when
 * they answer, else starts them from PATH on those (loopback) addresses, then runs a listener and a
 * worker in this process.
 */
import {mkdir} from 'node:fs/promises'
import path from 'node:path'
import type {AuthOptions} from '../listener/auth.js'
import {type EtcdAuth, type NatsAuth, readTlsFiles, redactUrls} from '../shared/credentials.js'
import {AmpError} from '../shared/errors.js'
import {startListener as defaultStartListener, type Listener, type ListenerOptions} from '../listener/listener.js'
import type {Logger} from '../shared/logger.js'
import {daemonRegistry} from '../shared/metrics.js'
import {isLoopback} from '../shared/validate.js'
import {
  etcdAddress,
  freePort,
  natsAddress,
  probeEtcd,
  probeNats,
  startEtcdServer as defaultStartEtcd,
  startNatsServer as defaultStartNats,
  type ServerProcess,
} from './servers.js'
import {startWorker as defaultStartWorker, type Worker, type WorkerOptions} from '../worker/worker.js'

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222'
export const DEFAULT_ETCD_URL = 'http://127.0.0.1:2379'
/** How long close() gives a server it started to exit on SIGTERM before SIGKILL. */
const SERVER_GRACE_MS = 10_000

export interface StackOptions {
  /** The CLI's data dir; etcd keeps its data in <dataDir>/etcd, the servers log to <dataDir>/*.log. */
  dataDir: string
  /** Listener address. */
  host: string
  port: number
  /** NATS URL(s), comma-separated; default nats://127.0.0.1:4222. */
  nats?: string
  /** etcd URL(s), comma-separated; default http://127.0.0.1:2379. */
  etcd?: string
  concurrency: number
  /** Calls the listener serves at once (429 past it); the listener's default when absent. */
  maxInFlight?: number
  docker: string
  pull: 'missing' | 'never' | 'always'
  logger: Logger
  /** The listener's tokens. */
  auth?: AuthOptions
  /** Credentials and TLS for a NATS server or etcd that already runs; not used for those amp up starts (they have none). */
  natsAuth?: NatsAuth
  etcdAuth?: EtcdAuth
}

export interface Stack {
  listenerUrl: string
  natsUrl: string
  etcdUrl: string
  /** True when amp up started nats-server itself (and will stop it). */
  startedNats: boolean
  startedEtcd: boolean
  /** Log files of the servers amp up started. */
  natsLog?: string
  etcdLog?: string
  /** Stops the listener, the worker, then the servers it started. Idempotent. */
  close(): Promise<void>
}

/** Side effects, replaceable in tests. */
export interface StackDeps {
  startListener?: (options: ListenerOptions) => Promise<Listener>
  startWorker?: (options: WorkerOptions) => Promise<Worker>
  startNatsServer?: typeof defaultStartNats
  startEtcdServer?: typeof defaultStartEtcd
}

export async function startStack(options: StackOptions, deps: StackDeps = {}): Promise<Stack> {
  const logger = options.logger
  const natsUrl = options.nats ?? DEFAULT_NATS_URL
  const etcdUrl = options.etcd ?? DEFAULT_ETCD_URL
  await mkdir(options.dataDir, {recursive: true})

  const servers: ServerProcess[] = []
  let listener: Listener | undefined
  let worker: Worker | undefined
  let closing: Promise<void> | undefined

  const close = () => {
    closing ??= (async () => {
      // Stop taking calls first, then let the worker finish what it runs, then the servers under them.
      for (const [name, service] of [['listener', listener], ['worker', worker]] as const) {
        try {
          await service?.close()
        } catch (error) {
          logger.error(`${name} did not close cleanly`, {error: String(error)})
        }
      }
      await Promise.all(
        servers.map(async (server) => {
          await server.stop(SERVER_GRACE_MS)
          logger.info(`${server.name} stopped`, {url: server.url})
        }),
      )
    })()
    return closing
  }

  try {
    const [nats, etcd] = await Promise.allSettled([
      ensureNats(natsUrl, options, deps),
      ensureEtcd(etcdUrl, options, deps),
    ])
    for (const result of [nats, etcd]) if (result.status === 'fulfilled' && result.value) servers.push(result.value)
    if (nats.status === 'rejected') throw nats.reason
    if (etcd.status === 'rejected') throw etcd.reason

    for (const server of servers) {
      void server.exited.then(() => {
        if (!closing) logger.error(`${server.name} exited unexpectedly`, {url: server.url, log: server.logFile})
      })
    }

    // One registry for both: the listener's /_amp/v1/metrics shows the worker's metrics too.
    const metricsRegistry = daemonRegistry()
    const natsAuth = servers.some((server) => server.name === 'nats-server') ? undefined : options.natsAuth
    worker = await (deps.startWorker ?? defaultStartWorker)({
      metricsRegistry,
      nats: natsUrl,
      concurrency: options.concurrency,
      docker: options.docker,
      pull: options.pull,
      natsAuth,
      logger: logger.child({component: 'worker'}),
    })
    listener = await (deps.startListener ?? defaultStartListener)({
      metricsRegistry,
      host: options.host,
      port: options.port,
      nats: natsUrl,
      etcd: splitUrls(etcdUrl),
      auth: options.auth,
      natsAuth,
      etcdAuth: servers.some((server) => server.name === 'etcd') ? undefined : options.etcdAuth,
      maxInFlight: options.maxInFlight,
      logger: logger.child({component: 'listener'}),
    })
  } catch (error) {
    await close()
    throw error
  }

  const startedNats = servers.find((server) => server.name === 'nats-server')
  const startedEtcd = servers.find((server) => server.name === 'etcd')
  return {
    listenerUrl: listener.url,
    natsUrl,
    etcdUrl,
    startedNats: Boolean(startedNats),
    startedEtcd: Boolean(startedEtcd),
    natsLog: startedNats?.logFile,
    etcdLog: startedEtcd?.logFile,
    close,
  }
}

function splitUrls(urls: string): string[] {
  return urls
    .split(',')
    .map((url) => url.trim())
    .filter(Boolean)
}

/** A server to start on the address of the only URL given, if that is a loopback address. */
function localAddress(urls: string, parse: (url: string) => {host: string; port: number}): {host: string; port: number} | undefined {
  const list = splitUrls(urls)
  if (list.length !== 1) return undefined
  const address = parse(list[0])
  if (!isLoopback(address.host)) return undefined
  // Bind the IPv4 loopback for "localhost": clients try both families, the servers bind one.
  return {host: address.host === 'localhost' ? '127.0.0.1' : address.host, port: address.port}
}

async function ensureNats(urls: string, options: StackOptions, deps: StackDeps): Promise<ServerProcess | undefined> {
  const answers = await Promise.all(splitUrls(urls).map((url) => probeNats(url)))
  if (answers.some(Boolean)) {
    options.logger.info('using the NATS server that is already running', {url: redactUrls(urls)})
    return undefined
  }
  const address = localAddress(urls, natsAddress)
  if (!address) {
    throw new AmpError('service_unavailable', `no NATS server answers at ${redactUrls(urls)}`, {
      suggestions: ['start it, or point --nats at a running one; amp up only starts nats-server on a loopback address'],
    })
  }
  const server = await (deps.startNatsServer ?? defaultStartNats)({
    ...address,
    // JetStream keeps the functions' logs (amp function logs), on disk under the data dir.
    jetStreamDir: path.join(options.dataDir, 'nats'),
    logFile: path.join(options.dataDir, 'nats-server.log'),
  })
  options.logger.info('nats-server started', {url: server.url, pid: server.pid, log: server.logFile})
  return server
}

async function ensureEtcd(urls: string, options: StackOptions, deps: StackDeps): Promise<ServerProcess | undefined> {
  // An etcd with TLS answers only to amp's CA (and client certificate).
  const tls = await readTlsFiles('etcd', options.etcdAuth?.tls)
  const answers = await Promise.all(splitUrls(urls).map((url) => probeEtcd(url, undefined, tls)))
  if (answers.includes('healthy') || answers.includes('unhealthy')) {
    if (!answers.includes('healthy')) options.logger.warn('etcd answers but reports itself unhealthy', {url: urls})
    options.logger.info('using the etcd that is already running', {url: redactUrls(urls)})
    return undefined
  }
  const address = localAddress(urls, etcdAddress)
  if (!address) {
    throw new AmpError('registry_unavailable', `no etcd answers at ${urls}`, {
      suggestions: ['start it, or point --etcd at a running one; amp up only starts etcd on a loopback address'],
    })
  }
  const dataDir = path.join(options.dataDir, 'etcd')
  // etcd wants its data dir private.
  await mkdir(dataDir, {recursive: true, mode: 0o700})
  const server = await (deps.startEtcdServer ?? defaultStartEtcd)({
    ...address,
    // etcd's own convention, peers one port above clients (2379 -> 2380), unless that one is taken.
    peerPort: await freePort(address.host, address.port + 1),
    dataDir,
    name: 'amp',
    logFile: path.join(options.dataDir, 'etcd.log'),
  })
  options.logger.info('etcd started', {url: server.url, pid: server.pid, data: dataDir, log: server.logFile})
  return server
}
