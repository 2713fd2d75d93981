/**
 * When did a call's container really start? `docker run` does not say, so the worker follows
 * `docker events` for the containers it labelled as its own and notes Docker's `start` event of
 * each (its time, from the engine). The "container start" phase is then from running `docker run`
 * to that event: pulling a missing image, creating and starting the container (docs/metrics.md).
 */
import {execa, type ResultPromise} from 'execa'

import {LABEL} from './container-runner.js'
import type {Logger} from './logger.js'

const RESTART_MS = 1000
/**
 * Each `docker events` runs for this long (--until), then the next one takes over from where it
 * stopped (--since), so no event is lost. The bound matters when the worker is killed with -9: the
 * docker CLI it leaves behind exits by itself within this time instead of running forever.
 */
const WINDOW_S = 60
/** Start times not taken by a call are dropped past this many (a call that never asked for its own). */
const MAX_KEPT = 10_000

export interface ContainerStartOptions {
  docker: string
  workerId: string
  exec?: typeof execa
  logger?: Logger
}

export class ContainerStarts {
  private readonly starts = new Map<string, number>()
  private readonly waiters = new Map<string, (at: number) => void>()
  private child?: ResultPromise
  private stopped = false
  private following = false
  private restartTimer?: NodeJS.Timeout
  private warned = false
  /** Where the next `docker events` starts (Unix seconds), so a window change misses nothing. */
  private since?: number

  constructor(private readonly options: ContainerStartOptions) {}

  /** Starts following events; restarts `docker events` if it ends, until stop(). */
  start(): void {
    if (this.stopped || this.child) return
    const exec = this.options.exec ?? execa
    const since = this.since ?? Math.floor(Date.now() / 1000)
    const until = Math.max(since, Math.floor(Date.now() / 1000)) + WINDOW_S
    const child = exec(
      this.options.docker,
      [
        'events',
        '--filter',
        'type=container',
        '--filter',
        'event=start',
        '--filter',
        `label=${LABEL.worker}=${this.options.workerId}`,
        '--format',
        '{{json .}}',
        '--since',
        String(since),
        '--until',
        String(until),
      ],
      {reject: false, stdin: 'ignore', buffer: false, cleanup: false},
    )
    this.child = child
    this.following = true
    let pending = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8')
      let newline
      while ((newline = pending.indexOf('\n')) >= 0) {
        this.onLine(pending.slice(0, newline))
        pending = pending.slice(newline + 1)
      }
    })
    void child.then((result) => {
      this.child = undefined
      if (this.stopped) return
      if (!result.failed) {
        // The window ended: the next one starts where this one stopped.
        this.since = until
        this.start()
        return
      }
      this.since = undefined
      this.following = false
      if (!this.warned) {
        this.warned = true
        this.options.logger?.warn('docker events stopped: container start times are not measured until it runs again', {
          error: result.shortMessage,
        })
      }
      this.restartTimer = setTimeout(() => this.start(), RESTART_MS)
      this.restartTimer.unref()
    })
  }

  private onLine(line: string): void {
    let event: {Action?: string; status?: string; timeNano?: number; Actor?: {Attributes?: Record<string, string>}}
    try {
      event = JSON.parse(line)
    } catch {
      return
    }
    const name = event.Actor?.Attributes?.name
    if ((event.Action ?? event.status) !== 'start' || !name || typeof event.timeNano !== 'number') return
    const at = Math.round(event.timeNano / 1e6)
    const waiter = this.waiters.get(name)
    if (waiter) return waiter(at)
    if (this.starts.size >= MAX_KEPT) this.starts.delete(this.starts.keys().next().value as string)
    this.starts.set(name, at)
  }

  /**
   * The start time (epoch ms) of a container, waiting up to `waitMs` for its event (the event stream
   * and docker run are separate connections). Undefined when not seen, or when events are not followed.
   */
  take(name: string, waitMs = 250): Promise<number | undefined> {
    const seen = this.starts.get(name)
    if (seen !== undefined) {
      this.starts.delete(name)
      return Promise.resolve(seen)
    }
    if (!this.following || waitMs <= 0) return Promise.resolve(undefined)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(name)
        resolve(undefined)
      }, waitMs)
      // A wait of a pre-started container (seconds) must not hold up a worker's exit.
      timer.unref()
      this.waiters.set(name, (at) => {
        clearTimeout(timer)
        this.waiters.delete(name)
        resolve(at)
      })
    })
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.restartTimer)
    this.child?.kill()
  }
}
