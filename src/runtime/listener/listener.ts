import {setTimeout as sleep} from 'node:timers/promises'
import type {Server, ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {randomBytes} from 'node:crypto'

import {type AuthOptions, createAuthorizer} from './auth.js'
import {CallLogReader} from '../shared/call-logs.js'
import {type EtcdAuth, type NatsAuth, redactUrls} from '../shared/credentials.js'
import {AsyncCalls} from './async-calls.js'
import {type AsyncSettings, DEFAULT_ASYNC_SETTINGS} from '../shared/async-store.js'
import {type CallbackOptions, CallbackSender} from './callbacks.js'
import {Dispatcher, type DispatcherOptions} from './dispatcher.js'
import {createRequestHandler} from './http-api.js'
import {createHttpServer, type HttpTimeouts} from './http-server.js'
import {cachedCheck, cachedRead, checkReadiness, trackNats} from '../shared/health.js'
import {daemonRegistry, ListenerMetrics, type Registry as MetricsRegistry} from '../shared/metrics.js'
import {createLogger, type Logger} from '../shared/logger.js'
import {connectNats} from '../shared/nats.js'
import {FUNCTIONS_CHANGED_SUBJECT} from '../shared/protocol.js'
import {Registry} from './registry.js'
import {isLoopback} from '../shared/validate.js'
import {failFast, FunctionCache} from './function-cache.js'
import {AmpError} from '../shared/errors.js'

export interface ListenerOptions {
  host: string
  port: number
  /** NATS server URLs, comma-separated. */
  nats: string
  etcd: string[]
  /** Largest call input accepted; bigger ones get 413. */
  maxBodyBytes?: number
  /** Calls served at once; past it a call gets 429 at once. */
  maxInFlight?: number
  /** How long close() waits for calls in flight. */
  drainTimeoutMs?: number
  dispatch?: DispatcherOptions
  logger?: Logger
  /** Where the listener's metrics go (served at /_amp/v1/metrics); tests pass their own. */
  metricsRegistry?: MetricsRegistry
  /** Bearer tokens of the HTTP API (auth.ts); none: open. */
  auth?: AuthOptions
  /** Credentials and TLS for NATS and etcd. */
  natsAuth?: NatsAuth
  etcdAuth?: EtcdAuth
  /** Limits for slow clients; the defaults of http-server.ts unless given (tests use short ones). */
  http?: HttpTimeouts
  /** Asynchronous calls (docs/async.md): retention and lease when this listener creates the streams; callback retries. */
  async?: Partial<AsyncSettings> & {callbacks?: CallbackOptions}
}

export interface Listener {
  id: string
  /** Where it really listens (port 0 picks a free port). */
  url: string
  close(): Promise<void>
}

export const DEFAULT_MAX_BODY = 8 * 1024 * 1024
export const DEFAULT_MAX_IN_FLIGHT = 64
export const DEFAULT_LISTENER_DRAIN_MS = 30_000

export async function startListener(options: ListenerOptions): Promise<Listener> {
  const id = `l${randomBytes(6).toString('hex')}`
  const log = (options.logger ?? createLogger()).child({listener: id})
  const nc = await connectNats(options.nats, `amp-listener ${id}`, options.natsAuth)
  let registry: Registry
  let etcdAnswered: boolean
  try {
    registry = await Registry.connectWith(options.etcd, options.etcdAuth)
    // Wrong credentials or TLS will not fix themselves: fail now rather than answer 503 forever.
    etcdAnswered = await registry.checkAccess()
  } catch (error) {
    await nc.close()
    throw error
  }
  const functions = new FunctionCache(registry, {logger: log})
  // With etcd down, start without functions (the cache keeps retrying) rather than wait another deadline.
  const firstRead = functions.start()
  if (etcdAnswered) await firstRead
  let draining = false
  const nats = trackNats(nc)
  const {callbacks: callbackOptions, ...asyncSettings} = options.async ?? {}
  const asyncCalls = new AsyncCalls(nc, log, {...DEFAULT_ASYNC_SETTINGS, ...asyncSettings})
  const callbacks = new CallbackSender(asyncCalls, log, callbackOptions)
  // One JetStream round trip per scrape at most every 2 s, for the three queue gauges.
  const asyncQueue = cachedRead(() => asyncCalls.queueState(), {waiting: Number.NaN, taken: Number.NaN, deadLetters: Number.NaN})
  // Readiness probes and scrapes share one etcd round trip every 2 s at most; a hung etcd counts as down after 1.5 s.
  const etcdPing = cachedCheck(() => registry.ping(), {maxAgeMs: 2000, timeoutMs: 1500})
  // Up means in sync too: the cache reads everything again after a cut before the listener says so.
  const etcdUp = async () => functions.synced && (await etcdPing())
  const metrics = new ListenerMetrics(options.metricsRegistry ?? daemonRegistry(), {
    asyncQueue: () => asyncQueue(),
    natsConnected: () => nats.connected(),
    etcdUp,
    draining: () => draining,
  })
  const dispatcher = new Dispatcher(nc, id, {
    connected: () => nats.connected(),
    ...options.dispatch,
    onPhases: (fn, phases) => metrics.phases.observe(fn, phases),
  })
  dispatcher.start()
  nats.onDisconnect(() => dispatcher.connectionLost())
  await nc.flush()
  // Requests being served, not only calls out on NATS: one still reading its body must finish too.
  const active = new Set<ServerResponse>()
  const handle = createRequestHandler({
    registry: failFast(registry, functions),
    functions,
    dispatcher,
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY,
    maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
    logger: log,
    draining: () => draining,
    readiness: () => checkReadiness({nats: () => nats.connected(), etcd: etcdUp}, () => draining),
    metrics,
    logs: new CallLogReader(nc),
    asyncCalls,
    // Best effort, core NATS: a worker that misses it still never gives a call a container of the old settings (they are in its pool key).
    functionChanged: (name) => {
      try {
        nc.publish(FUNCTIONS_CHANGED_SUBJECT, name)
      } catch (error) {
        log.warn('could not tell workers a function changed', {fn: name, error: (error as Error).message})
      }
    },
    authorize: options.auth?.token || options.auth?.invokeToken ? createAuthorizer(options.auth) : undefined,
  })
  const server = createHttpServer((req, res) => {
    active.add(res)
    res.once('close', () => active.delete(res))
    // Draining: no keep-alive, so the client's next call opens a new connection, to a listener that takes it.
    if (draining) res.setHeader('Connection', 'close')
    handle(req, res)
  }, options.http)
  try {
    await listen(server, options.host, options.port)
  } catch (error) {
    await nc.close()
    functions.close()
    registry.close()
    throw error
  }
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `http://${host}:${address.port}`
  const etcd = redactUrls(options.etcd.join(','))
  if (!options.auth?.token && !isLoopback(address.address)) {
    log.warn('no token: anyone who reaches this address can create, change and remove functions; set --token or AMP_TOKEN', {url})
  }
  if (!functions.synced) log.warn('etcd is not answering yet: the function API will answer 503 until it does', {etcd})
  // JetStream set up now rather than on the first asynchronous call; without it sync calls go on, and it says why.
  void asyncCalls.open().catch((error: Error) => log.warn('asynchronous calls will answer 503 until JetStream is reachable', {error: error.message}))
  callbacks.start()
  log.info('listener ready', {url, nats: redactUrls(options.nats), etcd, token: Boolean(options.auth?.token), invokeToken: Boolean(options.auth?.invokeToken)})

  let closing: Promise<void> | undefined
  const shutdown = async () => {
    draining = true
    const deadline = options.drainTimeoutMs ?? DEFAULT_LISTENER_DRAIN_MS
    log.info('listener stopping: no new calls, finishing calls in flight', {inFlight: active.size, deadlineMs: deadline})
    for (const res of active) if (!res.headersSent) res.setHeader('Connection', 'close')
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeIdleConnections()
    const started = Date.now()
    while (active.size > 0 && Date.now() - started < deadline) await sleep(50)
    server.closeAllConnections()
    await closed
    await dispatcher.close()
    await callbacks.close()
    await nc.drain().catch(() => {})
    functions.close()
    registry.close()
    log.info('listener stopped')
  }
  return {
    id,
    url,
    close() {
      closing ??= shutdown()
      return closing
    },
  }
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'EADDRINUSE' ? 'the address is already in use' : error.message
      reject(
        new AmpError('service_unavailable', `cannot listen on ${host}:${port}: ${reason}`, {
          suggestions: ['choose another port with --port or AMP_PORT'],
        }),
      )
    })
    server.listen(port, host, () => resolve())
  })
}

