import {type ContainerRunner, LABEL} from './container-runner.js'
import type {Logger} from '../shared/logger.js'

// Containers no live worker will remove: a dead worker's (one killed with -9 leaves its own running), and at shutdown this worker's own.

/**
 * At the end of a shutdown: any container of this worker still there (a used one docker is still
 * removing, --rm, or one whose runner did not exit) goes now, so a stopped worker leaves none.
 */
export async function removeOwnContainers(runner: ContainerRunner, workerId: string, log: Logger): Promise<void> {
  const removed = await runner.removeLabelled(`${LABEL.worker}=${workerId}`)
  if (removed.length > 0) log.debug('removed containers still there at shutdown', {count: removed.length})
}

/** Removes the containers on this host whose worker is dead. */
export async function removeOrphans(runner: ContainerRunner, log: Logger): Promise<void> {
  const removed = await runner.removeOrphans()
  if (removed.length > 0) log.warn('removed containers left by dead workers', {count: removed.length, containers: removed.join(',')})
}

/** Runs removeOrphans every `everyMs`, one sweep at a time; returns the function that stops it. */
export function sweepOrphans(runner: ContainerRunner, log: Logger, everyMs: number): () => void {
  let sweeping = false
  const timer = setInterval(() => {
    if (sweeping) return
    sweeping = true
    removeOrphans(runner, log)
      .catch((error: Error) => log.warn('orphan sweep failed', {error: error.message}))
      .finally(() => (sweeping = false))
  }, everyMs)
  timer.unref()
  return () => clearInterval(timer)
}
