/** Flags of a function's container settings, shared by `function create` and `function update`. */
import {Flags} from '@oclif/core'

import {formatSize} from './runtime/config.js'
import {DEFAULT_CPUS, DEFAULT_MEMORY_BYTES, DEFAULT_PIDS_LIMIT} from './runtime/function-spec.js'
import {parseCpus, parseMemory, parsePidsLimit} from './runtime/validate.js'

/** --memory, --cpus and --pids-limit: the same flags on create and update (without their defaults there). */
export function limitFlags(defaults = true) {
  return {
    memory: Flags.string({
      description: 'memory limit of each container, e.g. 512MiB or 1GiB (no swap on top)',
      ...(defaults ? {defaultHelp: async () => formatSize(DEFAULT_MEMORY_BYTES)} : {}),
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
