/** The listener's options from the resolved settings (flags, env, config file, defaults): what `amp listener start` runs. */
import {etcdAuthOf, natsAuthOf} from '../shared/credentials.js'
import type {Settings} from '../shared/config.js'
import type {Logger} from '../shared/logger.js'
import type {ListenerOptions} from './listener.js'

export function listenerOptionsFrom(settings: Settings, logger: Logger): ListenerOptions {
  return {
    host: settings.host,
    port: settings.port,
    nats: settings.nats,
    etcd: settings.etcd,
    maxBodyBytes: settings.maxBodyBytes,
    drainTimeoutMs: settings.drainTimeoutMs,
    auth: {token: settings.token, invokeToken: settings.invokeToken},
    natsAuth: natsAuthOf(settings),
    etcdAuth: etcdAuthOf(settings),
    maxInFlight: settings.maxInFlight,
    async: {leaseMs: settings.asyncLeaseMs, retentionMs: settings.asyncRetentionMs, replicas: settings.jsReplicas},
    logger,
  }
}
