/**
 * The base of every amp command: shared flags, the config file, settings resolution and the one
 * place where failures become exit codes (README "Exit codes").
 */
// oclif's subpaths, here and in every command, not '@oclif/core': its index loads all of oclif at
// once, with semver for a Node version check that cannot run in the bundle (bench:cli).
import {Command} from '@oclif/core/command'
import * as Errors from '@oclif/core/errors'
import * as Flags from '@oclif/core/flags'
import type * as Interfaces from '@oclif/core/interfaces'
import {setFlagsFromString} from 'node:v8'

import {AmpClient} from './runtime/client/client.js'
import {describeCredentials} from './runtime/shared/credentials.js'
import {
  type ConfigKey,
  DEFAULT_TEXT,
  type GivenSettings,
  isSet,
  type LoadedConfig,
  loadConfig,
  resolveSettings,
  type Settings,
} from './runtime/shared/config.js'
import {EXIT, isAmpError} from './runtime/shared/errors.js'
import {createLogger, LOG_FORMATS, type Logger, type LoggerOptions} from './runtime/shared/logger.js'

export type AmpFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof AmpCommand)['baseFlags'] & T['flags']>
export type AmpArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/** A settings flag: env var AMP_<KEY>, no oclif default (the config file may still set it), default shown in help. */
export function settingFlag(key: ConfigKey, description: string) {
  return {
    description,
    env: `AMP_${key.toUpperCase().replaceAll('-', '_')}`,
    defaultHelp: async () => DEFAULT_TEXT[key],
  }
}

const GLOBAL = 'GLOBAL'

const SECRET_HINT = ' (prefer the env var or the config file: command lines are visible to other users)'

/** Credentials and TLS for NATS: the listener, the worker and amp up take these. */
export const natsCredentialFlags = {
  'nats-user': Flags.string({...settingFlag('nats-user', 'NATS user name (with --nats-password)'), helpGroup: 'NATS'}),
  'nats-password': Flags.string({...settingFlag('nats-password', `NATS password${SECRET_HINT}`), helpGroup: 'NATS'}),
  'nats-token': Flags.string({...settingFlag('nats-token', `NATS token${SECRET_HINT}`), helpGroup: 'NATS'}),
  'nats-creds': Flags.string({...settingFlag('nats-creds', 'NATS credentials file (JWT and NKey seed, .creds)'), helpGroup: 'NATS'}),
  'nats-tls-ca': Flags.string({...settingFlag('nats-tls-ca', 'CA certificate file (PEM) to verify the NATS server; turns TLS on'), helpGroup: 'NATS'}),
  'nats-tls-cert': Flags.string({...settingFlag('nats-tls-cert', 'client certificate file (PEM) for NATS, with --nats-tls-key'), helpGroup: 'NATS'}),
  'nats-tls-key': Flags.string({...settingFlag('nats-tls-key', 'private key file (PEM) of --nats-tls-cert'), helpGroup: 'NATS'}),
}

/** Credentials and TLS for etcd: the listener and amp up take these. */
export const etcdCredentialFlags = {
  'etcd-user': Flags.string({...settingFlag('etcd-user', 'etcd user name (with --etcd-password)'), helpGroup: 'ETCD'}),
  'etcd-password': Flags.string({...settingFlag('etcd-password', `etcd password${SECRET_HINT}`), helpGroup: 'ETCD'}),
  'etcd-tls-ca': Flags.string({...settingFlag('etcd-tls-ca', 'CA certificate file (PEM) to verify etcd (use https:// etcd URLs)'), helpGroup: 'ETCD'}),
  'etcd-tls-cert': Flags.string({...settingFlag('etcd-tls-cert', 'client certificate file (PEM) for etcd, with --etcd-tls-key'), helpGroup: 'ETCD'}),
  'etcd-tls-key': Flags.string({...settingFlag('etcd-tls-key', 'private key file (PEM) of --etcd-tls-cert'), helpGroup: 'ETCD'}),
}

/** Asynchronous calls (docs/async.md): the worker takes all three, the listener lease and retention (whoever starts first creates the streams). */
export const asyncFlags = {
  'async-lease': Flags.string({
    ...settingFlag('async-lease', "how long a worker's hold on a running asynchronous call lasts unless renewed (renewed every third of it), e.g. 30s"),
    helpGroup: 'ASYNC',
  }),
  'async-retry-base': Flags.string({
    ...settingFlag('async-retry-base', 'delay before the first retry of a failed asynchronous call; each next one is 4 times longer, e.g. 1s'),
    helpGroup: 'ASYNC',
  }),
  'async-retention': Flags.string({
    ...settingFlag('async-retention', 'how long records and results of asynchronous calls are kept, e.g. 24h'),
    helpGroup: 'ASYNC',
  }),
  'js-replicas': Flags.string({
    ...settingFlag('js-replicas', "JetStream replicas of amp's streams, KV and object store: auto, or 1 to 5 (more are raised, never lowered; docs/deploy.md)"),
    helpGroup: 'ASYNC',
  }),
}

/** The listener's token for calls only (listener start, amp up). */
export const invokeTokenFlag = {
  'invoke-token': Flags.string(
    settingFlag('invoke-token', `a second token that may only call functions (POST /<fn>), not use the function API; with it, calls need a token${SECRET_HINT}`),
  ),
}

/** An AmpError as oclif shows it; the code is kept for --json only (oclif would print a "Code:" line). */
class AmpCliError extends Errors.CLIError {
  constructor(
    message: string,
    readonly ampCode: string,
    options: {exit: number; suggestions?: string[]},
  ) {
    super(message, options)
  }
}

export abstract class AmpCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    server: Flags.string({...settingFlag('server', 'URL of the amp listener'), helpGroup: GLOBAL}),
    token: Flags.string({
      ...settingFlag('token', `the listener's token: the CLI sends it, listener start and up require it for their API${SECRET_HINT}`),
      helpGroup: GLOBAL,
    }),
    'use-config': Flags.string({
      description: 'read settings from this YAML file instead of $HOME/.config/amp/amp.yaml',
      env: 'AMP_CONFIG',
      helpGroup: GLOBAL,
    }),
    'config-used': Flags.boolean({
      description: 'print which config file was read (or that none was) on stderr',
      env: 'AMP_CONFIG_USED',
      helpGroup: GLOBAL,
    }),
    verbose: Flags.boolean({char: 'v', description: 'print debug details on stderr', env: 'AMP_VERBOSE', helpGroup: GLOBAL}),
    'log-format': Flags.string({
      ...settingFlag('log-format', 'format of the log lines amp writes on stderr (daemons, -v): logfmt or json (one object per line)'),
      options: [...LOG_FORMATS],
      helpGroup: GLOBAL,
    }),
  }

  protected flags!: AmpFlags<T>
  protected args!: AmpArgs<T>
  /** All positional arguments in order (for commands with strict = false). */
  protected positional!: string[]
  protected loadedConfig!: LoadedConfig

  public override async init(): Promise<void> {
    await super.init()
    const {args, argv, flags} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof AmpCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as AmpFlags<T>
    this.args = args as AmpArgs<T>
    this.positional = argv.map(String)
    this.loadedConfig = await loadConfig(this.flags['use-config'])
    if (this.flags['config-used']) {
      const {found, path} = this.loadedConfig
      this.printToStderr(found ? `config file: ${path}` : `config file: none (no file at ${path})`)
      // Which secrets are set, from any source, never their values.
      for (const line of describeCredentials(this.settings)) this.printToStderr(line)
    }
  }

  /** Flag/env values, then the config file, then the defaults. */
  protected get settings(): Settings {
    return resolveSettings(this.flags as GivenSettings, this.loadedConfig.settings)
  }

  /** Whether a setting was given by flag, env or the config file rather than left to its default. */
  protected isSet(key: ConfigKey): boolean {
    return isSet(key, this.flags as GivenSettings, this.loadedConfig.settings)
  }

  /** The daemons' logger: --log-format, and -v raises the level to debug. */
  protected createLogger(options: Omit<LoggerOptions, 'level' | 'format'> = {}): Logger {
    return createLogger({...options, level: this.flags.verbose ? 'debug' : 'info', format: this.settings.logFormat})
  }

  /**
   * Tells that a daemon is ready: its human lines, or with --json one JSON object on one line of
   * stdout (daemons run until stopped, so this is their --json output; docs/json.md).
   */
  protected announceReady(json: Record<string, unknown>, human: string): void {
    if (this.jsonEnabled()) this.printJsonLine({ready: true, ...json})
    else this.log(human)
  }

  // Output: this.log and this.logToStderr (oclif's) print human lines, and nothing under --json;
  // the two below print with or without --json. A function's own output bytes go through render.ts.

  /** One value as JSON on one line of stdout, with or without --json: NDJSON streams, a daemon's ready line. */
  protected printJsonLine(value: unknown): void {
    process.stdout.write(`${JSON.stringify(value)}\n`)
  }

  /** One line on stderr, with or without --json (stderr never carries the JSON): amp's own notes. */
  protected printToStderr(line: string): void {
    process.stderr.write(`${line}\n`)
  }

  protected createClient(): AmpClient {
    // A command makes a request or a few: V8 would compile undici's HTTP parser (WebAssembly) a
    // second time with its optimizing compiler, and the process would wait ~250 ms for that before
    // exiting. The baseline compiler's code is plenty here (bench:cli).
    setFlagsFromString('--liftoff-only')
    return new AmpClient({
      server: this.settings.server,
      token: this.settings.token,
      logger: createLogger({level: this.flags.verbose ? 'debug' : 'warn', format: this.settings.logFormat}),
    })
  }

  /** Turns every failure into one line on stderr (or a JSON error under --json) and its exit code. */
  protected override async catch(error: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    const failure = this.toCliError(error)
    if (this.flags?.verbose && error.stack && !(error instanceof Errors.CLIError)) this.printToStderr(error.stack)
    if (this.jsonEnabled()) {
      // oclif would exit 1 here; keep the documented code instead.
      process.exitCode = failure.oclif.exit ?? EXIT.unexpected
      this.logJson(this.toErrorJson(failure))
      return
    }
    return super.catch(failure)
  }

  protected override toErrorJson(error: unknown): unknown {
    const failure = error as Errors.CLIError
    const code = failure instanceof AmpCliError ? failure.ampCode : undefined
    return {
      error: {
        code: code ?? (failure.oclif?.exit === EXIT.usage ? 'bad_request' : 'internal'),
        message: failure.message,
        exit: failure.oclif?.exit ?? EXIT.unexpected,
        ...(failure.suggestions?.length ? {suggestions: failure.suggestions} : {}),
      },
    }
  }

  private toCliError(error: Error & {oclif?: {exit?: number}}): Errors.CLIError {
    if (isAmpError(error)) {
      return new AmpCliError(error.message, error.code, {exit: error.exit, suggestions: error.suggestions})
    }
    if (error instanceof Errors.CLIError) return oneLine(error)
    // Flag parse failures carry oclif.exit (2); anything else is an unexpected failure (exit 1).
    const exit = error.oclif?.exit ?? EXIT.unexpected
    if (exit !== EXIT.unexpected) return new Errors.CLIError(error.message, {exit})
    return new Errors.CLIError(`unexpected error: ${error.message}`, {
      exit,
      suggestions: this.flags?.verbose ? undefined : ['Run again with --verbose to see where it happened'],
    })
  }
}

/** oclif's parse errors span lines (each missing arg, "See more help with --help"); amp's errors are one line. */
function oneLine(error: Errors.CLIError): Errors.CLIError {
  if (!/[\r\n]/.test(error.message)) return error
  const lines = error.message.split(/\r?\n/).map((line) => line.trim().replaceAll(/\s+/g, ' ')).filter(Boolean)
  return new Errors.CLIError(lines.join('; ').replaceAll(':; ', ': '), {exit: error.oclif.exit, suggestions: error.suggestions})
}
