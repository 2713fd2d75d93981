/**
 * Starting nats-server and etcd as child processes and waiting until they really serve.
 * Used by `amp up` (stack.ts) and by the integration tests (test/helpers/services.ts).
 */
import {constants} from 'node:fs'
import {access, readFile} from 'node:fs/promises'
import {connect, createServer} from 'node:net'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {execa, type ResultPromise} from 'execa'
import {Agent, request} from 'undici'

import {readTlsFiles, type TlsMaterial} from '../shared/credentials.js'
import {AmpError, type ErrorCode} from '../shared/errors.js'

export const DEFAULT_NATS_PORT = 4222
export const DEFAULT_ETCD_PORT = 2379

/** A server process amp started; `stop()` is idempotent. */
export interface ServerProcess {
  readonly name: string
  /** Client URL: nats://host:port or http://host:port. */
  readonly url: string
  /** Where the server's own stdout/stderr go. */
  readonly logFile: string
  readonly pid: number | undefined
  readonly running: boolean
  /** Settles when the current process exits (at once if none runs). */
  readonly exited: Promise<void>
  /** SIGTERM, then SIGKILL if it has not exited after graceMs. */
  stop(graceMs?: number): Promise<void>
  /** Sends a signal and returns at once (SIGKILL to simulate a crash, SIGSTOP to freeze it). */
  kill(signal?: NodeJS.Signals): void
  /** Stops it if it runs, then starts it again with the same arguments and waits until it serves. */
  restart(): Promise<void>
}

export interface SpawnOptions {
  /** Program name or path; looked up in PATH and then in the sbin directories. */
  binary?: string
  /** Appended to the server's log (created if missing). */
  logFile: string
  /** How long to wait until it serves. */
  readyTimeoutMs?: number
}

export interface NatsServerOptions extends SpawnOptions {
  host: string
  port: number
  /** Turns JetStream on (-js) with its store in this directory (-sd); amp keeps function logs there. */
  jetStreamDir?: string
  /** Extra arguments, e.g. ['-c', configFile]. */
  args?: string[]
}

export interface EtcdServerOptions extends SpawnOptions {
  host: string
  port: number
  /** Peer (raft) port; a single member still listens on one. */
  peerPort: number
  dataDir: string
  /** Member name, unique per data dir. */
  name: string
  args?: string[]
  /**
   * Serve clients over TLS only (an https URL) and require client certificates signed by `ca`. The
   * readiness probe presents cert and key as its own client certificate.
   */
  tls?: {ca: string; cert: string; key: string}
}

const DEFAULT_READY_TIMEOUT_MS = 20_000
const DEFAULT_GRACE_MS = 5000
// Debian installs nats-server in /usr/sbin, which is not in a normal user's PATH.
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']

export async function startNatsServer(options: NatsServerOptions): Promise<ServerProcess> {
  const url = `nats://${urlHost(options.host)}:${options.port}`
  return startServer({
    name: 'nats-server',
    aptPackage: 'nats-server',
    errorCode: 'service_unavailable',
    binary: options.binary ?? 'nats-server',
    args: [
      '-a', options.host,
      '-p', String(options.port),
      ...(options.jetStreamDir ? ['-js', '-sd', options.jetStreamDir] : []),
      ...(options.args ?? []),
    ],
    url,
    logFile: options.logFile,
    readyTimeoutMs: options.readyTimeoutMs,
    probe: () => probeNats(url),
  })
}

export async function startEtcdServer(options: EtcdServerOptions): Promise<ServerProcess> {
  const {tls} = options
  const url = `${tls ? 'https' : 'http'}://${urlHost(options.host)}:${options.port}`
  const peerUrl = `http://${urlHost(options.host)}:${options.peerPort}`
  return startServer({
    name: 'etcd',
    aptPackage: 'etcd-server',
    errorCode: 'registry_unavailable',
    binary: options.binary ?? 'etcd',
    args: [
      '--name', options.name,
      '--data-dir', options.dataDir,
      '--listen-client-urls', url,
      '--advertise-client-urls', url,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `${options.name}=${peerUrl}`,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', options.name,
      '--logger', 'zap',
      '--log-outputs', 'stderr',
      '--log-level', 'warn',
      ...(tls ? ['--cert-file', tls.cert, '--key-file', tls.key, '--trusted-ca-file', tls.ca, '--client-cert-auth'] : []),
      ...(options.args ?? []),
    ],
    url,
    logFile: options.logFile,
    readyTimeoutMs: options.readyTimeoutMs,
    probe: async () => (await probeEtcd(url, 1000, tls && (await readTlsFiles('etcd', tls)))) === 'healthy',
  })
}

interface ServerSpec {
  name: string
  aptPackage: string
  errorCode: ErrorCode
  binary: string
  args: string[]
  url: string
  logFile: string
  readyTimeoutMs?: number
  probe: () => Promise<boolean>
}

async function startServer(spec: ServerSpec): Promise<ServerProcess> {
  const binary = await findExecutable(spec.binary)
  if (!binary) {
    throw new AmpError(spec.errorCode, `cannot start ${spec.name}: "${spec.binary}" is not installed or not in PATH`, {
      suggestions: [`install it with: apt-get install ${spec.aptPackage}`],
    })
  }
  let child: ResultPromise | undefined
  let exited: Promise<unknown> = Promise.resolve()
  let running = false

  const spawn = async () => {
    const log = {file: spec.logFile, append: true}
    const proc = execa(binary, spec.args, {stdin: 'ignore', stdout: log, stderr: log, reject: false})
    child = proc
    running = true
    exited = proc.then((result) => {
      running = false
      return result
    })
    await waitReady(spec, () => running, exited)
  }

  const stop = async (graceMs = DEFAULT_GRACE_MS) => {
    if (!running || !child) return exited.then(() => undefined)
    child.kill('SIGTERM')
    // A stopped (SIGSTOP) process would not act on SIGTERM; wake it.
    child.kill('SIGCONT')
    // Cancel the grace timer once it has exited, or it alone would keep the process alive.
    const grace = new AbortController()
    const done = await Promise.race([
      exited.then(() => true),
      sleep(graceMs, false, {signal: grace.signal}).catch(() => false),
    ])
    grace.abort()
    if (!done) {
      child.kill('SIGKILL')
      await exited
    }
  }

  const server: ServerProcess = {
    name: spec.name,
    url: spec.url,
    logFile: spec.logFile,
    get pid() {
      return running ? child?.pid : undefined
    },
    get running() {
      return running
    },
    get exited() {
      return exited.then(() => undefined)
    },
    stop,
    kill(signal = 'SIGTERM') {
      if (running) child?.kill(signal)
    },
    async restart() {
      await stop()
      await spawn()
    },
  }

  try {
    await spawn()
  } catch (error) {
    await stop(1000)
    throw error
  }
  return server
}

async function waitReady(spec: ServerSpec, isRunning: () => boolean, exited: Promise<unknown>): Promise<void> {
  const timeoutMs = spec.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!isRunning()) break
    if (await spec.probe().catch(() => false)) return
    if (!isRunning()) break
    await Promise.race([sleep(50), exited])
  }
  const tail = await logTail(spec.logFile)
  const why = isRunning() ? `did not answer on ${spec.url} within ${timeoutMs} ms` : 'exited before it was ready'
  throw new AmpError(spec.errorCode, `${spec.name} ${why} (log: ${spec.logFile})${tail ? `: ${tail}` : ''}`, {
    suggestions: [`look at ${spec.logFile}; is ${spec.url} already taken by another program?`],
  })
}

/** The last meaningful line of a server log, for error messages. */
async function logTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '')
  const lines = text.trim().split('\n').filter(Boolean)
  return (lines.at(-1) ?? '').slice(0, 300)
}

/** Absolute path of an executable: `name` itself if it holds a '/', else searched in PATH and the sbin dirs. */
export async function findExecutable(name: string): Promise<string | undefined> {
  const candidates = name.includes('/')
    ? [name]
    : [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...SBIN_DIRS].map((dir) => path.join(dir, name))
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK)
      return candidate
    } catch {
      // try the next one
    }
  }
  return undefined
}

/** A free TCP port on host: `preferred` when it is free, else any the OS gives (a race remains: it is free now, not reserved). */
export async function freePort(host = '127.0.0.1', preferred = 0): Promise<number> {
  if (preferred > 0 && preferred <= 65535) {
    try {
      return await listenOnce(host, preferred)
    } catch {
      // Taken (or not ours to take): any free one.
    }
  }
  return listenOnce(host, 0)
}

/** Listens on host:port (0: any) and closes again; the port it got. */
function listenOnce(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({host, port}, () => {
      const address = server.address()
      const got = typeof address === 'object' && address ? address.port : 0
      server.close(() => (got ? resolve(got) : reject(new Error('no free port'))))
    })
  })
}

/** host:port of a NATS URL; accepts "nats://h:p", "h:p" and "h". */
export function natsAddress(url: string): {host: string; port: number} {
  const parsed = new URL(url.includes('://') ? url : `nats://${url}`)
  return {host: parsed.hostname.replace(/^\[|\]$/g, ''), port: parsed.port ? Number(parsed.port) : DEFAULT_NATS_PORT}
}

export function etcdAddress(url: string): {host: string; port: number} {
  const parsed = new URL(url.includes('://') ? url : `http://${url}`)
  return {host: parsed.hostname.replace(/^\[|\]$/g, ''), port: parsed.port ? Number(parsed.port) : DEFAULT_ETCD_PORT}
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host
}

/** True when a NATS server answers at url: it sends an INFO line as soon as a client connects. */
export async function probeNats(url: string, timeoutMs = 1000): Promise<boolean> {
  const {host, port} = natsAddress(url)
  return new Promise((resolve) => {
    const socket = connect({host, port})
    let received = ''
    const finish = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => finish(false))
    socket.once('error', () => finish(false))
    socket.once('close', () => finish(false))
    socket.on('data', (data) => {
      received += data.toString('latin1')
      if (received.includes('\r\n') || received.length >= 5) finish(received.startsWith('INFO '))
    })
  })
}

/**
 * What answers at an etcd client URL: 'healthy' (GET /health says true), 'unhealthy' (etcd answers
 * but has no leader yet, or lost it) or 'unreachable' (nothing, or not etcd).
 */
export async function probeEtcd(url: string, timeoutMs = 1000, tls?: TlsMaterial): Promise<'healthy' | 'unhealthy' | 'unreachable'> {
  // With TLS: etcd's CA, and the client certificate an etcd with --client-cert-auth asks for.
  const dispatcher = tls ? new Agent({connect: {ca: tls.ca, cert: tls.cert, key: tls.key}}) : undefined
  try {
    const response = await request(new URL('/health', url.includes('://') ? url : `http://${url}`), {
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      dispatcher,
    })
    const body = (await response.body.json().catch(() => undefined)) as {health?: unknown} | undefined
    if (!body || typeof body !== 'object' || !('health' in body)) return 'unreachable'
    return body.health === 'true' || body.health === true ? 'healthy' : 'unhealthy'
  } catch {
    return 'unreachable'
  } finally {
    await dispatcher?.close()
  }
}
