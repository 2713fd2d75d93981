/** The stack's options from the resolved settings (flags, env, config file, defaults): what `amp up` runs. */
import {etcdAuthOf, natsAuthOf} from '../shared/credentials.js'
import type {ConfigKey, Settings} from '../shared/config.js'
import type {Logger} from '../shared/logger.js'
import type {StackOptions} from './stack.js'

export interface StackContext {
  /** The CLI's data dir (etcd's data, the servers' logs). */
  dataDir: string
  logger: Logger
  /** Whether a setting was given (flag, env or config file) rather than left to its default. */
  isSet: (key: ConfigKey) => boolean
}

export function stackOptionsFrom(settings: Settings, {dataDir, logger, isSet}: StackContext): StackOptions {
  return {
    dataDir,
    host: settings.host,
    port: settings.port,
    // Left out unless given, so the stack checks the default address and starts a server there if needed.
    nats: isSet('nats') ? settings.nats : undefined,
    etcd: isSet('etcd') ? settings.etcd.join(',') : undefined,
    concurrency: settings.concurrency,
    maxInFlight: settings.maxInFlight,
    docker: settings.docker,
    pull: settings.pull,
    auth: {token: settings.token, invokeToken: settings.invokeToken},
    natsAuth: natsAuthOf(settings),
    etcdAuth: etcdAuthOf(settings),
    logger,
  }
}
