/** Flags of a function's container settings, shared by `function create` and `function update`. */
import * as Flags from '@oclif/core/flags'

import {formatBytes} from './runtime/shared/bytes.js'
import {AmpError} from './runtime/shared/errors.js'
import {
  DEFAULT_CPUS,
  DEFAULT_MEMORY_BYTES,
  DEFAULT_PIDS_LIMIT,
  DEFAULT_PRESTART,
  DEFAULT_RETRIES,
  DEFAULT_REUSE_MAX_CALLS,
  type FunctionSpec,
} from './runtime/shared/function-spec.js'
import {
  checkPrestart,
  checkRetries,
  checkReuseMaxCalls,
  MAX_PRESTART,
  MAX_RETRIES,
  MAX_REUSE_MAX_CALLS,
  parseCpus,
  parseMemory,
  parsePidsLimit,
} from './runtime/shared/validate.js'

/** --memory, --cpus and --pids-limit: the same flags on create and update (without their defaults there). */
export function limitFlags(defaults = true) {
  return {
    memory: Flags.string({
      description: 'memory limit of each container, e.g. 512MiB or 1GiB (no swap on top)',
      ...(defaults ? {defaultHelp: async () => formatBytes(DEFAULT_MEMORY_BYTES, 'setting')} : {}),
    }),
    cpus: Flags.string({
      description: 'CPUs each container may use, e.g. 0.5 or 2',
      ...(defaults ? {defaultHelp: async () => String(DEFAULT_CPUS)} : {}),
    }),
    'pids-limit': Flags.string({
      description: 'most processes and threads in each container',
      ...(defaults ? {defaultHelp: async () => String(DEFAULT_PIDS_LIMIT)} : {}),
    }),
  }
}

/** The limits given as flags, parsed; those not given are left out (the listener applies its defaults). */
export function limits(flags: {memory?: string; cpus?: string; 'pids-limit'?: string}) {
  return {
    ...(flags.memory === undefined ? {} : {memoryBytes: parseMemory(flags.memory)}),
    ...(flags.cpus === undefined ? {} : {cpus: parseCpus(flags.cpus)}),
    ...(flags['pids-limit'] === undefined ? {} : {pidsLimit: parsePidsLimit(flags['pids-limit'])}),
  }
}

/** --env, repeatable; non-greedy so `--env A=1 NAME IMAGE` still reads NAME and IMAGE as arguments. */
export function envFlag(what: string) {
  return Flags.string({
    description: `${what}: NAME=VALUE, or NAME to take the value from your environment (keeps it out of ps); repeatable; values are never shown`,
    multiple: true,
    multipleNonGreedy: true,
  })
}

/**
 * --fire-and-forget and --retries. On update, --no-fire-and-forget turns it off again; neither has
 * a default there, so only what is typed changes the function.
 */
export function asyncFlags(update = false) {
  return {
    'fire-and-forget': Flags.boolean({
      description: update
        ? 'make every call asynchronous (202 with a call id, the caller never waits); --no-fire-and-forget makes calls wait again'
        : 'make every call asynchronous: answered 202 with a call id once durably queued; the caller never waits for the container',
      ...(update ? {allowNo: true} : {}),
    }),
    retries: Flags.string({
      description: `how many times a failed asynchronous call is tried again before it goes to the dead letters (0-${MAX_RETRIES})`,
      ...(update ? {} : {defaultHelp: async () => String(DEFAULT_RETRIES)}),
    }),
  }
}

/** The async settings given as flags; those not given are left out (the listener applies its defaults). */
export function asyncSettings(flags: {'fire-and-forget'?: boolean; retries?: string}): Pick<Partial<FunctionSpec>, 'fireAndForget' | 'retries'> {
  return {
    ...(flags['fire-and-forget'] === undefined ? {} : {fireAndForget: flags['fire-and-forget']}),
    ...(flags.retries === undefined ? {} : {retries: parseRetries(flags.retries)}),
  }
}

function parseRetries(text: string): number {
  if (!/^\d{1,3}$/.test(text)) throw new AmpError('bad_request', `invalid retries "${text}": give a whole number from 0 to ${MAX_RETRIES}`)
  return checkRetries(Number(text))
}

/** --prestart: the same flag on create and update (without its default there). */
export function prestartFlag(update = false) {
  return {
    prestart: Flags.string({
      description: `most containers each worker starts ahead of calls, blocked reading their input (0-${MAX_PRESTART}); 0: every call starts its container from scratch (for a function that must not start before its input); with --reuse, the most warm containers per worker (at least 1)`,
      ...(update ? {} : {defaultHelp: async () => String(DEFAULT_PRESTART)}),
    }),
  }
}

/** --prestart when given; left out otherwise (the listener applies its default). */
export function prestartSetting(flags: {prestart?: string}): Pick<Partial<FunctionSpec>, 'prestart'> {
  if (flags.prestart === undefined) return {}
  if (!/^\d{1,3}$/.test(flags.prestart)) {
    throw new AmpError('bad_request', `invalid prestart "${flags.prestart}": give a whole number from 0 to ${MAX_PRESTART}`)
  }
  return {prestart: checkPrestart(Number(flags.prestart))}
}

/**
 * --reuse and --reuse-max-calls. On update, --no-reuse goes back to a fresh container per call;
 * neither has a default there, so only what is typed changes the function.
 */
export function reuseFlags(update = false) {
  return {
    reuse: Flags.boolean({
      description: `warm containers: a container serves many calls, one at a time, each in a fresh process of the function (stdin in, stdout out, stderr as log); --prestart is then the most warm containers per worker${
        update ? '; --no-reuse goes back to a fresh container per call' : ''
      }`,
      ...(update ? {allowNo: true} : {}),
    }),
    'reuse-max-calls': Flags.string({
      description: `how many calls one warm container (--reuse) serves before it is replaced (1-${MAX_REUSE_MAX_CALLS})`,
      ...(update ? {} : {defaultHelp: async () => String(DEFAULT_REUSE_MAX_CALLS)}),
    }),
  }
}

/** --reuse and --reuse-max-calls when given; left out otherwise (the listener applies its defaults). */
export function reuseSettings(flags: {reuse?: boolean; 'reuse-max-calls'?: string}): Pick<Partial<FunctionSpec>, 'reuse' | 'reuseMaxCalls'> {
  const text = flags['reuse-max-calls']
  if (text !== undefined && !/^\d{1,7}$/.test(text)) {
    throw new AmpError('bad_request', `invalid reuse-max-calls "${text}": give a whole number from 1 to ${MAX_REUSE_MAX_CALLS}`)
  }
  return {
    ...(flags.reuse === undefined ? {} : {reuse: flags.reuse}),
    ...(text === undefined ? {} : {reuseMaxCalls: checkReuseMaxCalls(Number(text))}),
  }
}

/** What the one-line summaries of create and update add for the async settings: nothing when they are the defaults. */
export function asyncSummary(spec: Pick<FunctionSpec, 'fireAndForget' | 'retries'>): string {
  return `${spec.fireAndForget ? ', fire-and-forget' : ''}${spec.retries === DEFAULT_RETRIES ? '' : `, retries ${spec.retries}`}`
}

/** What the summaries add for --prestart: nothing when it is the default. */
export function prestartSummary(spec: Pick<FunctionSpec, 'prestart'>): string {
  return spec.prestart === DEFAULT_PRESTART ? '' : `, prestart ${spec.prestart}`
}

/** What the summaries add for --reuse and --reuse-max-calls: nothing when they are the defaults. */
export function reuseSummary(spec: Pick<FunctionSpec, 'reuse' | 'reuseMaxCalls'>): string {
  return `${spec.reuse ? ', reuse' : ''}${spec.reuseMaxCalls === DEFAULT_REUSE_MAX_CALLS ? '' : `, reuse-max-calls ${spec.reuseMaxCalls}`}`
}
