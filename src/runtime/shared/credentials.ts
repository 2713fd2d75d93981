/**
 * Secrets and TLS settings (docs/operations.md "Security"): the listener's tokens, and the credentials and TLS
 * files for NATS and etcd. Each is a config key, an AMP_<KEY> env var and a flag, with no default.
 * Secret values are never logged or printed: redact() and redactUrls() are for anything that might
 * carry one.
 */
import {readFile} from 'node:fs/promises'
import {isIP} from 'node:net'

import {AmpError} from './errors.js'

/** Config key -> Settings field. */
export const CREDENTIAL_FIELDS = {
  token: 'token',
  'invoke-token': 'invokeToken',
  'nats-user': 'natsUser',
  'nats-password': 'natsPassword',
  'nats-token': 'natsToken',
  'nats-creds': 'natsCreds',
  'nats-tls-ca': 'natsTlsCa',
  'nats-tls-cert': 'natsTlsCert',
  'nats-tls-key': 'natsTlsKey',
  'etcd-user': 'etcdUser',
  'etcd-password': 'etcdPassword',
  'etcd-tls-ca': 'etcdTlsCa',
  'etcd-tls-cert': 'etcdTlsCert',
  'etcd-tls-key': 'etcdTlsKey',
} as const

export const CREDENTIAL_KEYS = [
  'token',
  'invoke-token',
  'nats-user',
  'nats-password',
  'nats-token',
  'nats-creds',
  'nats-tls-ca',
  'nats-tls-cert',
  'nats-tls-key',
  'etcd-user',
  'etcd-password',
  'etcd-tls-ca',
  'etcd-tls-cert',
  'etcd-tls-key',
] as const satisfies readonly (keyof typeof CREDENTIAL_FIELDS)[]
export type CredentialKey = (typeof CREDENTIAL_KEYS)[number]

/** Keys whose values are secrets: shown as <redacted>, never logged. */
export const SECRET_KEYS: ReadonlySet<CredentialKey> = new Set(['token', 'invoke-token', 'nats-password', 'nats-token', 'etcd-password'])

export type CredentialSettings = {-readonly [K in CredentialKey as (typeof CREDENTIAL_FIELDS)[K]]?: string}

export function isCredentialKey(key: string): key is CredentialKey {
  return (CREDENTIAL_KEYS as readonly string[]).includes(key)
}

/** Checks a value (from the config file, a flag or the environment); the caller names the source in errors. */
export function checkCredential(key: CredentialKey, value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    // Never echo a secret back, even a malformed one.
    throw new Error(`must be a non-empty string${SECRET_KEYS.has(key) ? '' : `, got ${JSON.stringify(value) ?? String(value)}`}`)
  }
  // Tokens travel in an HTTP header: visible ASCII only, so a stray newline or space fails here, not on every request.
  if ((key === 'token' || key === 'invoke-token') && !/^[\x21-\x7e]{1,4096}$/.test(value)) {
    throw new Error('must be 1 to 4096 visible ASCII characters (no spaces, quotes are fine)')
  }
  return value
}

/** Flag/env value, else file value; a bad flag or env value is a usage error that never shows the value. */
export function resolveCredentials(
  given: Partial<Record<CredentialKey, string>>,
  file: CredentialSettings,
): CredentialSettings {
  const settings: CredentialSettings = {}
  for (const key of CREDENTIAL_KEYS) {
    const field = CREDENTIAL_FIELDS[key]
    const value = given[key]
    if (value === undefined) {
      if (file[field] !== undefined) settings[field] = file[field]
      continue
    }
    try {
      settings[field] = checkCredential(key, value)
    } catch (error) {
      const env = `AMP_${key.toUpperCase().replaceAll('-', '_')}`
      throw new AmpError('bad_request', `invalid --${key} (or ${env}): ${(error as Error).message}`)
    }
  }
  return settings
}

/** `<redacted>` for set secrets; what --config-used prints. */
export function describeCredentials(settings: CredentialSettings): string[] {
  return CREDENTIAL_KEYS.filter((key) => settings[CREDENTIAL_FIELDS[key]] !== undefined).map(
    (key) => `${key}: ${SECRET_KEYS.has(key) ? '<redacted>' : settings[CREDENTIAL_FIELDS[key]]}`,
  )
}

/** URLs with user:password@ (or a NATS token@) in them, with that part replaced: for log lines and messages. */
export function redactUrls(text: string): string {
  return text.replaceAll(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi, '$1<redacted>@')
}

/** TLS files of one connection, as paths. */
export interface TlsFiles {
  ca?: string
  cert?: string
  key?: string
}

/** TLS files, read. */
export interface TlsMaterial {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
}

/**
 * Reads the TLS files of one connection (`what` is "nats" or "etcd", naming the keys in errors).
 * Undefined when none is given. A missing or unreadable file fails with config_invalid (exit 100).
 */
export async function readTlsFiles(what: 'nats' | 'etcd', files: TlsFiles = {}): Promise<TlsMaterial | undefined> {
  if (!files.ca && !files.cert && !files.key) return undefined
  if (Boolean(files.cert) !== Boolean(files.key)) {
    throw new AmpError('bad_request', `give both ${what}-tls-cert and ${what}-tls-key (a client certificate and its key), or neither`)
  }
  const read = async (part: keyof TlsFiles) => {
    const path = files[part]
    return path === undefined ? undefined : readCredentialFile(`${what}-tls-${part}`, path)
  }
  return {ca: await read('ca'), cert: await read('cert'), key: await read('key')}
}

/** Reads a file a credential setting names; the error names the setting and the file, never the content. */
export async function readCredentialFile(key: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message
    throw new AmpError('config_invalid', `cannot read the file of ${key} (${path}): ${code === 'ENOENT' ? 'no such file' : code}`, {
      suggestions: [`check the path given by --${key}, AMP_${key.toUpperCase().replaceAll('-', '_')} or "${key}:" in the config file`],
      cause: error,
    })
  }
}

/** How amp authenticates to NATS (all optional). */
export interface NatsAuth {
  user?: string
  password?: string
  token?: string
  /** Path of a .creds file (JWT and NKey seed). */
  creds?: string
  tls?: TlsFiles
}

/** How amp authenticates to etcd (all optional). */
export interface EtcdAuth {
  user?: string
  password?: string
  tls?: TlsFiles
}

export function natsAuthOf(settings: CredentialSettings): NatsAuth {
  return {
    user: settings.natsUser,
    password: settings.natsPassword,
    token: settings.natsToken,
    creds: settings.natsCreds,
    tls: {ca: settings.natsTlsCa, cert: settings.natsTlsCert, key: settings.natsTlsKey},
  }
}

export function etcdAuthOf(settings: CredentialSettings): EtcdAuth {
  return {
    user: settings.etcdUser,
    password: settings.etcdPassword,
    tls: {ca: settings.etcdTlsCa, cert: settings.etcdTlsCert, key: settings.etcdTlsKey},
  }
}

/** A user needs its password and the other way round (NATS and etcd alike). */
export function checkUserPassword(what: 'nats' | 'etcd', auth: {user?: string; password?: string}): void {
  if (Boolean(auth.user) !== Boolean(auth.password)) {
    throw new AmpError('bad_request', `give both ${what}-user and ${what}-password, or neither`)
  }
}

/** Errors that say the server is not there (yet), not that TLS failed. */
const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT'])

/**
 * Why a TLS handshake with the server at `url` fails (an unknown CA, a name mismatch, a client
 * certificate refused), or undefined when it succeeds or the server is simply not reachable. For
 * clear errors where a client library only says "no connection" (grpc, etcd3).
 */
export async function tlsProblem(url: string, tls: TlsMaterial, timeoutMs = 3000): Promise<string | undefined> {
  // Loaded here, not at the top: every CLI command loads this file, and node:tls (with crypto) is
  // a good part of a short command's startup (bench:cli); only the daemons check TLS.
  const {connect: tlsConnect} = await import('node:tls')
  const parsed = new URL(url)
  const host = parsed.hostname.replace(/^\[|\]$/g, '')
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host,
      port: Number(parsed.port) || 443,
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
      // SNI takes names only.
      servername: isIP(host) ? undefined : host,
    })
    const done = (problem?: string) => {
      socket.destroy()
      resolve(problem)
    }
    socket.setTimeout(timeoutMs, () => done())
    socket.once('secureConnect', () => done())
    socket.once('error', (error: NodeJS.ErrnoException) => done(NETWORK_ERRORS.has(error.code ?? '') ? undefined : error.message))
  })
}
