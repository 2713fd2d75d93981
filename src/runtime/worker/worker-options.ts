/** The worker's options from the resolved settings (flags, env, config file, defaults): what `amp worker start` runs. */
import {natsAuthOf} from '../shared/credentials.js'
import type {Settings} from '../shared/config.js'
import type {Logger} from '../shared/logger.js'
import type {WorkerOptions} from './worker.js'

export function workerOptionsFrom(settings: Settings, logger: Logger): WorkerOptions {
  return {
    nats: settings.nats,
    concurrency: settings.concurrency,
    docker: settings.docker,
    pull: settings.pull,
    drainTimeoutMs: settings.drainTimeoutMs,
    prestartMax: settings.prestartMax,
    prestartIdleMs: settings.prestartIdleMs,
    runner: settings.runner,
    runnerPath: settings.runnerPath,
    runtimeDir: settings.runtimeDir,
    metricsPort: settings.metricsPort,
    metricsHost: settings.metricsHost,
    natsAuth: natsAuthOf(settings),
    async: {leaseMs: settings.asyncLeaseMs, retryBaseMs: settings.asyncRetryBaseMs, retentionMs: settings.asyncRetentionMs, replicas: settings.jsReplicas},
    logger,
  }
}
