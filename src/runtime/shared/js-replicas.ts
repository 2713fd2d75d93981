/**
 * How many copies JetStream keeps of amp's streams, KV bucket and object store (docs/deploy.md,
 * "Replicated state"). `auto`: 3 when the NATS cluster amp is connected to has 3 or more servers,
 * else 1. An existing stream with fewer replicas than wanted is raised (nats-server copies its data
 * to the new peers online); amp never lowers them, so an operator's higher setting stays.
 */
import {type JetStreamManager, JetStreamApiCodes, JetStreamApiError, type StreamConfig, type StreamInfo} from '@nats-io/jetstream'
import type {NatsConnection} from '@nats-io/transport-node'

import type {Logger} from './logger.js'
import type {ReplicasSetting} from './validate.js'

// The setting itself is read with the other settings (validate.ts), without loading NATS.
export {MAX_REPLICAS, parseReplicas, type ReplicasSetting} from './validate.js'

/** What `auto` asks for on a cluster: a quorum of 2 survives the loss of any one server. */
const CLUSTER_REPLICAS = 3

/** JetStream's answers when it has fewer servers than replicas asked for (placement, or a server without a cluster). */
const TOO_FEW_SERVERS = new Set([10_005, 10_023, 10_074])

/**
 * The replicas to ask for: the setting, or for `auto` 3 when the server's INFO lists 3 or more
 * servers of its cluster (connect_urls: every server that takes clients), else 1.
 */
export function wantedReplicas(nc: Pick<NatsConnection, 'info'>, setting: ReplicasSetting = 'auto'): number {
  if (setting !== 'auto') return setting
  const info = nc.info
  const servers = new Set(info?.connect_urls ?? []).size
  return info?.cluster && servers >= CLUSTER_REPLICAS ? CLUSTER_REPLICAS : 1
}

/** What ensureStream did with one stream, for the daemon's log. */
export interface StreamSetup {
  stream: string
  replicas: number
  action: 'created' | 'kept' | 'raised'
  /** Why it has fewer replicas than wanted (too few servers right now): it works, with less safety. */
  short?: string
}

/**
 * Creates the stream with `replicas` unless it exists; raises an existing one's replicas when
 * fewer. With `auto`, too few servers for the placement is not an error: the stream is created (or
 * kept) with what the cluster can hold, and `short` says why; the next start raises it.
 */
export async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & {name: string},
  replicas: number,
  setting: ReplicasSetting = replicas,
): Promise<StreamSetup> {
  const existing = await streamInfo(jsm, config.name)
  if (existing) return raiseReplicas(jsm, existing, replicas, setting)
  // Two daemons starting at once both get here: the same config twice is not an error.
  const {setup} = await createWithReplicas(config.name, replicas, setting, (count) => jsm.streams.add({...config, num_replicas: count}))
  return setup
}

/** Raises an existing stream (KV and object store streams too) to `replicas`, never lowers it. */
export async function raiseReplicas(jsm: JetStreamManager, info: StreamInfo, replicas: number, setting: ReplicasSetting = replicas): Promise<StreamSetup> {
  const name = info.config.name
  const has = info.config.num_replicas || 1
  if (has >= replicas) return {stream: name, replicas: has, action: 'kept'}
  try {
    await jsm.streams.update(name, {...info.config, num_replicas: replicas})
    return {stream: name, replicas, action: 'raised'}
  } catch (error) {
    if (!(setting === 'auto' && tooFewServers(error))) throw error
    return {stream: name, replicas: has, action: 'kept', short: (error as Error).message}
  }
}

/**
 * Opens a KV bucket or object store whose stream is `stream`: raised when it exists with fewer
 * replicas, else created by `create` with `replicas` (with 1 under `auto` when the cluster is too small).
 */
export async function openWithReplicas<T>(
  jsm: JetStreamManager,
  stream: string,
  replicas: number,
  setting: ReplicasSetting,
  create: (replicas: number) => Promise<T>,
): Promise<{opened: T; setup: StreamSetup}> {
  const existing = await streamInfo(jsm, stream)
  if (existing) return {setup: await raiseReplicas(jsm, existing, replicas, setting), opened: await create(replicas)}
  return createWithReplicas(stream, replicas, setting, create)
}

/** Creates a missing stream with `replicas`; under `auto`, with 1 when the cluster has too few servers for them. */
async function createWithReplicas<T>(
  stream: string,
  replicas: number,
  setting: ReplicasSetting,
  create: (replicas: number) => Promise<T>,
): Promise<{opened: T; setup: StreamSetup}> {
  try {
    return {opened: await create(replicas), setup: {stream, replicas, action: 'created'}}
  } catch (error) {
    if (!(setting === 'auto' && tooFewServers(error)) || replicas === 1) throw error
    return {opened: await create(1), setup: {stream, replicas: 1, action: 'created', short: (error as Error).message}}
  }
}

/** The stream's info, or undefined when it does not exist. */
export async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name)
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return undefined
    throw error
  }
}

function tooFewServers(error: unknown): boolean {
  return error instanceof JetStreamApiError && TOO_FEW_SERVERS.has(error.code)
}

/** A StreamSetup as log fields. */
export function streamFields(setup: StreamSetup): Record<string, string | number> {
  return {stream: setup.stream, replicas: setup.replicas, action: setup.action, ...(setup.short ? {reason: setup.short} : {})}
}

/** Says which streams got more replicas, and warns about each with fewer than wanted (too few servers when it was made or raised). */
export function logStreamSetup(opened: {streams: StreamSetup[]}, log: Logger): void {
  for (const setup of opened.streams) {
    if (setup.short) log.warn('stream has fewer JetStream replicas than wanted', streamFields(setup))
    else if (setup.action === 'raised') log.info('raised the JetStream replicas of a stream', streamFields(setup))
  }
}
