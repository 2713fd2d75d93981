/** A call as the worker hands it to ContainerRunner.run: a fresh call id, the function defaults, and what a test gives. */
import {randomUUID} from 'node:crypto'

import type {RunSpec} from '../../src/runtime/worker/container-runner.js'
import {DEFAULT_CPUS, DEFAULT_MEMORY_BYTES, DEFAULT_NETWORK, DEFAULT_PIDS_LIMIT} from '../../src/runtime/shared/function-spec.js'

export function runSpec(overrides: Partial<RunSpec> & Pick<RunSpec, 'function' | 'image'>): RunSpec {
  return {
    callId: randomUUID(),
    network: DEFAULT_NETWORK,
    timeoutMs: 20_000,
    memoryBytes: DEFAULT_MEMORY_BYTES,
    cpus: DEFAULT_CPUS,
    pidsLimit: DEFAULT_PIDS_LIMIT,
    env: {},
    input: Buffer.alloc(0),
    ...overrides,
  }
}
