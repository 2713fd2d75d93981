import {connect, type ConnectionOptions, credsAuthenticator, errors, type NatsConnection} from '@nats-io/transport-node'

import {checkUserPassword, type NatsAuth, readCredentialFile, readTlsFiles, redactUrls} from './credentials.js'
import {AmpError} from './errors.js'

export type {NatsConnection}

/** Connects to NATS for a daemon: fails at once with a clear error if no server answers, reconnects forever after that. */
export async function connectNats(servers: string, name: string, auth: NatsAuth = {}): Promise<NatsConnection> {
  const given = servers
    .split(',')
    .map((server) => server.trim())
    .filter(Boolean)
  if (given.length === 0) throw new AmpError('bad_request', 'no NATS server given: set --nats or AMP_NATS')
  const shown = redactUrls(given.join(', '))
  const {list, fromUrl} = splitCredentials(given)
  const options = await authOptions(auth.user || auth.token || auth.creds ? auth : {...auth, ...fromUrl})
  try {
    return await connect({
      servers: list,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: 5000,
      // Every request would capture a stack trace for an error it almost never has (about 0.1 ms a call); amp shows error messages, not stacks.
      noAsyncTraces: true,
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

/**
 * nats.js v3 ignores credentials in server URLs: take them out (nats://user:password@host, or
 * nats://token@host as nats-server reads it) and use the first ones found when no others are set.
 */
function splitCredentials(servers: string[]): {list: string[]; fromUrl: Pick<NatsAuth, 'user' | 'password' | 'token'>} {
  let fromUrl: Pick<NatsAuth, 'user' | 'password' | 'token'> = {}
  const list = servers.map((server) => {
    const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/@\s]+)@(.*)$/i.exec(server)
    if (!match) return server
    if (!fromUrl.user && !fromUrl.token) {
      const colon = match[2].indexOf(':')
      const part = (text: string) => {
        try {
          return decodeURIComponent(text)
        } catch {
          return text
        }
      }
      fromUrl = colon < 0 ? {token: part(match[2])} : {user: part(match[2].slice(0, colon)), password: part(match[2].slice(colon + 1))}
    }
    return match[1] + match[3]
  })
  return {list, fromUrl}
}

function isAuthError(error: unknown): boolean {
  const {name, message} = error as Error
  return name === 'AuthorizationError' || /authori[sz]ation violation|authentication/i.test(String(message))
}

/** NATS "no responders": nobody subscribes to the subject of a request (no worker, or a listener that is gone). */
export function isNoResponders(error: unknown): boolean {
  if (error instanceof errors.NoRespondersError) return true
  if (error instanceof errors.RequestError) return error.isNoResponders()
  // nats.js's JetStream API reports no responders as "jetstream is not enabled", the cause inside.
  const cause = (error as Error | undefined)?.cause
  return cause !== undefined && cause !== error && isNoResponders(cause)
}
