/**
 * Follows `docker events` for a filter, one bounded window after the other, and hands each event
 * to a callback. Used for containers' start times (container-events.ts) and for image changes,
 * which make the worker read an image's command again (image-commands.ts).
 */
import {execa, type ResultPromise} from 'execa'

import type {Logger} from '../shared/logger.js'

const RESTART_MS = 1000
/**
 * Each `docker events` runs for this long (--until), then the next one takes over from where it
 * stopped (--since), so no event is lost. The bound matters when the worker is killed with -9: the
 * docker CLI it leaves behind exits by itself within this time instead of running forever.
 */
const WINDOW_S = 60

/** The parts of a `docker events --format '{{json .}}'` line amp reads. */
export interface DockerEvent {
  Type?: string
  Action?: string
  status?: string
  timeNano?: number
  Actor?: {ID?: string; Attributes?: Record<string, string>}
}

export interface DockerEventsOptions {
  docker: string
  /** `--filter` values, e.g. ['type=container', 'event=start']. */
  filters: string[]
  onEvent: (event: DockerEvent) => void
  /** Said once when `docker events` fails; it is tried again every second. */
  warning: string
  /** Called each time `docker events` stops or starts again (following changes). */
  onFollowing?: (following: boolean) => void
  exec?: typeof execa
  logger?: Logger
}

export class DockerEvents {
  private child?: ResultPromise
  private stopped = false
  private restartTimer?: NodeJS.Timeout
  private warned = false
  /** Where the next `docker events` starts (Unix seconds), so a window change misses nothing. */
  private since?: number
  /** True while events are being followed: what is not seen then did not happen. */
  following = false

  constructor(private readonly options: DockerEventsOptions) {}

  /** Starts following; restarts `docker events` if it ends, until stop(). */
  start(): void {
    if (this.stopped || this.child) return
    const exec = this.options.exec ?? execa
    const since = this.since ?? Math.floor(Date.now() / 1000)
    const until = Math.max(since, Math.floor(Date.now() / 1000)) + WINDOW_S
    const child = exec(
      this.options.docker,
      ['events', ...this.options.filters.flatMap((filter) => ['--filter', filter]), '--format', '{{json .}}', '--since', String(since), '--until', String(until)],
      {reject: false, stdin: 'ignore', buffer: false, cleanup: false},
    )
    this.child = child
    this.setFollowing(true)
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
      this.setFollowing(false)
      if (!this.warned) {
        this.warned = true
        this.options.logger?.warn(this.options.warning, {error: result.shortMessage})
      }
      this.restartTimer = setTimeout(() => this.start(), RESTART_MS)
      this.restartTimer.unref()
    })
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.restartTimer)
    this.child?.kill()
    this.setFollowing(false)
  }

  private setFollowing(following: boolean): void {
    if (this.following === following) return
    this.following = following
    this.options.onFollowing?.(following)
  }

  private onLine(line: string): void {
    let event: DockerEvent
    try {
      event = JSON.parse(line)
    } catch {
      return
    }
    if (typeof event === 'object' && event !== null) this.options.onEvent(event)
  }
}
