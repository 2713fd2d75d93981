/**
 * Real nats-server and etcd for integration tests, each on free loopback ports with its own temp dir.
 * Call `stop()` in an `after` hook; whatever is left is killed and removed when the test process exits,
 * so a failing test never leaves a server or a temp dir behind.
 */
import {mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {execa} from 'execa'
import {freePort, startEtcdServer, startNatsServer, type ServerProcess} from '../../src/runtime/ops/servers.js'
import {waitUntil} from './wait.js'

export interface ServiceHandle {
  /** nats://127.0.0.1:PORT or http://127.0.0.1:PORT */
  url: string
  /** Where the server logs; look here when a test fails. */
  logFile: string
  /** Graceful stop (SIGTERM, SIGKILL after a few seconds) and temp dir removal; idempotent. */
  stop(): Promise<void>
  /** Sends a signal and returns at once: SIGKILL simulates a crash. For a hang use hang(). */
  kill(signal?: NodeJS.Signals): void
  /** SIGSTOP, returning once every thread of the server has stopped: from then on it answers nothing. */
  hang(): Promise<void>
  /** Starts it again on the same port (and, for etcd, the same data). */
  restart(): Promise<void>
}

export interface NatsOptions {
  /** Server max_payload in bytes (nats-server 2.9 only takes it from a config file). */
  maxPayload?: number
  /** Extra nats-server arguments. */
  args?: string[]
  /** JetStream (-js, store in the temp dir), which keeps function logs; on unless false. */
  jetStream?: boolean
}

const live = new Set<{server: ServerProcess; dir: string}>()

// Synchronous on purpose: 'exit' handlers cannot wait. Mocha runs with `exit: true`.
process.once('exit', () => {
  for (const {server, dir} of live) {
    server.kill('SIGKILL')
    rmSync(dir, {recursive: true, force: true})
  }
})

function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `amp-test-${prefix}-`))
}

function handle(server: ServerProcess, dir: string): ServiceHandle {
  const entry = {server, dir}
  live.add(entry)
  let stopped: Promise<void> | undefined
  return {
    url: server.url,
    logFile: server.logFile,
    kill: (signal) => server.kill(signal),
    async hang() {
      const pid = server.pid
      if (pid === undefined) throw new Error(`${server.name} is not running`)
      server.kill('SIGSTOP')
      await waitUntil(() => `every thread of ${server.name} (pid ${pid}) to stop`, () => allThreadsStopped(pid), 5000, 5)
    },
    restart: () => server.restart(),
    stop() {
      stopped ??= server.stop(3000).finally(() => {
        live.delete(entry)
        rmSync(dir, {recursive: true, force: true})
      })
      return stopped
    },
  }
}

// kill(2) returns before a SIGSTOP has taken hold: the kernel wakes one thread to start the group stop,
// and until it gets a CPU the others go on serving (on a busy machine, a request sent right after
// SIGSTOP was answered 128 times in 300).
function allThreadsStopped(pid: number): boolean {
  return readdirSync(`/proc/${pid}/task`).every((task) => {
    const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8')
    // The state follows the command name, which is in parentheses and may hold spaces.
    return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0])
  })
}

/** Free ports can be taken between asking and binding; try a few times. */
async function withRetries<T>(start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start()
    } catch (error) {
      if (attempt >= attempts) throw error
    }
  }
}

export async function startNats(options: NatsOptions = {}): Promise<ServiceHandle> {
  const dir = tempDir('nats')
  try {
    const args = [...(options.args ?? [])]
    if (options.maxPayload !== undefined) {
      const config = path.join(dir, 'nats.conf')
      writeFileSync(config, `max_payload: ${options.maxPayload}\n`)
      args.push('-c', config)
    }
    const jetStreamDir = options.jetStream === false ? undefined : path.join(dir, 'jetstream')
    const server = await withRetries(async () =>
      startNatsServer({host: '127.0.0.1', port: await freePort(), args, jetStreamDir, logFile: path.join(dir, 'nats-server.log')}),
    )
    return handle(server, dir)
  } catch (error) {
    rmSync(dir, {recursive: true, force: true})
    throw error
  }
}

export interface EtcdOptions {
  /** Serve https only, with client certificates (servers.ts EtcdServerOptions.tls). */
  tls?: {ca: string; cert: string; key: string}
}

export async function startEtcd(options: EtcdOptions = {}): Promise<ServiceHandle> {
  const dir = tempDir('etcd')
  try {
    const server = await withRetries(async () => {
      rmSync(path.join(dir, 'data'), {recursive: true, force: true})
      return startEtcdServer({
        host: '127.0.0.1',
        port: await freePort(),
        peerPort: await freePort(),
        dataDir: path.join(dir, 'data'),
        name: path.basename(dir),
        logFile: path.join(dir, 'etcd.log'),
        tls: options.tls,
      })
    })
    return handle(server, dir)
  } catch (error) {
    rmSync(dir, {recursive: true, force: true})
    throw error
  }
}

/** The docker CLI the tests use (AMP_DOCKER, as for the worker). */
export const DOCKER = process.env.AMP_DOCKER ?? 'docker'

let dockerChecked: Promise<void> | undefined

/** Fails fast, with what to do, when no Docker daemon answers. Call it in a `before` hook. */
export function requireDocker(): Promise<void> {
  dockerChecked ??= execa(DOCKER, ['info', '--format', '{{.ServerVersion}}'], {timeout: 15_000, reject: false}).then(
    (result) => {
      if (result.exitCode === 0 && String(result.stdout).trim()) return
      const why = String(result.stderr || result.message || '').trim().split('\n').at(-1)
      throw new Error(
        `Docker is not available (\`${DOCKER} info\` failed: ${why}). ` +
          'The integration tests need a running dockerd: run scripts/setup.sh as root, or start dockerd.',
      )
    },
  )
  return dockerChecked
}
