import {setTimeout as sleep} from 'node:timers/promises'
import {execa} from 'execa'
import {createHash, randomBytes, randomUUID} from 'node:crypto'
import {closeSync, existsSync, openSync, unlinkSync, writeFileSync} from 'node:fs'
import {hostname, tmpdir} from 'node:os'
import path from 'node:path'

import type {KillReason} from './metrics.js'
import {AFTER_ANSWER_MS, ContainerPool, DEFAULT_PRESTART_IDLE_MS} from './container-pool.js'
import {DEFAULT_PRESTART} from './function-spec.js'
import {PrestartedContainer} from './prestarted-container.js'
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
  /** On pre-started containers, which have no amp.call label: the call is not known when they start. */
  prestarted: 'amp.prestarted',
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
  /** Most pre-started containers the worker keeps for this function (0: none, every call starts its own); DEFAULT_PRESTART when absent. */
  prestart?: number
  /** Gets the container's stdout as it arrives (streamed calls); must not throw. */
  onStdout?: (chunk: Buffer) => void
  /** Gets the container's stderr as it arrives (the worker publishes it as the call's log); must not throw. */
  onStderr?: (chunk: Buffer) => void
}

/** The settings that shape a container: calls with equal ones may share a pool of pre-started containers. */
export type ContainerSettings = Pick<RunSpec, 'function' | 'image' | 'network' | 'memoryBytes' | 'cpus' | 'pidsLimit' | 'env'>

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
  /** True when the call ran in a pre-started container. */
  warm?: boolean
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
  /** When the named container started (epoch ms), if known, waiting up to waitMs for it: see container-events.ts. */
  startedAt?: (containerName: string, waitMs?: number) => Promise<number | undefined>
  /** Whether the engine has room to pre-start one more container, given `starting` starts in progress (the worker's slots). */
  prestartAllowed?: (starting: number) => boolean
  /** Most idle pre-started containers across all functions; 0 or absent: no pools, every call starts its own. */
  prestartMax?: number
  /** A function's pool with no call for this long is removed; DEFAULT_PRESTART_IDLE_MS when absent. */
  prestartIdleMs?: number
}

export const DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024
export const DEFAULT_MAX_STDERR = 1024 * 1024
const KILL_RETRY_MS = 250
/** A pre-started container counts as starting until its start event, or this long when none is seen. */
const PRESTART_READY_WAIT_MS = 10_000

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

/** The complete `docker run` argument array of a call's own container. Every value in it has been validated. */
export function dockerRunArgs(spec: RunSpec, workerId: string, pull: PullPolicy): string[] {
  if (!CALL_ID.test(spec.callId)) throw new TypeError('invalid call id')
  return runArgs(spec, workerId, pull, {name: containerName(spec.callId), rm: true, labels: {[LABEL.call]: spec.callId}})
}

/**
 * The `docker run` arguments of a pre-started container: as a call's own, but kept after it exits
 * (no --rm: removing it is the runner's job, after the call has its result) and named at random,
 * since no call is known yet. The worker labels stay, so the orphan sweep removes it too.
 */
export function prestartArgs(settings: ContainerSettings, workerId: string, pull: PullPolicy, name: string): string[] {
  if (!/^amp-[a-f0-9-]{36}$/.test(name)) throw new TypeError('invalid container name')
  return runArgs(settings, workerId, pull, {name, rm: false, labels: {[LABEL.prestarted]: 'true'}})
}

function runArgs(
  settings: ContainerSettings,
  workerId: string,
  pull: PullPolicy,
  container: {name: string; rm: boolean; labels: Record<string, string>},
): string[] {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(workerId)) throw new TypeError('invalid worker id')
  if (!PULL_POLICIES.includes(pull)) throw new TypeError('invalid pull policy')
  const labels = {
    [LABEL.managed]: 'true',
    ...container.labels,
    [LABEL.function]: checkName(settings.function),
    [LABEL.worker]: workerId,
    [LABEL.host]: hostname(),
    [LABEL.pid]: String(process.pid),
  }
  return [
    'run',
    '--interactive',
    ...(container.rm ? ['--rm'] : []),
    '--name',
    container.name,
    ...Object.entries(labels).flatMap(([key, value]) => ['--label', `${key}=${value}`]),
    '--network',
    checkNetwork(settings.network),
    // Hardened by default: no privilege gain through setuid binaries, no capabilities, bounded
    // processes, memory (the same value as memory+swap: no swap) and CPU.
    '--security-opt',
    'no-new-privileges',
    '--cap-drop',
    'ALL',
    '--pids-limit',
    String(checkPidsLimit(settings.pidsLimit)),
    '--memory',
    String(checkMemoryBytes(settings.memoryBytes)),
    '--memory-swap',
    String(settings.memoryBytes),
    '--cpus',
    String(checkCpus(settings.cpus)),
    // The values are read by the docker CLI from an unnamed file given as its fd 3, never from argv.
    ...(Object.keys(checkEnv(settings.env)).length > 0 ? ['--env-file', ENV_FD_PATH] : []),
    // stdout and stderr come back over the attach stream; nothing needs to be kept on disk.
    '--log-driver',
    'none',
    '--pull',
    pull,
    '--',
    checkImage(settings.image),
  ]
}

/** The pool key of a container's settings: a hash, so a call never gets a container built from other settings. */
export function prestartKey(settings: ContainerSettings, pull: PullPolicy): string {
  const env = Object.entries(settings.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const shape = [settings.function, settings.image, settings.network, settings.memoryBytes, settings.cpus, settings.pidsLimit, env, pull]
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex')
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

type CliResult = Awaited<ReturnType<typeof execa>>

/** A started docker CLI as run() supervises it, fresh or pre-started. */
interface Started {
  name: string
  child: Promise<CliResult>
  /** Routes the container's stdout and stderr (from its very first byte) to these. */
  attach(stdout: (chunk: Buffer) => void, stderr: (chunk: Buffer) => void): void
  warm: boolean
}

/**
 * Runs one call in one container of its own with the docker CLI, and makes sure the container is
 * gone afterwards. With pools on, the container may have been started before the call (prestarted):
 * it is still used by this call only, and removed after it.
 */
export class ContainerRunner {
  private readonly docker: string
  private readonly pull: PullPolicy
  private readonly workerId: string
  private readonly maxOutput: number
  private readonly maxStderr: number
  private readonly exec: typeof execa
  private readonly now: () => number
  private readonly startedAt?: (containerName: string, waitMs?: number) => Promise<number | undefined>
  private readonly running = new Map<string, (why: KillReason) => void>()
  private readonly pool?: ContainerPool<PrestartedContainer<CliResult>, ContainerSettings>
  private readonly removals = new Set<Promise<void>>()
  private poolSweep?: NodeJS.Timeout

  constructor(options: ContainerRunnerOptions) {
    this.docker = options.docker ?? 'docker'
    this.pull = options.pull ?? 'missing'
    this.workerId = options.workerId
    this.maxOutput = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT
    this.maxStderr = options.maxStderrBytes ?? DEFAULT_MAX_STDERR
    this.exec = options.exec ?? execa
    this.now = options.now ?? Date.now
    this.startedAt = options.startedAt
    const max = options.prestartMax ?? 0
    if (!(Number.isInteger(max) && max >= 0)) throw new TypeError('prestartMax must be a whole number of at least 0')
    if (max > 0) {
      const idleMs = options.prestartIdleMs ?? DEFAULT_PRESTART_IDLE_MS
      this.pool = new ContainerPool(
        {start: (settings) => this.prestart(settings), remove: (names) => this.remove(names), now: this.now},
        {max, idleMs, canStart: options.prestartAllowed},
      )
      // Also tops pools up once the engine has room again (after a burst of calls, a start that failed).
      this.poolSweep = setInterval(() => {
        void this.pool?.sweep()
        this.pool?.topUp()
      }, Math.max(100, Math.min(1000, idleMs / 4)))
      this.poolSweep.unref()
    }
  }

  async run(spec: RunSpec): Promise<RunResult> {
    const args = dockerRunArgs(spec, this.workerId, this.pull)
    // The settings alone: the pool keeps them to start more containers, and must not keep the call's input.
    const {function: fn, image, network, memoryBytes, cpus, pidsLimit, env} = spec
    const settings = {function: fn, image, network, memoryBytes, cpus, pidsLimit, env}
    const ticket = this.pool?.take(prestartKey(settings, this.pull), settings, spec.prestart ?? DEFAULT_PRESTART)
    try {
      const warm = ticket?.container
      if (warm) return await this.supervise(spec, {name: warm.name, child: warm.exited, attach: (out, err) => warm.attach(out, err), warm: true}, () => warm.give(spec.input))
      return await this.runFresh(spec, args)
    } finally {
      ticket?.done()
    }
  }

  /** Idle pre-started containers now (a metric). */
  get prestarted(): number {
    return this.pool?.idle ?? 0
  }

  /** Removes the pre-started containers of a function that changed or was removed. */
  drainPrestarted(fn: string): Promise<void> {
    return this.pool?.drain(fn) ?? Promise.resolve()
  }

  /** Stops pre-starting containers, removes the idle ones and waits for removals in progress; calls still running are not touched. */
  async close(): Promise<void> {
    clearInterval(this.poolSweep)
    await this.pool?.close()
    await Promise.allSettled([...this.removals])
  }

  private runFresh(spec: RunSpec, args: string[]): Promise<RunResult> {
    let envFd: number | undefined
    try {
      if (args.includes(ENV_FD_PATH)) envFd = envFile(spec.env)
    } catch (error) {
      // The code only (EACCES, ENOSPC...): the message could hold nothing secret, but there is no need to risk it.
      const why = (error as NodeJS.ErrnoException).code ?? 'error'
      return Promise.resolve({outcome: 'failed', error: `could not pass the environment to docker (${why})`, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 0})
    }
    const child = this.spawn(args, envFd, spec.input)
    return this.supervise(spec, {
      name: containerName(spec.callId),
      child,
      attach: (out, err) => {
        child.stdout?.on('data', out)
        child.stderr?.on('data', err)
        // EPIPE when a function exits without reading all its input is normal, not a failure.
        child.stdin?.on('error', () => {})
      },
      warm: false,
    })
  }

  /** Starts the docker CLI; the environment file (fd 3) is closed here once the child has its own copy. */
  private spawn(args: string[], envFd: number | undefined, input?: Uint8Array) {
    const child = this.exec(this.docker, args, {
      // execa hands any descriptor number to the child as is; its types only list 3 to 9.
      ...(envFd === undefined ? {} : {stdio: ['pipe', 'pipe', 'pipe', envFd as 3] as const}),
      ...(input === undefined ? {} : {input}),
      buffer: false,
      reject: false,
      stripFinalNewline: false,
      encoding: 'buffer',
      // execa's cleanup (signal-exit) would re-raise SIGTERM while a call runs and end the worker before it
      // drains; killing the docker CLI would not stop the container anyway. Shutdown is handled by close().
      cleanup: false,
    })
    if (envFd !== undefined) closeSync(envFd)
    return child
  }

  /** Starts a pre-started container (the pool's injected start): stdin stays open until a call gives its input. */
  private prestart(settings: ContainerSettings): PrestartedContainer<CliResult> {
    const name = `amp-${randomUUID()}`
    const args = prestartArgs(settings, this.workerId, this.pull, name)
    // A throw (no room for the environment file) counts as a failed start for the pool.
    const envFd = args.includes(ENV_FD_PATH) ? envFile(settings.env) : undefined
    // Docker's start event ends its start for the pool's count of starts in progress.
    return new PrestartedContainer(name, this.spawn(args, envFd), this.startedAt?.(name, PRESTART_READY_WAIT_MS))
  }

  /** `docker rm --force` of containers that need not exist; never throws. */
  private async remove(names: string[]): Promise<void> {
    await this.exec(this.docker, ['rm', '--force', ...names], {reject: false, stdin: 'ignore', cleanup: false})
  }

  /** Removes a used pre-started container once its call's answer is out (docker run had no --rm). */
  private removeLater(name: string): void {
    const task = sleep(AFTER_ANSWER_MS).then(() => this.remove([name]))
    this.removals.add(task)
    void task.finally(() => this.removals.delete(task))
  }

  /** Gives the call its container: captures its output, applies the timeout from now, kills it when asked, and maps its end to a result. */
  private async supervise(spec: RunSpec, started: Started, giveInput?: () => void): Promise<RunResult> {
    const {name, child} = started
    const begun = this.now()
    let stop: KillReason | undefined
    let killing: Promise<void> | undefined
    let exited = false
    const kill = (why: KillReason) => {
      stop ??= why
      killing ??= this.killUntilGone(name, () => exited)
    }
    const stdout = new Capture(this.maxOutput, () => kill('output'))
    const stderr = new Capture(this.maxStderr, () => {})
    started.attach(
      (chunk) => {
        stdout.add(chunk)
        spec.onStdout?.(chunk)
      },
      (chunk) => {
        stderr.add(chunk)
        spec.onStderr?.(chunk)
      },
    )
    giveInput?.()

    const timer = setTimeout(() => kill('timeout'), spec.timeoutMs)
    this.running.set(spec.callId, kill)
    const result = await child
    exited = true
    clearTimeout(timer)
    this.running.delete(spec.callId)
    // A pre-started container has no --rm: remove it, after the call has its result (killUntilGone removes a killed one).
    if (started.warm && !killing) this.removeLater(name)
    await killing
    const finished = this.now()
    const durationMs = finished - begun
    // Only a container that ran has a start event to wait for; docker failing to run it has none. A pre-started one started before its call.
    const ran = stop !== undefined || (result.exitCode !== undefined && !dockerFailure(result.exitCode, stderr.buffer.toString('utf8')))
    const startedAt = ran && !started.warm ? await this.startedAt?.(name) : undefined
    const timings =
      startedAt === undefined ? {} : {startMs: clamp(startedAt - begun, durationMs), runMs: clamp(finished - startedAt, durationMs)}
    const base = {
      stdout: stdout.buffer,
      stderr: stderr.buffer,
      stderrTruncated: stderr.overflowed,
      durationMs,
      ...timings,
      ...(stop ? {killed: stop} : {}),
      ...(started.warm ? {warm: true} : {}),
    }

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
