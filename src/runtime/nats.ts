import {connect, type ConnectionOptions, credsAuthenticator, type NatsConnection} from '@nats-io/transport-node'

import {checkUserPassword, type NatsAuth, readCredentialFile, readTlsFiles, redactUrls} from './credentials.js'
import {AmpError} from './errors.js'

export type {NatsConnection}

/** Connects to NATS for a daemon: fails at once with a clear error if no server answers, reconnects forever after that. */
export async function connectNats(servers: string, name: string, auth: NatsAuth = {}): Promise<NatsConnection> {
  const list = servers
    .split(',')
    .map((server) => server.trim())
    .filter(Boolean)
  if (list.length === 0) throw new AmpError('bad_request', 'no NATS server given: set --nats or AMP_NATS')
  const shown = redactUrls(list.join(', '))
  const options = await authOptions(auth)
  try {
    return await connect({
      servers: list,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: 5000,
      ...options,
    })
  } catch (error) {
    const reason = redactUrls((error as Error).message)
    if (isAuthError(error)) {
      throw new AmpError('unauthorized', `NATS at ${shown} refused amp's credentials: ${reason}`, {
        suggestions: ['check nats-user and nats-password, nats-token or nats-creds (flags, AMP_NATS_… or the config file)'],
        cause: error,
      })
    }
    throw new AmpError('service_unavailable', `cannot connect to NATS at ${shown}: ${reason}`, {
      suggestions: [
        auth.tls?.ca || auth.tls?.cert
          ? 'check that nats-server runs with TLS and that nats-tls-ca signed its certificate'
          : 'start nats-server, or point --nats / AMP_NATS at a running one',
      ],
      cause: error,
    })
  }
}

/** nats.js options for amp's NATS settings; files are read here so a bad path fails with its setting's name. */
async function authOptions(auth: NatsAuth): Promise<Partial<ConnectionOptions>> {
  checkUserPassword('nats', auth)
  if (auth.token && auth.user) throw new AmpError('bad_request', 'give nats-token or nats-user and nats-password, not both')
  const options: Partial<ConnectionOptions> = {}
  if (auth.user) Object.assign(options, {user: auth.user, pass: auth.password})
  if (auth.token) options.token = auth.token
  if (auth.creds) options.authenticator = credsAuthenticator(new Uint8Array(await readCredentialFile('nats-creds', auth.creds)))
  const tls = await readTlsFiles('nats', auth.tls)
  if (tls) options.tls = {ca: tls.ca?.toString('utf8'), cert: tls.cert?.toString('utf8'), key: tls.key?.toString('utf8')}
  return options
}

function isAuthError(error: unknown): boolean {
  const {name, message} = error as Error
  return name === 'AuthorizationError' || /authori[sz]ation violation|authentication/i.test(String(message))
}
