/**
 * Settings for the CLI and the daemons. Each setting comes, in this order of precedence, from its
 * flag, its `AMP_<KEY>` environment variable (both handled by oclif's flag `env` option), the YAML
 * config file (keys = flag names), or the default below. Flags get no oclif default, so that a
 * value from the file can still apply.
 */
import {readFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join, resolve} from 'node:path'

import {
  checkCredential,
  CREDENTIAL_FIELDS,
  CREDENTIAL_KEYS,
  type CredentialKey,
  type CredentialSettings,
  isCredentialKey,
  resolveCredentials,
} from './credentials.js'
import {AmpError} from './errors.js'
import {LOG_FORMATS, type LogFormat} from './logger.js'
import {DEFAULT_TIMEOUT_MS} from './function-spec.js'
import {formatDuration, parseDuration, parseReplicas, type ReplicasSetting} from './validate.js'
import {formatBytes, MIB} from './bytes.js'

export type PullPolicy = 'missing' | 'never' | 'always'
export const PULL_POLICIES: readonly PullPolicy[] = ['missing', 'never', 'always']

/** Settings after resolution, in the types the runtime takes; tokens, credentials and TLS files in credentials.ts. */
export interface Settings extends CredentialSettings {
  server: string
  host: string
  port: number
  nats: string
  etcd: string[]
  concurrency: number
  docker: string
  pull: PullPolicy
  timeoutMs: number
  maxBodyBytes: number
  /** Listener: calls served at once; past it, 429. */
  maxInFlight: number
  /** Daemon log lines: logfmt or json. */
  logFormat: LogFormat
  /** Daemons: how long SIGTERM waits for calls in flight. */
  drainTimeoutMs: number
  /** Worker: port of /metrics and /health/*; off when undefined. */
  metricsPort?: number
  metricsHost: string
  /** Asynchronous calls (docs/async.md): the workers' lease on a running call (the consumer's ack wait). */
  asyncLeaseMs: number
  /** Worker: first retry delay of a failed asynchronous call (then 4 times longer each time). */
  asyncRetryBaseMs: number
  /** How long call records, results and queued callbacks are kept, when this daemon creates the buckets. */
  asyncRetentionMs: number
  /** JetStream replicas of amp's streams, KV and object store (js-replicas.ts, docs/deploy.md). */
  jsReplicas: ReplicasSetting
  /** Worker: most idle pre-started containers across all functions (0: none); its concurrency when undefined. */
  prestartMax?: number
  /** Worker: a function's pre-started containers are removed after this long without a call. */
  prestartIdleMs: number
  /** Worker: run the in-container runner (docs/runner.md) as every container's PID 1. */
  runner: boolean
  /** Worker: the runner binary; the one `npm run build` made when undefined. */
  runnerPath?: string
  /** Worker: where the containers' sockets go; runner-files.ts defaultRuntimeDir when undefined. */
  runtimeDir?: string
}

export const MAX_BODY_LIMIT = 1024 * MIB
/** Largest --max-inflight: each call may hold max-body + 9 MiB of output in memory. */
export const MAX_IN_FLIGHT_LIMIT = 100_000

export const DEFAULTS: Readonly<Settings> = Object.freeze({
  server: 'http://localhost:4242',
  // Loopback only: the listener is open unless it has a token. --host 0.0.0.0 serves other machines.
  host: '127.0.0.1',
  port: 4242,
  nats: 'nats://127.0.0.1:4222',
  etcd: ['http://127.0.0.1:2379'],
  concurrency: 4,
  docker: 'docker',
  pull: 'missing',
  timeoutMs: DEFAULT_TIMEOUT_MS,
  maxBodyBytes: 8 * MIB,
  maxInFlight: 64,
  logFormat: 'logfmt',
  drainTimeoutMs: 30_000,
  metricsPort: undefined,
  metricsHost: '127.0.0.1',
  asyncLeaseMs: 30_000,
  asyncRetryBaseMs: 1000,
  asyncRetentionMs: 24 * 3_600_000,
  jsReplicas: 'auto',
  prestartMax: undefined,
  prestartIdleMs: 60_000,
  runner: true,
  runnerPath: undefined,
  runtimeDir: undefined,
})

/** The defaults as a user would write them, for flag help. */
export const DEFAULT_TEXT: Readonly<Record<ConfigKey, string>> = Object.freeze({
  server: DEFAULTS.server,
  host: DEFAULTS.host,
  port: String(DEFAULTS.port),
  nats: DEFAULTS.nats,
  etcd: DEFAULTS.etcd.join(','),
  concurrency: String(DEFAULTS.concurrency),
  docker: DEFAULTS.docker,
  pull: DEFAULTS.pull,
  timeout: formatDuration(DEFAULTS.timeoutMs),
  'max-body': formatBytes(DEFAULTS.maxBodyBytes, 'setting'),
  'log-format': DEFAULTS.logFormat,
  'drain-timeout': formatDuration(DEFAULTS.drainTimeoutMs),
  'metrics-port': 'off',
  'metrics-host': DEFAULTS.metricsHost,
  ...(Object.fromEntries(CREDENTIAL_KEYS.map((key) => [key, 'none'])) as Record<CredentialKey, string>),
  'max-inflight': String(DEFAULTS.maxInFlight),
  'async-lease': formatDuration(DEFAULTS.asyncLeaseMs),
  'async-retry-base': formatDuration(DEFAULTS.asyncRetryBaseMs),
  'async-retention': formatDuration(DEFAULTS.asyncRetentionMs),
  'js-replicas': 'auto: 3 on a cluster of 3 or more NATS servers, else 1',
  'prestart-max': 'the concurrency',
  'prestart-idle': formatDuration(DEFAULTS.prestartIdleMs),
  runner: 'on',
  'runner-path': "dist/runner/amp-runner of amp's package",
  'runtime-dir': "systemd's RuntimeDirectory, /run/amp for root, else $XDG_RUNTIME_DIR/amp",
})

export const CONFIG_KEYS = [
  'server',
  'host',
  'port',
  'nats',
  'etcd',
  'concurrency',
  'docker',
  'pull',
  'timeout',
  'max-body',
  'log-format',
  'drain-timeout',
  'metrics-port',
  'metrics-host',
  ...CREDENTIAL_KEYS,
  'max-inflight',
  'async-lease',
  'async-retry-base',
  'async-retention',
  'js-replicas',
  'prestart-max',
  'prestart-idle',
  'runner',
  'runner-path',
  'runtime-dir',
] as const
export type ConfigKey = (typeof CONFIG_KEYS)[number]

/** Where a key's value lives in Settings. */
const FIELD: Record<ConfigKey, keyof Settings> = {
  server: 'server',
  host: 'host',
  port: 'port',
  nats: 'nats',
  etcd: 'etcd',
  concurrency: 'concurrency',
  docker: 'docker',
  pull: 'pull',
  timeout: 'timeoutMs',
  'max-body': 'maxBodyBytes',
  'log-format': 'logFormat',
  'drain-timeout': 'drainTimeoutMs',
  'metrics-port': 'metricsPort',
  'metrics-host': 'metricsHost',
  ...CREDENTIAL_FIELDS,
  'max-inflight': 'maxInFlight',
  'async-lease': 'asyncLeaseMs',
  'async-retry-base': 'asyncRetryBaseMs',
  'async-retention': 'asyncRetentionMs',
  'js-replicas': 'jsReplicas',
  'prestart-max': 'prestartMax',
  'prestart-idle': 'prestartIdleMs',
  runner: 'runner',
  'runner-path': 'runnerPath',
  'runtime-dir': 'runtimeDir',
}

export const CONFIG_ENV = 'AMP_CONFIG'

/** `$HOME/.config/amp/amp.yaml`, computed on each call so tests (and users) can move HOME. */
export function defaultConfigPath(): string {
  return join(homedir(), '.config', 'amp', 'amp.yaml')
}

export interface LoadedConfig {
  /** The file that was read, or that would have been read (the default path) when none exists. */
  path: string
  /** false when the default file does not exist; settings is then empty. */
  found: boolean
  settings: Partial<Settings>
}

/**
 * Reads the config file. `explicitPath` is the value of --use-config / AMP_CONFIG: that file must
 * exist. Without it, the default file is read if it exists. An empty --use-config= is a usage error,
 * as an empty --server= is (an empty AMP_CONFIG, like an empty AMP_SERVER, counts as unset: oclif
 * drops empty env values).
 */
export async function loadConfig(explicitPath?: string): Promise<LoadedConfig> {
  if (explicitPath === '') throw new AmpError('bad_request', 'invalid --use-config "": give the path of a YAML config file, e.g. ./amp.yaml')
  const path = explicitPath ? resolve(explicitPath) : defaultConfigPath()
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && !explicitPath) return {path, found: false, settings: {}}
    const reason = code === 'ENOENT' ? 'no such file (given by --use-config or AMP_CONFIG)' : (code ?? String(error))
    throw new AmpError('config_invalid', `cannot read config file ${shownPath(path)}: ${reason}`, {cause: error})
  }
  return {path, found: true, settings: await parseConfig(text, shownPath(path))}
}

/** A path as errors show it: quoted when it holds control characters, so the error stays one line. */
function shownPath(path: string): string {
  return /[\u0000-\u001f\u007f]/.test(path) ? JSON.stringify(path) : path
}

/** Parses and checks the YAML text of a config file; `path` only names the file in errors. */
export async function parseConfig(text: string, path: string): Promise<Partial<Settings>> {
  // Loaded here, not at the top: most CLI runs have no config file, and yaml costs startup time.
  // The default export (yaml is CommonJS): the CLI's bundle gives a CommonJS module no named ones.
  const {default: YAML} = await import('yaml')
  let data: unknown
  try {
    data = YAML.parse(text)
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).split(/[\r\n]/)[0]
    throw new AmpError('config_invalid', `config file ${path} is not valid YAML: ${reason}`, {cause: error})
  }
  if (data === null || data === undefined) return {}
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new AmpError('config_invalid', `config file ${path} must be a mapping of settings (key: value), e.g. "server: http://localhost:4242"`)
  }
  const settings: Partial<Settings> = {}
  for (const [key, value] of Object.entries(data)) {
    if (!(CONFIG_KEYS as readonly string[]).includes(key)) {
      throw new AmpError(
        'config_invalid',
        // Quoted as JSON: a key from the file may hold newlines or control characters, the message stays one line.
        `config file ${path}: unknown key ${JSON.stringify(key)} (known keys: ${CONFIG_KEYS.join(', ')})`,
      )
    }
    try {
      Object.assign(settings, {[FIELD[key as ConfigKey]]: fileValue(key as ConfigKey, value)})
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error)
      throw new AmpError('config_invalid', `config file ${path}: key ${JSON.stringify(key)}: ${reason}`, {cause: error})
    }
  }
  return settings
}

/** Checks one value from the file; the caller names the file and key in the error. */
function fileValue(key: ConfigKey, value: unknown): Settings[keyof Settings] {
  if (isCredentialKey(key)) return checkCredential(key, value)
  const shown = JSON.stringify(value) ?? String(value)
  switch (key) {
    case 'server':
    case 'host':
    case 'metrics-host':
    case 'nats':
    case 'runner-path':
    case 'runtime-dir':
    case 'docker': {
      if (typeof value !== 'string' || value.trim() === '') throw new Error(`must be a non-empty string, got ${shown}`)
      if (key === 'server') checkServerUrl(value)
      return value
    }
    case 'etcd': {
      const list = typeof value === 'string' ? splitList(value) : value
      if (!Array.isArray(list) || list.length === 0 || !list.every((item) => typeof item === 'string' && item.trim() !== '')) {
        throw new Error(`must be a URL, a comma-separated list of URLs or a YAML list of URLs, got ${shown}`)
      }
      return list.map((item: string) => item.trim())
    }
    case 'port':
    case 'metrics-port':
    case 'max-inflight':
    case 'prestart-max':
    case 'concurrency': {
      const min = key === 'concurrency' || key === 'max-inflight' ? 1 : 0
      const max = key === 'concurrency' || key === 'prestart-max' ? 1024 : key === 'max-inflight' ? MAX_IN_FLIGHT_LIMIT : 65_535
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
        throw new Error(`must be a whole number from ${min} to ${max}, got ${shown}`)
      }
      return value
    }
    case 'pull': {
      if (typeof value !== 'string' || !(PULL_POLICIES as readonly string[]).includes(value)) {
        throw new Error(`must be one of ${PULL_POLICIES.join(', ')}, got ${shown}`)
      }
      return value as PullPolicy
    }
    case 'drain-timeout':
    case 'async-lease':
    case 'async-retry-base':
    case 'async-retention':
    case 'prestart-idle':
    case 'timeout': {
      // A bare number is seconds, as on the command line.
      if (typeof value !== 'string' && typeof value !== 'number') throw new Error(`must be a duration such as 30s or 2m, got ${shown}`)
      return parseDuration(String(value))
    }
    case 'max-body': {
      if (typeof value !== 'string' && typeof value !== 'number') throw new Error(`must be a size such as 8MiB, got ${shown}`)
      return parseSize(String(value))
    }
    case 'log-format': {
      if (typeof value !== 'string' || !(LOG_FORMATS as readonly string[]).includes(value)) {
        throw new Error(`must be one of ${LOG_FORMATS.join(', ')}, got ${shown}`)
      }
      return value as LogFormat
    }
    case 'js-replicas':
      return parseReplicas(value)
    case 'runner': {
      if (typeof value !== 'boolean') throw new Error(`must be true or false, got ${shown}`)
      return value
    }
  }
}

/** Values given on the command line or in the environment, as oclif parsed them. */
export interface GivenSettings extends Partial<Record<CredentialKey, string>> {
  server?: string
  host?: string
  port?: number
  nats?: string
  etcd?: string | string[]
  concurrency?: number
  docker?: string
  pull?: string
  timeout?: string
  'max-body'?: string
  'log-format'?: string
  'drain-timeout'?: string
  'metrics-port'?: number
  'metrics-host'?: string
  'max-inflight'?: number
  'async-lease'?: string
  'async-retry-base'?: string
  'async-retention'?: string
  'js-replicas'?: string
  'prestart-max'?: number
  'prestart-idle'?: string
  runner?: boolean
  'runner-path'?: string
  'runtime-dir'?: string
}

/**
 * Flag (or env) value, else file value, else default. Invalid flag or env values are usage errors
 * (exit 2); file values were checked when the file was read.
 */
export function resolveSettings(given: GivenSettings, file: Partial<Settings> = {}): Settings {
  const etcd = given.etcd === undefined ? undefined : [given.etcd].flat().flatMap((item) => splitList(item))
  if (etcd !== undefined && etcd.length === 0) throw new AmpError('bad_request', 'invalid --etcd: give at least one URL')
  const pull = given.pull
  if (pull !== undefined && !(PULL_POLICIES as readonly string[]).includes(pull)) {
    throw new AmpError('bad_request', `invalid --pull ${JSON.stringify(pull)}: use one of ${PULL_POLICIES.join(', ')}`)
  }
  const logFormat = given['log-format']
  if (logFormat !== undefined && !(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    throw new AmpError('bad_request', `invalid --log-format ${JSON.stringify(logFormat)}: use one of ${LOG_FORMATS.join(', ')}`)
  }
  const server = given.server ?? file.server ?? DEFAULTS.server
  checkServerUrl(server)
  return {
    server,
    host: given.host ?? file.host ?? DEFAULTS.host,
    port: given.port ?? file.port ?? DEFAULTS.port,
    nats: given.nats ?? file.nats ?? DEFAULTS.nats,
    etcd: etcd ?? file.etcd ?? [...DEFAULTS.etcd],
    concurrency: given.concurrency ?? file.concurrency ?? DEFAULTS.concurrency,
    docker: given.docker ?? file.docker ?? DEFAULTS.docker,
    pull: (pull as PullPolicy | undefined) ?? file.pull ?? DEFAULTS.pull,
    timeoutMs: given.timeout === undefined ? (file.timeoutMs ?? DEFAULTS.timeoutMs) : parseDuration(given.timeout),
    maxBodyBytes:
      given['max-body'] === undefined ? (file.maxBodyBytes ?? DEFAULTS.maxBodyBytes) : parseSize(given['max-body']),
    logFormat: (logFormat as LogFormat | undefined) ?? file.logFormat ?? DEFAULTS.logFormat,
    drainTimeoutMs:
      given['drain-timeout'] === undefined ? (file.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs) : parseDuration(given['drain-timeout']),
    metricsPort: given['metrics-port'] ?? file.metricsPort,
    metricsHost: given['metrics-host'] ?? file.metricsHost ?? DEFAULTS.metricsHost,
    ...resolveCredentials(given, file),
    maxInFlight: given['max-inflight'] ?? file.maxInFlight ?? DEFAULTS.maxInFlight,
    asyncLeaseMs: durationOf(given['async-lease'], file.asyncLeaseMs, DEFAULTS.asyncLeaseMs),
    asyncRetryBaseMs: durationOf(given['async-retry-base'], file.asyncRetryBaseMs, DEFAULTS.asyncRetryBaseMs),
    asyncRetentionMs: durationOf(given['async-retention'], file.asyncRetentionMs, DEFAULTS.asyncRetentionMs),
    jsReplicas: given['js-replicas'] === undefined ? (file.jsReplicas ?? DEFAULTS.jsReplicas) : givenReplicas(given['js-replicas']),
    prestartMax: given['prestart-max'] ?? file.prestartMax,
    prestartIdleMs: durationOf(given['prestart-idle'], file.prestartIdleMs, DEFAULTS.prestartIdleMs),
    runner: given.runner ?? file.runner ?? DEFAULTS.runner,
    runnerPath: given['runner-path'] ?? file.runnerPath,
    runtimeDir: given['runtime-dir'] ?? file.runtimeDir,
  }
}

/** --js-replicas as typed: a usage error (exit 2) when it is not auto or 1 to 5. */
function givenReplicas(text: string): ReplicasSetting {
  try {
    return parseReplicas(text)
  } catch (error) {
    throw new AmpError('bad_request', `invalid --js-replicas: ${(error as Error).message}`)
  }
}

/** A duration given by flag or env (text), else the file's, else the default. */
function durationOf(given: string | undefined, file: number | undefined, fallback: number): number {
  return given === undefined ? (file ?? fallback) : parseDuration(given)
}

/** True when the setting was given by flag, env or file (not left to its default). */
export function isSet(key: ConfigKey, given: GivenSettings, file: Partial<Settings>): boolean {
  return given[key] !== undefined || file[FIELD[key]] !== undefined
}

function splitList(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
}

/** The listener URL must be http(s) with nothing after the path, e.g. http://localhost:4242. */
export function checkServerUrl(server: string): URL {
  let url: URL | undefined
  try {
    url = new URL(server)
  } catch {
    url = undefined
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash || url.username || url.password) {
    throw new AmpError(
      'bad_request',
      `invalid server URL ${JSON.stringify(server)}: use http(s)://host[:port], e.g. http://localhost:4242`,
    )
  }
  return url
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: MIB,
  mb: 1_000_000,
  mib: MIB,
  g: 1024 * MIB,
  gb: 1_000_000_000,
  gib: 1024 * MIB,
}

/** Parses "8MiB", "512KiB", "1MB", "1048576" (bytes). At most 1GiB: bodies are held in memory. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = match ? SIZE_UNITS[match[2].toLowerCase()] : undefined
  const bytes = match && unit ? Math.floor(Number(match[1]) * unit) : Number.NaN
  if (!(bytes > 0 && bytes <= MAX_BODY_LIMIT)) {
    throw new AmpError(
      'bad_request',
      `invalid size ${JSON.stringify(text)}: use e.g. 8MiB, 512KiB or a number of bytes, more than 0 and at most 1GiB`,
    )
  }
  return bytes
}
