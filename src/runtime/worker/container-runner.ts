import {setTimeout as sleep} from 'node:timers/promises'
import {execa} from 'execa'
import {createHash, randomBytes, randomUUID} from 'node:crypto'
import {closeSync, existsSync, openSync, unlinkSync, writeFileSync} from 'node:fs'
import {hostname, tmpdir} from 'node:os'
import path from 'node:path'

import type {KillReason} from '../shared/metrics.js'
import {AFTER_ANSWER_MS, ContainerPool, DEFAULT_PRESTART_IDLE_MS} from './container-pool.js'
import {dockerFailure} from './docker-errors.js'
import {DEFAULT_PRESTART, DEFAULT_REUSE_MAX_CALLS} from '../shared/function-spec.js'
import {type ImageCommand, ImageCommands} from './image-commands.js'
import {PrestartedContainer} from './prestarted-container.js'
import {PULL_POLICIES, type PullPolicy} from '../shared/config.js'
import {formatBytes} from '../shared/bytes.js'
import {CALL_ID, DEFAULT_MAX_STDERR, type Outcome} from '../shared/protocol.js'
import {type CallEnd, RunnerContainer, RunnerStartError} from './runner-container.js'
import {checkCpus, checkEnv, checkImage, checkMemoryBytes, checkName, checkNetwork, checkPidsLimit, envLines} from '../shared/validate.js'

export {dockerFailure} from './docker-errors.js'

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
  /** On containers whose PID 1 is amp's runner (docs/runner.md). */
  runner: 'amp.runner',
  /** On warm containers, which serve many calls of their function (--reuse). */
  reuse: 'amp.reuse',
} as const


export interface RunSpec {
  callId: string
  /**
   * Which delivery of the call this is (1 when absent): JetStream delivers an asynchronous call again
   * to retry it. From the second on its container is named amp-<callId>-<run>, so it never meets the
   * container of an earlier delivery that docker has not removed yet (or that a dead worker left).
   */
  run?: number
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
  /** Most pre-started (or warm) containers the worker keeps for this function (0: none, every call starts its own); DEFAULT_PRESTART when absent. */
  prestart?: number
  /** Warm containers: one container serves many calls of the function, one at a time, each in a fresh process (README "Warm containers"). */
  reuse?: boolean
  /** Calls a warm container serves before it is replaced; DEFAULT_REUSE_MAX_CALLS when absent. */
  reuseMaxCalls?: number
  /** Gets the container's stdout as it arrives (streamed calls); must not throw. */
  onStdout?: (chunk: Buffer) => void
  /** Gets the container's stderr as it arrives (the worker publishes it as the call's log); must not throw. */
  onStderr?: (chunk: Buffer) => void
}

/** The settings that shape a container: calls with equal ones may share a pool of pre-started containers. */
export type ContainerSettings = Pick<RunSpec, 'function' | 'image' | 'network' | 'memoryBytes' | 'cpus' | 'pidsLimit' | 'env'>

/** A pool's settings: the container's, how it is used, and, with the runner, the image's id and command. */
interface PoolSettings extends ContainerSettings {
  reuse: boolean
  reuseMaxCalls: number
  command?: ImageCommand
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
  /** From running docker run to the container's start (Docker's start event, or its runner's hello); set only for a container started for the call. */
  startMs?: number
  /** From that start to the container's exit; set with startMs. */
  runMs?: number
  /** Why amp killed the container, if it did. */
  killed?: KillReason
  /** True when the call ran in a container started before it (pre-started or warm). */
  warm?: boolean
  /** True when that container had served calls before (a warm container). */
  reused?: boolean
}

/** Where the runner's files are on the Docker host: the worker's own machine (docs/runner.md). */
export interface RunnerFiles {
  /** The static runner binary (dist/runner/amp-runner). */
  binary: string
  /** A directory of this worker's for the containers' sockets. */
  socketDir: string
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
  /** The in-container runner; absent: every call waits for docker's own exit, and no container is reused. */
  runner?: RunnerFiles
  /** Reads images' commands for the runner (the worker invalidates it on image events); one of its own when absent. */
  images?: ImageCommands
  /** Says a thing once per key in the worker's log: why a call does not use the runner. */
  note?: (key: string, message: string, fields: Record<string, string>) => void
  /** The number of a function's free containers that are up may have changed (the worker routes calls by it). */
  onFree?: (fn: string, free: number) => void
}

export const DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024
const KILL_RETRY_MS = 250
/** How long remove() waits for a removal docker itself has under way (a --rm container that just exited). */
const REMOVAL_WAIT_MS = 10_000
/** A pre-started container counts as starting until its start event, or this long when none is seen. */
const PRESTART_READY_WAIT_MS = 10_000

export const containerName = (callId: string, run = 1): string => (run > 1 ? `amp-${callId}-${run}` : `amp-${callId}`)
const isRun = (run: number | undefined): boolean => run === undefined || (Number.isSafeInteger(run) && run >= 1)
/** This machine's name, in every container's labels (the orphan sweep finds a host's containers by it). */
const HOST = hostname()

/** Where the docker CLI reads a call's environment: its fd 3 (see envFile). */
const ENV_FD_PATH = '/dev/fd/3'
// tmpfs where there is one: the environment never touches a disk (docker keeps its own copy while the container exists).
const ENV_DIR = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()
/** Where the runner and its socket are inside a runner container. */
export const RUNNER_TARGET = '/.amp-runner'
export const SOCKET_TARGET = '/.amp-socket'
/** Paths that go into `--mount type=bind,source=...`: no comma, no quote, nothing docker would parse. */
export const MOUNT_PATH = /^\/[A-Za-z0-9._/-]+$/

/** The names among `names` that `docker rm` said it is already removing (docker names them as it was given them). */
function removalsInProgress(stderr: string, names: string[]): string[] {
  const busy = stderr.split('\n').filter((line) => line.includes('is already in progress'))
  return names.filter((name) => busy.some((line) => line.includes(`container ${name} is`)))
}

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
  if (!isRun(spec.run)) throw new TypeError('invalid run of the call')
  return attachArgs(spec, workerId, pull, {name: containerName(spec.callId, spec.run), rm: true, labels: {[LABEL.call]: spec.callId}})
}

/**
 * The `docker run` arguments of a pre-started container: as a call's own, but kept after it exits
 * (no --rm: removing it is the runner's job, after the call has its result) and named at random,
 * since no call is known yet. The worker labels stay, so the orphan sweep removes it too.
 */
export function prestartArgs(settings: ContainerSettings, workerId: string, pull: PullPolicy, name: string): string[] {
  checkRandomName(name)
  return attachArgs(settings, workerId, pull, {name, rm: false, labels: {[LABEL.prestarted]: 'true'}})
}

/**
 * The `docker run` arguments of a container whose PID 1 is amp's runner (docs/runner.md): detached
 * (the runner's socket carries the calls, not docker's attach stream) and removed by docker once it
 * exits; the runner and its socket bind-mounted read-only; the image run by id with its own command
 * after the runner's. Hardening, limits and labels are those of every amp container.
 */
export function runnerArgs(
  settings: ContainerSettings,
  workerId: string,
  container: {name: string; labels: Record<string, string>; socket: string; binary: string; command: ImageCommand},
): string[] {
  for (const file of [container.socket, container.binary]) if (!MOUNT_PATH.test(file)) throw new TypeError('invalid runner path')
  if (!/^sha256:[0-9a-f]{64}$/.test(container.command.id)) throw new TypeError('invalid image id')
  return [
    'run',
    '--detach',
    '--rm',
    '--name',
    container.name,
    ...labelArgs(settings, workerId, {...container.labels, [LABEL.runner]: 'true'}),
    ...containerFlags(settings),
    // The image is named by its id, which is on the engine (its command was read from it): nothing to pull.
    '--pull',
    'never',
    '--mount',
    `type=bind,source=${container.binary},target=${RUNNER_TARGET},readonly`,
    '--mount',
    `type=bind,source=${container.socket},target=${SOCKET_TARGET},readonly`,
    '--entrypoint',
    RUNNER_TARGET,
    '--',
    container.command.id,
    'serve',
    SOCKET_TARGET,
    ...container.command.argv,
  ]
}

function checkRandomName(name: string): string {
  if (!/^amp-[a-f0-9-]{36}$/.test(name)) throw new TypeError('invalid container name')
  return name
}

function attachArgs(
  settings: ContainerSettings,
  workerId: string,
  pull: PullPolicy,
  container: {name: string; rm: boolean; labels: Record<string, string>},
): string[] {
  if (!(PULL_POLICIES as readonly string[]).includes(pull)) throw new TypeError('invalid pull policy')
  return [
    'run',
    '--interactive',
    ...(container.rm ? ['--rm'] : []),
    '--name',
    container.name,
    ...labelArgs(settings, workerId, container.labels),
    ...containerFlags(settings),
    '--pull',
    pull,
    '--',
    checkImage(settings.image),
  ]
}

function labelArgs(settings: ContainerSettings, workerId: string, own: Record<string, string>): string[] {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(workerId)) throw new TypeError('invalid worker id')
  const labels = {
    [LABEL.managed]: 'true',
    ...own,
    [LABEL.function]: checkName(settings.function),
    [LABEL.worker]: workerId,
    [LABEL.host]: HOST,
    [LABEL.pid]: String(process.pid),
  }
  return Object.entries(labels).flatMap(([key, value]) => ['--label', `${key}=${value}`])
}

/** Network, hardening, limits, environment and logging: the same for every container amp starts. */
function containerFlags(settings: ContainerSettings): string[] {
  return [
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
    // stdout and stderr come back over the attach stream or the runner's socket; nothing needs to be kept on disk.
    '--log-driver',
    'none',
  ]
}

/** The pool key of a container's settings: a hash, so a call never gets a container built from other settings. */
export function prestartKey(settings: ContainerSettings & Partial<PoolSettings>, pull: PullPolicy): string {
  const env = Object.entries(settings.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const shape: unknown[] = [settings.function, settings.image, settings.network, settings.memoryBytes, settings.cpus, settings.pidsLimit, env, pull]
  // Only what the runner adds, so keys of pools without it stay as they were.
  if (settings.command) shape.push(settings.command.id, settings.command.argv, settings.reuse ? settings.reuseMaxCalls ?? 0 : 0)
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex')
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
type Sink = (chunk: Buffer) => void

/** How a container's part of a call ended: its docker CLI's exit (attached), the runner's report, or the runner container never came up. */
type Ending = {cli: CliResult} | CallEnd | {startFailed: RunnerStartError}

/** A container as supervise() runs a call in it, fresh or pre-started, attached or with the runner. */
interface Started {
  name: string
  /** Gives the call's input and runs it to its end; the sinks get the output from its very first byte. */
  run(stdout: Sink, stderr: Sink): Promise<Ending>
  /** The container was started before the call. */
  warm: boolean
  reused?: boolean
  /** When a container started for this call came up (its runner's hello), on the runner's clock. */
  upAt?: () => number | undefined
  /** When the call began waiting for this container, if before supervise(): its start phase counts from there. */
  since?: number
}

/**
 * A call's result from supervise(), with why its runner container never came up (the call then
 * runs without the runner), and whether its runner container can serve another call.
 */
type Supervised = RunResult & {startFailed?: RunnerStartError; reusable?: boolean}

/** A call that has no container yet: the kill that stopped it before it started, and how to take it out of a wait. */
interface Pending {
  early?: KillReason
  leave: () => void
}

/**
 * Runs one call in one container of its own with the docker CLI, and makes sure the container is
 * gone afterwards. With pools on, the container may have been started before the call (prestarted):
 * it is still used by this call only, and removed after it. With the runner, the call's answer is
 * ready the moment the function exits; and a function created --reuse runs in a warm container
 * that serves its calls one after another, each in a fresh process.
 */
export class ContainerRunner {
  readonly images: ImageCommands
  private readonly docker: string
  private readonly pull: PullPolicy
  private readonly workerId: string
  private readonly maxOutput: number
  private readonly maxStderr: number
  private readonly exec: typeof execa
  private readonly now: () => number
  private readonly startedAt?: (containerName: string, waitMs?: number) => Promise<number | undefined>
  private readonly running = new Map<string, (why: KillReason) => void>()
  private readonly pool?: ContainerPool<PrestartedContainer<CliResult> | RunnerContainer, PoolSettings>
  private readonly removals = new Set<Promise<void>>()
  private readonly note: (key: string, message: string, fields: Record<string, string>) => void
  private runner?: RunnerFiles
  private sockets = 0
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
    this.runner = options.runner
    this.note = options.note ?? (() => {})
    this.images = options.images ?? new ImageCommands({docker: this.docker, pull: this.pull, exec: this.exec, now: this.now})
    const max = options.prestartMax ?? 0
    if (!(Number.isInteger(max) && max >= 0)) throw new TypeError('prestartMax must be a whole number of at least 0')
    if (max > 0) {
      const idleMs = options.prestartIdleMs ?? DEFAULT_PRESTART_IDLE_MS
      const onFree = options.onFree
      this.pool = new ContainerPool(
        {start: (settings) => this.prestart(settings), remove: (names) => this.remove(names), now: this.now},
        {max, idleMs, canStart: options.prestartAllowed, onFree: onFree && ((fn) => onFree(fn, this.pool?.free(fn) ?? 0))},
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
    // Built first, so every value is checked before anything runs; used by a call that runs without the runner.
    const args = dockerRunArgs(spec, this.workerId, this.pull)
    // The settings alone: the pool keeps them to start more containers, and must not keep the call's input.
    const {function: fn, image, network, memoryBytes, cpus, pidsLimit, env} = spec
    const reuse = spec.reuse === true
    const settings: PoolSettings = {function: fn, image, network, memoryBytes, cpus, pidsLimit, env, reuse, reuseMaxCalls: spec.reuseMaxCalls ?? DEFAULT_REUSE_MAX_CALLS}
    const prestart = spec.prestart ?? DEFAULT_PRESTART
    // Until the call has a container, a kill (its caller left, the worker gave up) is noted here and stops it before it starts.
    const pending: Pending = {leave: () => {}}
    const stopEarly = (why: KillReason) => {
      pending.early ??= why
      pending.leave()
    }
    this.running.set(spec.callId, stopEarly)
    try {
      const command = this.runner ? await this.commandFor(image) : undefined
      if (pending.early) return notRun(pending.early)
      if (command && reuse && this.pool) return await this.runReused(spec, args, {...settings, command}, prestart, pending, stopEarly)
      if (reuse) {
        this.note(`reuse ${fn}`, 'this function asks for --reuse, but its calls cannot use the in-container runner here: each runs in a fresh container', {function: fn})
      }
      const pooled = command ? {...settings, command, reuse: false} : {...settings, reuse: false}
      const ticket = this.pool?.take(prestartKey(pooled, this.pull), pooled, prestart)
      try {
        const warm = ticket?.container
        if (warm instanceof RunnerContainer) {
          const result = await this.runIn(spec, warm, {warm: true, more: false})
          this.closeLater(warm)
          return result.startFailed ? await this.fallBack(spec, args, result.startFailed) : result
        }
        if (warm) {
          return await this.supervise(spec, {
            name: warm.name,
            warm: true,
            run: (out, err) => {
              warm.attach(out, err)
              warm.give(spec.input)
              return warm.exited.then((cli) => ({cli}))
            },
          })
        }
        return command ? await this.runCold(spec, args, command) : await this.runFresh(spec, args)
      } finally {
        ticket?.done()
      }
    } finally {
      if (this.running.get(spec.callId) === stopEarly) this.running.delete(spec.callId)
    }
  }

  /**
   * A call of a --reuse function: in a free warm container of its pool, or the first one free (one
   * more is started for it while the pool is below its bound). The container goes back to the pool
   * after a call that ended cleanly and was not its last.
   */
  private async runReused(spec: RunSpec, args: string[], settings: PoolSettings & {command: ImageCommand}, prestart: number, pending: Pending, stop: (why: KillReason) => void): Promise<RunResult> {
    const calledAt = this.now()
    const ticket = this.pool!.take(prestartKey(settings, this.pull), settings, prestart, true)
    pending.leave = ticket.leave
    // Waiting for a free container counts against the call's timeout, as a cold start does.
    const waitLimit = setTimeout(() => stop('timeout'), spec.timeoutMs)
    const container = ticket.container ?? (await ticket.wait)
    clearTimeout(waitLimit)
    if (pending.early || !(container instanceof RunnerContainer)) {
      ticket.done(container !== undefined)
      if (pending.early) return notRun(pending.early)
      // No warm container will come (the pool backs off, was drained or is closing): one of the call's own.
      return this.runCold(spec, args, settings.command)
    }
    const more = container.calls + 1 < settings.reuseMaxCalls
    // A container that came up for this call, which waited for it, is a cold start, timed from the call's start.
    const cold = !ticket.container && container.calls === 0 && (container.readyAt ?? calledAt) >= calledAt
    const result = await this.runIn(spec, container, {warm: !cold, reused: container.calls > 0, more, since: calledAt})
    const keep = more && result.reusable === true
    ticket.done(keep)
    if (!keep && !result.killed) this.closeLater(container)
    return result.startFailed ? this.fallBack(spec, args, result.startFailed) : result
  }

  /** Idle pre-started containers now (a metric). */
  get prestarted(): number {
    return this.pool?.idle ?? 0
  }

  /** Free containers of a function that are up (pre-started or warm): a call of it sent here starts at once. */
  free(fn: string): number {
    return this.pool?.free(fn) ?? 0
  }

  /** Whether calls run with the in-container runner (docs/runner.md); false once the engine showed it cannot. */
  get usesRunner(): boolean {
    return this.runner !== undefined
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

  /** The image's command for the runner, or undefined (said once) when the runner cannot run it. */
  private async commandFor(image: string): Promise<ImageCommand | undefined> {
    const resolved = await this.images.resolve(image)
    if (resolved.command) return resolved.command
    this.note(`image ${image} ${resolved.unusable}`, 'calls of this image run without the in-container runner: their answers wait for docker to report the exit', {
      image,
      why: resolved.unusable,
    })
    return undefined
  }

  /** The runner container of a call that found none started: named after the call, used once. */
  private async runCold(spec: RunSpec, args: string[], command: ImageCommand): Promise<RunResult> {
    // The runner went off while this call was on its way.
    if (!this.runner) return this.runFresh(spec, args)
    const container = this.runnerContainer(this.runner, spec, command, {name: containerName(spec.callId, spec.run), labels: {[LABEL.call]: spec.callId}})
    const result = await this.runIn(spec, container, {warm: false, more: false})
    this.closeLater(container)
    return result.startFailed ? this.fallBack(spec, args, result.startFailed) : result
  }

  /**
   * The runner container did not come up: the call runs as it would without the runner (so the
   * caller gets docker's own error about its image, limits or network). When the engine showed it
   * cannot run the runner at all, no later call tries.
   */
  private fallBack(spec: RunSpec, args: string[], why: RunnerStartError): Promise<RunResult> {
    if (why.runnerUnusable && this.runner) {
      this.runner = undefined
      this.note('runner unusable', 'the in-container runner cannot be used with this Docker engine: calls wait for docker to report their exit', {why: why.message})
    } else {
      this.images.invalidate()
    }
    return this.runFresh(spec, args)
  }

  private runIn(spec: RunSpec, container: RunnerContainer, use: {warm: boolean; reused?: boolean; more: boolean; since?: number}): Promise<Supervised> {
    return this.supervise(spec, {
      name: container.name,
      warm: use.warm,
      reused: use.reused,
      since: use.since,
      upAt: use.warm ? undefined : () => container.readyAt,
      run: async (out, err) => {
        try {
          await container.ready
        } catch (error) {
          // Removed now, not later: the fallback run takes the same name, and a later removal by name would hit it.
          await this.remove([container.name])
          return {startFailed: error as RunnerStartError}
        }
        return container.call(spec.input, use.more, out, err)
      },
    })
  }

  private runnerContainer(
    files: RunnerFiles,
    settings: ContainerSettings,
    command: ImageCommand,
    container: {name: string; labels: Record<string, string>},
  ): RunnerContainer {
    const socket = path.join(files.socketDir, `${++this.sockets}.sock`)
    const args = runnerArgs(settings, this.workerId, {...container, socket, binary: files.binary, command})
    return new RunnerContainer({
      name: container.name,
      socketPath: socket,
      now: this.now,
      start: () => {
        // A throw (no room for the environment file) ends the start like docker failing.
        const envFd = args.includes(ENV_FD_PATH) ? envFile(settings.env) : undefined
        return this.spawn(args, envFd)
      },
    })
  }

  private runFresh(spec: RunSpec, args: string[]): Promise<RunResult> {
    let envFd: number | undefined
    try {
      if (args.includes(ENV_FD_PATH)) envFd = envFile(spec.env)
    } catch (error) {
      // The code only (EACCES, ENOSPC...): the message could hold nothing secret, but there is no need to risk it.
      const why = (error as NodeJS.ErrnoException).code ?? 'error'
      return Promise.resolve({...EMPTY, outcome: 'failed', error: `could not pass the environment to docker (${why})`, durationMs: 0})
    }
    const child = this.spawn(args, envFd, spec.input)
    return this.supervise(spec, {
      name: containerName(spec.callId, spec.run),
      warm: false,
      run: (out, err) => {
        child.stdout?.on('data', out)
        child.stderr?.on('data', err)
        // EPIPE when a function exits without reading all its input is normal, not a failure.
        child.stdin?.on('error', () => {})
        return child.then((cli) => ({cli}))
      },
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

  /** Starts a container for a pool (the pool's injected start): with the runner when the image has a command for it, else attached with stdin held open. */
  private prestart(settings: PoolSettings): PrestartedContainer<CliResult> | RunnerContainer {
    const name = `amp-${randomUUID()}`
    if (settings.command && this.runner) {
      const labels: Record<string, string> = {[LABEL.prestarted]: 'true', ...(settings.reuse ? {[LABEL.reuse]: 'true'} : {})}
      return this.runnerContainer(this.runner, settings, settings.command, {name, labels})
    }
    // The runner went off since the pool was made: the pool backs off, and its calls run without it.
    if (settings.command) throw new Error('the runner is off')
    const args = prestartArgs(settings, this.workerId, this.pull, name)
    // A throw (no room for the environment file) counts as a failed start for the pool.
    const envFd = args.includes(ENV_FD_PATH) ? envFile(settings.env) : undefined
    // Docker's start event ends its start for the pool's count of starts in progress.
    return new PrestartedContainer(name, this.spawn(args, envFd), this.startedAt?.(name, PRESTART_READY_WAIT_MS))
  }

  /**
   * `docker rm --force` of containers that need not exist (never throws), returning once they are
   * gone. When docker is already removing one (a --rm container that just exited), `docker rm` says
   * so at once while the container is still there and its name still taken: those are asked again
   * until docker is done, for REMOVAL_WAIT_MS at most.
   */
  private async remove(names: string[]): Promise<void> {
    let left = names
    for (let asked = 0; left.length > 0 && asked <= REMOVAL_WAIT_MS / KILL_RETRY_MS; asked++) {
      if (asked > 0) await sleep(KILL_RETRY_MS)
      const result = await this.exec(this.docker, ['rm', '--force', ...left], {reject: false, stdin: 'ignore', cleanup: false})
      left = removalsInProgress(String(result.stderr ?? ''), left)
    }
  }

  /** Ends a runner container once its call's answer is out: its runner exits, and docker's removal (--rm) then costs the engine, not the answer. */
  private closeLater(container: RunnerContainer): void {
    setTimeout(() => container.close(), AFTER_ANSWER_MS).unref()
  }

  /** Removes a container once its call's answer is out (an attached pre-started one has no --rm). */
  private removeLater(name: string): void {
    const task = sleep(AFTER_ANSWER_MS).then(() => this.remove([name]))
    this.removals.add(task)
    void task.finally(() => this.removals.delete(task))
  }

  /** Gives the call its container: captures its output, applies the timeout from now, kills it when asked, and maps its end to a result. */
  private async supervise(spec: RunSpec, started: Started): Promise<Supervised> {
    const {name} = started
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
    const ending = started.run(
      (chunk) => {
        stdout.add(chunk)
        spec.onStdout?.(chunk)
      },
      (chunk) => {
        stderr.add(chunk)
        spec.onStderr?.(chunk)
      },
    )

    const timer = setTimeout(() => kill('timeout'), spec.timeoutMs)
    this.running.set(spec.callId, kill)
    const end = await ending
    exited = true
    clearTimeout(timer)
    this.running.delete(spec.callId)
    const cli = 'cli' in end ? end.cli : undefined
    // An attached pre-started container has no --rm: remove it, after the call has its result (killUntilGone removes a killed one).
    if (started.warm && cli && !killing) this.removeLater(name)
    await killing
    const finished = this.now()
    const durationMs = finished - begun
    const timings = await this.timings(started, cli, stop, stderr, started.since ?? begun, finished)
    const base = {
      ...EMPTY,
      stdout: stdout.buffer,
      stderr: stderr.buffer,
      stderrTruncated: stderr.overflowed,
      durationMs,
      ...timings,
      ...(stop ? {killed: stop} : {}),
      ...(started.warm ? {warm: true} : {}),
      ...(started.reused ? {reused: true} : {}),
    }

    if (stop) return {...notRun(stop, this.maxOutput), ...base, outcome: stop === 'timeout' ? 'timeout' : 'failed', killed: stop}
    if ('startFailed' in end) return {...base, outcome: 'failed', error: end.startFailed.message, startFailed: end.startFailed}
    if (!('cli' in end)) {
      if (end.exitCode !== undefined) return {...base, outcome: 'exited', exitCode: end.exitCode, reusable: true}
      if (end.lost) return {...base, outcome: 'failed', error: `the container stopped before the function exited (${end.error})`}
      // The function's process could not start (its command is missing...): the container itself is fine, unless the runner failed.
      return {...base, stderr: Buffer.alloc(0), stderrTruncated: false, outcome: 'failed', error: `cannot run ${spec.image}: ${end.error}`, reusable: !end.fatal}
    }
    const {cli: result} = end
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

  /** The start and run phases of a container started for the call: from its runner's hello, or Docker's start event. */
  private async timings(started: Started, cli: CliResult | undefined, stop: KillReason | undefined, stderr: Capture, begun: number, finished: number) {
    if (started.warm) return {}
    const durationMs = finished - begun
    let at = started.upAt?.()
    // Only a container that ran has a start event to wait for; docker failing to run it has none.
    if (cli && (stop !== undefined || (cli.exitCode !== undefined && !dockerFailure(cli.exitCode, stderr.buffer.toString('utf8'))))) {
      at = await this.startedAt?.(started.name)
    }
    return at === undefined ? {} : {startMs: clamp(at - begun, durationMs), runMs: clamp(finished - at, durationMs)}
  }

  /** Kills the containers of every running call (worker shutdown past its deadline). */
  killAll(): void {
    for (const kill of [...this.running.values()]) kill('shutdown')
  }

  /** Kills the container of one call nobody waits for any more; false when that call is not running here. */
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
    // --rm removes the container when it exits; make sure, in case the daemon did not, and wait for it.
    await this.remove([name])
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
    const listed = await this.list([`label=${LABEL.managed}=true`, `label=${LABEL.host}=${HOST}`], `{{.Names}}\t{{.Label "${LABEL.pid}"}}`)
    const orphans = listed
      .map((line) => line.split('\t'))
      .filter(([name, pid]) => name && /^amp-[A-Za-z0-9-]+$/.test(name) && Number(pid) !== process.pid && !isAlive(Number(pid)))
      .map(([name]) => name)
    await this.remove(orphans)
    return orphans
  }

  /** Removes every container with this label (`key=value`), running or not; returns their names. */
  async removeLabelled(label: string): Promise<string[]> {
    const names = (await this.list([`label=${LABEL.managed}=true`, `label=${label}`], '{{.Names}}')).filter((name) => /^amp-[A-Za-z0-9-]+$/.test(name))
    await this.remove(names)
    return names
  }

  /** `docker ps --all` lines in `format` for these filters; none when docker cannot list. */
  private async list(filters: string[], format: string): Promise<string[]> {
    const listed = await this.exec(this.docker, ['ps', '--all', ...filters.flatMap((filter) => ['--filter', filter]), '--format', format], {
      reject: false,
      stdin: 'ignore',
      cleanup: false,
    })
    return listed.failed ? [] : String(listed.stdout).split('\n').filter(Boolean)
  }
}

const EMPTY = {stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 0}

/** The result of a call amp stopped (or never started) for `why`. */
function notRun(why: KillReason, maxOutput = DEFAULT_MAX_OUTPUT): RunResult {
  const error = {
    timeout: undefined,
    output: `function output exceeded the ${formatBytes(maxOutput)} limit`,
    shutdown: 'the worker shut down before the call finished',
    caller: 'nobody waits for the call any more',
  }[why]
  return {...EMPTY, outcome: why === 'timeout' ? 'timeout' : 'failed', ...(error ? {error} : {})}
}

/** Docker's clock and ours are one clock on one host, but keep a skewed remote engine from giving nonsense. */
function clamp(ms: number, max: number): number {
  return Math.min(Math.max(0, ms), max)
}

export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
