/**
 * One pre-started container seen through its docker CLI (`docker run --interactive` without --rm,
 * stdin a pipe kept open): what it writes before a call takes it is kept, and handed to that call.
 */
import type {Prestarted} from './container-pool.js'

/** The parts of an execa child this needs. */
export interface CliProcess {
  stdin?: NodeJS.WritableStream | null
  stdout?: NodeJS.ReadableStream | null
  stderr?: NodeJS.ReadableStream | null
  kill(signal?: NodeJS.Signals): boolean
}

type Sink = (chunk: Buffer) => void

/** A process that writes this much before it has any input is not waiting for it: it is dropped. */
export const MAX_EARLY_BYTES = 1024 * 1024

export class PrestartedContainer<R> implements Prestarted {
  readonly exited: Promise<R>
  private early: Array<['stdout' | 'stderr', Buffer]> = []
  private earlyBytes = 0
  private sinks?: {stdout: Sink; stderr: Sink}

  constructor(
    readonly name: string,
    private readonly child: CliProcess & Promise<R>,
    readonly ready?: Promise<unknown>,
  ) {
    this.exited = child
    child.stdout?.on('data', (chunk: Buffer) => this.write('stdout', chunk))
    child.stderr?.on('data', (chunk: Buffer) => this.write('stderr', chunk))
    // EPIPE when the process exits without reading all its input is normal, not a failure.
    child.stdin?.on('error', () => {})
  }

  /** Hands the container to a call: what it wrote so far goes to the sinks first, then everything after. */
  attach(stdout: Sink, stderr: Sink): void {
    this.sinks = {stdout, stderr}
    for (const [stream, chunk] of this.early.splice(0)) this.sinks[stream](chunk)
  }

  abandon(): void {
    this.child.kill('SIGKILL')
  }

  /** Gives the call's input and ends stdin, so the function sees end of input as in a fresh run. */
  give(input: Uint8Array): void {
    this.child.stdin?.end(input)
  }

  private write(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    if (this.sinks) return this.sinks[stream](chunk)
    this.earlyBytes += chunk.length
    if (this.earlyBytes > MAX_EARLY_BYTES) {
      // The pool sees it exit before use, and removes the container.
      this.early = []
      this.child.kill('SIGKILL')
      return
    }
    this.early.push([stream, chunk])
  }
}
