/**
 * When did a call's container really start? `docker run` does not say, so the worker follows
 * `docker events` for the containers it labelled as its own and notes Docker's `start` event of
 * each (its time, from the engine). The "container start" phase is then from running `docker run`
 * to that event: pulling a missing image, creating and starting the container (docs/metrics.md).
 */
import type {execa} from 'execa'

import {LABEL} from './container-runner.js'
import {type DockerEvent, DockerEvents} from './docker-events.js'
import type {Logger} from '../shared/logger.js'

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
  private readonly events: DockerEvents

  constructor(options: ContainerStartOptions) {
    this.events = new DockerEvents({
      docker: options.docker,
      filters: ['type=container', 'event=start', `label=${LABEL.worker}=${options.workerId}`],
      onEvent: (event) => this.onEvent(event),
      warning: 'docker events stopped: container start times are not measured until it runs again',
      exec: options.exec,
      logger: options.logger,
    })
  }

  /** Starts following events; restarts `docker events` if it ends, until stop(). */
  start(): void {
    this.events.start()
  }

  private onEvent(event: DockerEvent): void {
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
    if (!this.events.following || waitMs <= 0) return Promise.resolve(undefined)
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
    this.events.stop()
  }
}
