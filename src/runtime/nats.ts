import {connect, errors, type NatsConnection} from '@nats-io/transport-node'

import {AmpError} from './errors.js'

export type {NatsConnection}

/** Connects to NATS for a daemon: fails at once with a clear error if no server answers, reconnects forever after that. */
export async function connectNats(servers: string, name: string): Promise<NatsConnection> {
  const list = servers
    .split(',')
    .map((server) => server.trim())
    .filter(Boolean)
  if (list.length === 0) throw new AmpError('bad_request', 'no NATS server given: set --nats or AMP_NATS')
  try {
    return await connect({
      servers: list,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: 5000,
    })
  } catch (error) {
    throw new AmpError('service_unavailable', `cannot connect to NATS at ${list.join(', ')}: ${(error as Error).message}`, {
      suggestions: ['start nats-server, or point --nats / AMP_NATS at a running one'],
      cause: error,
    })
  }
}

/** NATS "no responders": nobody subscribes to the subject of a request (no worker, or a listener that is gone). */
export function isNoResponders(error: unknown): boolean {
  if (error instanceof errors.NoRespondersError) return true
  if (error instanceof errors.RequestError) return error.isNoResponders()
  return false
}
