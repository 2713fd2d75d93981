/**
 * One container whose PID 1 is amp's runner (docs/runner.md), seen from the worker: a unix socket
 * the runner connects to (bind-mounted into the container), `docker run --detach` to start it, and
 * the calls it serves one after another (one for a container used once, many for a warm one).
 * Starting and killing it by name stay the runner's job (container-runner.ts); this file holds the
 * socket side: the hello, each call's frames, and knowing when the container is gone.
 */
import {rmSync} from 'node:fs'
import net from 'node:net'

import type {Prestarted} from './container-pool.js'
import {dockerLines, dockerReason} from './docker-errors.js'
import {callFrames, exitCodeOf, FROM_RUNNER, FrameDecoder, RUNNER_HELLO} from './runner-frames.js'

type Sink = (chunk: Buffer) => void

/** The parts of the `docker run --detach` child this needs. */
export interface DetachedCli extends PromiseLike<{failed: boolean; exitCode?: number; stderr?: unknown; shortMessage?: string}> {
  kill(signal?: NodeJS.Signals): boolean
}

/** How one call in the container ended. */
export type CallEnd =
  /** The function exited (the code docker would show: 128 + a signal's number when killed by one). */
  | {exitCode: number; error?: undefined; lost?: undefined; fatal?: undefined}
  /** The runner could not start the function's process (`exec ...: ...`), or, `fatal`, failed itself (and exits). */
  | {exitCode?: undefined; error: string; lost?: undefined; fatal: boolean}
  /** The container went away during the call (killed, crashed, its engine gone). */
  | {exitCode?: undefined; error: string; lost: true; fatal?: undefined}

/** An 'F' frame of the runner's own failure (it exits), not of a call's process that could not start ("exec ..."). */
const RUNNER_FAILED = 'amp-runner:'

/** Why a container never served: `docker run` failed, or the runner did not connect. */
export class RunnerStartError extends Error {
  constructor(
    message: string,
    /** The engine cannot run the runner at all (it cannot mount its files, or they are not where the worker is). */
    readonly runnerUnusable: boolean,
  ) {
    super(message)
  }
}

/** After `docker run --detach` succeeded, how long the runner has to connect before the engine is taken to be elsewhere. */
export const CONNECT_TIMEOUT_MS = 5000

// Docker's refusals that mean the runner's files cannot reach this engine's containers (another host, Docker Desktop's file sharing...).
const UNUSABLE = /invalid mount config|bind source path|mount source path|mounts denied|\.amp-runner|\.amp-socket/i

export interface RunnerContainerOptions {
  name: string
  /** Where the socket is made; `docker run` bind-mounts this path, so it must exist first. */
  socketPath: string
  /** Starts the container (`docker run --detach ...`); called once the socket listens. */
  start: () => DetachedCli
  now?: () => number
  connectTimeoutMs?: number
}

export class RunnerContainer implements Prestarted {
  readonly name: string
  /** Settles once the runner said hello: resolves, or rejects with a RunnerStartError. */
  readonly ready: Promise<void>
  /** Settles once the container is gone or going (its socket closed, or it never started) and `docker run` has exited. */
  readonly exited: Promise<void>
  /** When the runner said hello (the clock of `now`). */
  readyAt?: number
  /** Calls started in this container. */
  calls = 0
  private readonly server = net.createServer()
  private socket?: net.Socket
  private cli?: DetachedCli
  private closing = false
  private gone = false
  private markGone!: () => void
  private current?: {stdout: Sink; stderr: Sink; end: (end: CallEnd) => void}
  private readonly now: () => number

  constructor(private readonly options: RunnerContainerOptions) {
    this.name = options.name
    this.now = options.now ?? Date.now
    const gone = new Promise<void>((resolve) => (this.markGone = resolve))
    let cliDone!: () => void
    const cliExited = new Promise<void>((resolve) => (cliDone = resolve))
    this.ready = this.boot(cliDone)
    // Rejections are read through `ready`; this keeps one nobody awaits from being "unhandled".
    this.ready.catch(() => {})
    this.exited = Promise.all([gone, cliExited]).then(() => {})
  }

  /** Runs one call: its input, then its output to the sinks as it comes, until its end. */
  call(input: Uint8Array, more: boolean, stdout: Sink, stderr: Sink): Promise<CallEnd> {
    if (this.current) throw new Error(`container ${this.name} already runs a call`)
    this.calls++
    if (this.gone || !this.socket) return Promise.resolve({error: 'the container is gone', lost: true})
    const socket = this.socket
    return new Promise<CallEnd>((resolve) => {
      this.current = {
        stdout,
        stderr,
        end: (end) => {
          this.current = undefined
          resolve(end)
        },
      }
      socket.write(callFrames(input, more))
    })
  }

  /** No more calls: the runner exits at end of its socket, and docker removes the container (--rm). */
  close(): void {
    this.closing = true
    // Not connected yet: boot() starts no container once it sees this, and one already started is ended at its hello.
    this.socket?.end()
  }

  /** The last resort of a removal that does not end it: drops the socket and the docker CLI. */
  abandon(): void {
    this.closing = true
    this.cli?.kill('SIGKILL')
    this.socket?.destroy()
    this.server.close()
    this.setGone('the container was abandoned')
  }

  private async boot(cliDone: () => void): Promise<void> {
    const {socketPath} = this.options
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject)
        // Any user may connect: the container may run as any uid. Only this container sees the file (a bind mount of it alone).
        this.server.listen({path: socketPath, writableAll: true}, resolve)
      })
    } catch (error) {
      cliDone()
      this.setGone('no socket')
      throw new RunnerStartError(`cannot listen on ${socketPath}: ${(error as Error).message}`, false)
    }
    if (this.closing) {
      this.stopListening()
      cliDone()
      this.setGone('closed before its start')
      throw new RunnerStartError('the container was closed before its start', false)
    }
    const connected = new Promise<net.Socket>((resolve) => this.server.once('connection', resolve))
    let cli: DetachedCli
    try {
      cli = this.options.start()
    } catch (error) {
      // No room for the environment file, say: like docker failing to run it.
      this.stopListening()
      cliDone()
      this.setGone('it did not start')
      throw new RunnerStartError(`cannot start the container: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, false)
    }
    this.cli = cli
    let connectTimer: NodeJS.Timeout | undefined
    const started: Promise<never> = Promise.resolve(cli).then(
      (result) => {
        cliDone()
        if (!result.failed) return new Promise<never>((_, reject) => {
          connectTimer = setTimeout(
            () => reject(new RunnerStartError(`the runner in ${this.name} did not connect within ${CONNECT_TIMEOUT_MS / 1000} s of its start: is the Docker engine on another host?`, true)),
            this.options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
          )
          connectTimer.unref()
        })
        const failure = dockerError(result)
        throw new RunnerStartError(failure, UNUSABLE.test(failure))
      },
      () => {
        cliDone()
        throw new RunnerStartError('docker run failed', false)
      },
    )
    // Settles after the race when the runner connected first: nobody reads it then.
    started.catch(() => {})
    let socket: net.Socket
    try {
      socket = await Promise.race([connected, started])
    } catch (error) {
      this.stopListening()
      this.setGone('it did not start')
      throw error
    } finally {
      clearTimeout(connectTimer)
    }
    // One connection only, the runner's: nothing else in the container can reach the worker.
    this.stopListening()
    this.socket = socket
    return this.attach(socket)
  }

  private attach(socket: net.Socket): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let hello = false
      const decoder = new FrameDecoder(
        (type, payload) => {
          if (!hello) {
            if (type !== FROM_RUNNER.hello || payload.toString('latin1') !== RUNNER_HELLO) {
              decoder.stop()
              socket.destroy()
              reject(new RunnerStartError(`container ${this.name} did not speak ${RUNNER_HELLO}`, true))
              return
            }
            hello = true
            this.readyAt = this.now()
            if (this.closing) socket.end()
            resolve()
            return
          }
          this.onFrame(type, payload, decoder, socket)
        },
        (why) => {
          socket.destroy()
          this.current?.end({error: `the runner sent ${why}`, lost: true})
        },
      )
      socket.on('data', (chunk: Buffer) => decoder.push(chunk))
      // A write after the runner exited (a killed container) is not worth a crash.
      socket.on('error', () => {})
      socket.on('close', () => {
        decoder.stop()
        if (!hello) reject(new RunnerStartError(`the runner in ${this.name} hung up before its hello`, false))
        this.setGone('its container ended during the call')
      })
    })
  }

  private onFrame(type: string, payload: Buffer, decoder: FrameDecoder, socket: net.Socket): void {
    const call = this.current
    if (type === FROM_RUNNER.stdout || type === FROM_RUNNER.stderr) {
      // Output with no call (not the runner's protocol): the container cannot be trusted with one.
      if (!call) return void socket.destroy()
      ;(type === FROM_RUNNER.stdout ? call.stdout : call.stderr)(Buffer.from(payload))
    } else if (type === FROM_RUNNER.exit) {
      const exitCode = exitCodeOf(payload)
      if (!call || exitCode === undefined) {
        decoder.stop()
        socket.destroy()
        call?.end({error: 'the runner sent an exit frame amp cannot read', lost: true})
        return
      }
      call.end({exitCode})
    } else if (type === FROM_RUNNER.failed) {
      const error = payload.toString('utf8').split('\n')[0].slice(0, 500)
      if (call) call.end({error, fatal: error.startsWith(RUNNER_FAILED)})
      // The runner failed outside any call: it exits.
      else socket.destroy()
    } else {
      decoder.stop()
      socket.destroy()
    }
  }

  private stopListening(): void {
    this.server.close()
    try {
      rmSync(this.options.socketPath, {force: true})
    } catch {
      // Its directory went first (the worker is stopping): nothing left to remove.
    }
  }

  private setGone(why: string): void {
    if (this.gone) return
    this.gone = true
    this.current?.end({error: why, lost: true})
    this.markGone()
  }
}

/** docker's own line about why `docker run` failed. */
function dockerError(result: {stderr?: unknown; shortMessage?: string; exitCode?: number}): string {
  const line = dockerLines(String(result.stderr ?? ''))[0]
  return line ? dockerReason(line) : (result.shortMessage ?? `docker run exited ${result.exitCode}`)
}
