import {setTimeout as sleep} from 'node:timers/promises'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import {closeSync, existsSync, openSync, unlinkSync, writeFileSync} from 'node:fs'
import {hostname, tmpdir} from 'node:os'
import path from 'node:path'

import type {KillReason} from './metrics.js'
import {CALL_ID, type Outcome} from './protocol.js'
import {checkCpus, checkEnv, checkImage, checkMemoryBytes, checkName, checkNetwork, checkPidsLimit, envLines} from './validate.js'

/** The labels every amp container carries, so amp can find (and only kill) its own containers. */
export const LABEL = {
  managed: 'amp.managed',
  call: 'amp.call',
  function: 'amp.function',
  worker: 'amp.worker',
  host: 'amp.worker-host',
  pid: 'amp.worker-pid',
} as const

export type PullPolicy = 'missing' | 'never' | 'always'
const PULL_POLICIES: readonly string[] = ['missing', 'never', 'always'] satisfies PullPolicy[]

export interface RunSpec {
  callId: string
  function: string
  image: string
  network: string
  timeoutMs: number
  /** Container limits: memory (no swap on top), CPUs, processes. */
  memoryBytes: number
  cpus: number
  pidsLimit: number
  /** Environment variables of the container; the values never reach docker's argv (see envFile). */
  env: Record<string, string>
  input: Uint8Array
  /** Gets the container's stderr as it arrives (the worker publishes it as the call's log); must not throw. */
  onStderr?: (chunk: Buffer) => void
  /** Gets the container's stdout as it arrives (streamed calls); must not throw. */
  onStdout?: (chunk: Buffer) => void
}

export interface RunResult {
  outcome: Outcome
  /** Set when outcome is "exited". */
  exitCode?: number
  stdout: Buffer
  stderr: Buffer
  stderrTruncated: boolean
  /** Why the container could not run (outcome "failed"). */
  error?: string
  durationMs: number
  /** From running docker run to Docker's start event of the container; set only when that event was seen. */
  startMs?: number
  /** From Docker's start event to the container's exit; set with startMs. */
  runMs?: number
  /** Why amp killed the container, if it did. */
  killed?: KillReason
}

export interface ContainerRunnerOptions {
  docker?: string
  pull?: PullPolicy
  workerId: string
  maxOutputBytes?: number
  maxStderrBytes?: number
  /** Injected for tests; execa by default. */
  exec?: typeof execa
  now?: () => number
  /** When the named container started (epoch ms), if known: see container-events.ts. */
  startedAt?: (containerName: string) => Promise<number | undefined>
}

export const DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024
export const DEFAULT_MAX_STDERR = 1024 * 1024
const KILL_RETRY_MS = 250

export const containerName = (callId: string): string => `amp-${callId}`

/** Where the docker CLI reads a call's environment: its fd 3 (see envFile). */
const ENV_FD_PATH = '/dev/fd/3'
// tmpfs where there is one: the environment never touches a disk (docker keeps its own copy while the container exists).
const ENV_DIR = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()

/**
 * The environment as an unnamed file, opened for reading (its descriptor is returned), to give the
 * docker CLI as fd 3: the file is created private (0600, O_EXCL, so no symlink is followed) and
 * unlinked before anything is written, so no other process can open it by name. A Node pipe would
 * not do: it is a socket, and docker cannot open /dev/fd/N of a socket. Synchronous on purpose: a
 * few tmpfs calls, and no await between a call starting and its container being known to killAll.
 */
function envFile(env: Record<string, string>): number {
  const file = path.join(ENV_DIR, `amp-env-${randomBytes(16).toString('hex')}`)
  const writer = openSync(file, 'wx', 0o600)
  try {
    const reader = openSync(file, 'r')
    unlinkSync(file)
    writeFileSync(writer, envLines(env))
    return reader
  } finally {
    closeSync(writer)
    try {
      unlinkSync(file)
    } catch {
      // Already unlinked: the usual case.
    }
  }
}

/** The complete `docker run` argument array. Every value in it has been validated. */
export function dockerRunArgs(spec: RunSpec, workerId: string, pull: PullPolicy): string[] {
  if (!CALL_ID.test(spec.callId)) throw new TypeError('invalid call id')
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(workerId)) throw new TypeError('invalid worker id')
  if (!PULL_POLICIES.includes(pull)) throw new TypeError('invalid pull policy')
  const labels = {
    [LABEL.managed]: 'true',
    [LABEL.call]: spec.callId,
    [LABEL.function]: checkName(spec.function),
    [LABEL.worker]: workerId,
    [LABEL.host]: hostname(),
    [LABEL.pid]: String(process.pid),
  }
  return [
    'run',
    '--interactive',
    '--rm',
    '--name',
    containerName(spec.callId),
    ...Object.entries(labels).flatMap(([key, value]) => ['--label', `${key}=${value}`]),
    '--network',
    checkNetwork(spec.network),
    // Hardened by default: no privilege gain through setuid binaries, no capabilities, bounded
    // processes, memory (the same value as memory+swap: no swap) and CPU.
    '--security-opt',
    'no-new-privileges',
    '--cap-drop',
    'ALL',
    '--pids-limit',
    String(checkPidsLimit(spec.pidsLimit)),
    '--memory',
    String(checkMemoryBytes(spec.memoryBytes)),
    '--memory-swap',
    String(spec.memoryBytes),
    '--cpus',
    String(checkCpus(spec.cpus)),
    // The values are read by the docker CLI from an unnamed file given as its fd 3, never from argv.
    ...(Object.keys(checkEnv(spec.env)).length > 0 ? ['--env-file', ENV_FD_PATH] : []),
    // stdout and stderr come back over the attach stream; nothing needs to be kept on disk.
    '--log-driver',
    'none',
    '--pull',
    pull,
    '--',
    checkImage(spec.image),
  ]
}

// docker prints its own failures (not the function's) like these, and exits 125, 126 or 127.
const DOCKER_ERROR = /^(docker: .*|Error response from daemon: .*|Cannot connect to the Docker daemon.*|Unable to find image .*)$/m

/** Tells a container's own exit code apart from docker failing to run it. */
export function dockerFailure(exitCode: number, stderr: string): string | undefined {
  if (exitCode < 125 || exitCode > 127) return undefined
  const lines = stderr.split('\n').map((line) => line.trim())
  const own = lines.filter((line) => DOCKER_ERROR.test(line) && !line.startsWith('Unable to find image'))
  if (own.length === 0) return exitCode === 125 && stderr.trim() === '' ? 'docker failed to run the container' : undefined
  return own[0].replace(/^docker: /, '').replace(/\.?\s*See 'docker run --help'\.?$/, '')
}

/** Collects a stream up to a limit; past it, calls onOverflow once and keeps only what fit. */
class Capture {
  readonly parts: Buffer[] = []
  size = 0
  overflowed = false

  constructor(private readonly limit: number, private readonly onOverflow: () => void) {}

  add(chunk: Buffer): void {
    if (this.overflowed) return
    const room = this.limit - this.size
    if (chunk.length > room) {
      if (room > 0) this.parts.push(chunk.subarray(0, room))
      this.size = this.limit
      this.overflowed = true
      this.onOverflow()
      return
    }
    this.parts.push(chunk)
    this.size += chunk.length
  }

  get buffer(): Buffer {
    return Buffer.concat(this.parts)
  }
}

/** Runs one call in one fresh container with the docker CLI, and makes sure the container is gone afterwards. */
export class ContainerRunner {
  private readonly docker: string
  private readonly pull: PullPolicy
  private readonly workerId: string
  private readonly maxOutput: number
  private readonly maxStderr: number
  private readonly exec: typeof execa
  private readonly now: () => number
  private readonly startedAt?: (containerName: string) => Promise<number | undefined>
  private readonly running = new Map<string, (why: KillReason) => void>()

  constructor(options: ContainerRunnerOptions) {
    this.docker = options.docker ?? 'docker'
    this.pull = options.pull ?? 'missing'
    this.workerId = options.workerId
    this.maxOutput = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT
    this.maxStderr = options.maxStderrBytes ?? DEFAULT_MAX_STDERR
    this.exec = options.exec ?? execa
    this.now = options.now ?? Date.now
    this.startedAt = options.startedAt
  }

  async run(spec: RunSpec): Promise<RunResult> {
    const args = dockerRunArgs(spec, this.workerId, this.pull)
    const name = containerName(spec.callId)
    const started = this.now()
    let stop: KillReason | undefined
    let killing: Promise<void> | undefined
    const kill = (why: KillReason) => {
      stop ??= why
      killing ??= this.killUntilGone(name, () => exited)
    }
    let exited = false

    let envFd: number | undefined
    try {
      if (args.includes(ENV_FD_PATH)) envFd = envFile(spec.env)
    } catch (error) {
      // The code only (EACCES, ENOSPC...): the message could hold nothing secret, but there is no need to risk it.
      const why = (error as NodeJS.ErrnoException).code ?? 'error'
      return {outcome: 'failed', error: `could not pass the environment to docker (${why})`, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 0}
    }

    const stdout = new Capture(this.maxOutput, () => kill('output'))
    const stderr = new Capture(this.maxStderr, () => {})
    const child = this.exec(this.docker, args, {
      // execa hands any descriptor number to the child as is; its types only list 3 to 9.
      ...(envFd === undefined ? {} : {stdio: ['pipe', 'pipe', 'pipe', envFd as 3] as const}),
      input: spec.input,
      buffer: false,
      reject: false,
      stripFinalNewline: false,
      encoding: 'buffer',
      // execa's cleanup (signal-exit) would re-raise SIGTERM while a call runs and end the worker before it
      // drains; killing the docker CLI would not stop the container anyway. Shutdown is handled by close().
      cleanup: false,
    })
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout.add(chunk)
      spec.onStdout?.(chunk)
    })
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr.add(chunk)
      spec.onStderr?.(chunk)
    })
    // EPIPE when a function exits without reading all its input is normal, not a failure.
    child.stdin?.on('error', () => {})
    // The child has its own copy of the descriptor now.
    if (envFd !== undefined) closeSync(envFd)

    const timer = setTimeout(() => kill('timeout'), spec.timeoutMs)
    this.running.set(spec.callId, kill)
    const result = await child
    exited = true
    clearTimeout(timer)
    this.running.delete(spec.callId)
    await killing
    const finished = this.now()
    const durationMs = finished - started
    // Only a container that ran has a start event to wait for; docker failing to run it has none.
    const ran = stop !== undefined || (result.exitCode !== undefined && !dockerFailure(result.exitCode, stderr.buffer.toString('utf8')))
    const startedAt = ran ? await this.startedAt?.(name) : undefined
    const timings =
      startedAt === undefined ? {} : {startMs: clamp(startedAt - started, durationMs), runMs: clamp(finished - startedAt, durationMs)}
    const base = {stdout: stdout.buffer, stderr: stderr.buffer, stderrTruncated: stderr.overflowed, durationMs, ...timings, ...(stop ? {killed: stop} : {})}

    if (stop === 'timeout') return {...base, outcome: 'timeout'}
    if (stop === 'output') {
      return {...base, outcome: 'failed', error: `function output exceeded the ${formatBytes(this.maxOutput)} limit`}
    }
    if (stop === 'shutdown') return {...base, outcome: 'failed', error: 'the worker shut down before the call finished'}
    if (stop === 'caller') return {...base, outcome: 'failed', error: 'nobody waits for the call any more'}
    if (result.failed && result.exitCode === undefined) {
      const reason =
        (result as {code?: string}).code === 'ENOENT'
          ? `docker CLI not found (${this.docker}): install docker or set --docker`
          : `could not start docker: ${result.shortMessage}`
      return {...base, outcome: 'failed', error: reason}
    }
    const exitCode = result.exitCode ?? 1
    const failure = dockerFailure(exitCode, stderr.buffer.toString('utf8'))
    if (failure) {
      return {...base, stderr: Buffer.alloc(0), stderrTruncated: false, outcome: 'failed', error: `cannot run ${spec.image}: ${failure}`}
    }
    return {...base, outcome: 'exited', exitCode}
  }

  /** Kills the containers of every running call (worker shutdown past its deadline). */
  killAll(): void {
    for (const kill of this.running.values()) kill('shutdown')
  }

  /** Kills the container of one call nobody waits for any more; false when that call runs no container (yet). */
  cancel(callId: string): boolean {
    this.running.get(callId)?.('caller')
    return this.running.has(callId)
  }

  get active(): number {
    return this.running.size
  }

  // The container may not exist yet (docker run is still creating it), so keep trying until docker run returns.
  private async killUntilGone(name: string, done: () => boolean): Promise<void> {
    while (!done()) {
      await this.exec(this.docker, ['kill', '--signal', 'KILL', name], {reject: false, stdin: 'ignore', cleanup: false})
      if (done()) break
      await sleep(KILL_RETRY_MS)
    }
    // --rm removes the container when it exits; make sure, in case the daemon did not.
    await this.exec(this.docker, ['rm', '--force', name], {reject: false, stdin: 'ignore', cleanup: false})
  }

  /** The Docker engine's version, or why the docker CLI cannot reach it. */
  async engine(): Promise<{version?: string; error?: string}> {
    const result = await this.exec(this.docker, ['version', '--format', '{{.Server.Version}}'], {
      reject: false,
      stdin: 'ignore',
      cleanup: false,
    })
    const version = String(result.stdout ?? '').trim()
    if (!result.failed && version) return {version}
    if ((result as {code?: string}).code === 'ENOENT') return {error: `docker CLI not found (${this.docker}): install docker or set --docker`}
    const why = `${String(result.stderr ?? '')}\n${result.shortMessage}`.split('\n').find((line) => line.trim())
    return {error: why?.trim() ?? 'docker version failed'}
  }

  /**
   * Removes containers left by dead workers on this host (a worker killed with -9 cannot clean up).
   * Containers of live workers, and containers amp did not start, are not touched.
   */
  async removeOrphans(isAlive: (pid: number) => boolean = processAlive): Promise<string[]> {
    const listed = await this.exec(
      this.docker,
      [
        'ps',
        '--all',
        '--filter',
        `label=${LABEL.managed}=true`,
        '--filter',
        `label=${LABEL.host}=${hostname()}`,
        '--format',
        `{{.Names}}\t{{.Label "${LABEL.pid}"}}`,
      ],
      {reject: false, stdin: 'ignore', cleanup: false},
    )
    if (listed.failed) return []
    const orphans = String(listed.stdout)
      .split('\n')
      .map((line) => line.split('\t'))
      .filter(([name, pid]) => name && /^amp-[A-Za-z0-9-]+$/.test(name) && Number(pid) !== process.pid && !isAlive(Number(pid)))
      .map(([name]) => name)
    if (orphans.length > 0) await this.exec(this.docker, ['rm', '--force', ...orphans], {reject: false, stdin: 'ignore', cleanup: false})
    return orphans
  }
}

/** Docker's clock and ours are one clock on one host, but keep a skewed remote engine from giving nonsense. */
function clamp(ms: number, max: number): number {
  return Math.min(Math.max(0, ms), max)
}

function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function formatBytes(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`
  return `${bytes} bytes`
}
