/**
 * The floor: `docker run -i --rm` straight from Node with execa (no shell), one call per container,
 * input on stdin, paced like the HTTP rows (perf-pacing.ts). Two variants: with exactly the
 * arguments amp's worker gives docker (dockerRunArgs), and the plain command for reference.
 */
import {randomUUID} from 'node:crypto'
import {performance} from 'node:perf_hooks'
import {execa} from 'execa'

import {dockerRunArgs} from '../src/runtime/worker/container-runner.js'
import {DEFAULT_CPUS, DEFAULT_MEMORY_BYTES, DEFAULT_NETWORK, DEFAULT_PIDS_LIMIT, DEFAULT_TIMEOUT_MS} from '../src/runtime/shared/function-spec.js'
import {drive, plan} from './perf-pacing.js'
import {callInput, type Measured, Tally, wrongAnswer} from './perf-tally.js'

/** The arguments of one call, as amp's worker builds them for a function with the default settings. */
export function ampRunArgs(image: string, fn: string, workerId: string): string[] {
  return dockerRunArgs(
    {
      callId: randomUUID(),
      function: fn,
      image,
      network: DEFAULT_NETWORK,
      timeoutMs: DEFAULT_TIMEOUT_MS,
      memoryBytes: DEFAULT_MEMORY_BYTES,
      cpus: DEFAULT_CPUS,
      pidsLimit: DEFAULT_PIDS_LIMIT,
      env: {},
      input: new Uint8Array(),
    },
    workerId,
    'missing',
  )
}

export function plainRunArgs(image: string): string[] {
  return ['run', '-i', '--rm', '--network', 'none', image]
}

export interface RawRow {
  docker: string
  /** The arguments of each call (a fresh container name each time for amp's). */
  args: () => string[]
  connections: number
  rate?: number
  calls: number
  /** Calls made first and not counted (image and page caches). */
  warmup: number
  tag: string
}

export async function runRaw(row: RawRow): Promise<Measured> {
  const oneCall = async (tally: Tally) => {
    const input = callInput(row.tag)
    const t0 = performance.now()
    const result = await execa(row.docker, row.args(), {input, reject: false, stripFinalNewline: false, encoding: 'utf8'})
    const ms = performance.now() - t0
    if (result.exitCode !== 0) tally.answered(ms, `exit ${result.exitCode ?? result.signal}: ${String(result.stderr).trim().slice(0, 160)}`)
    else tally.answered(ms, wrongAnswer(input, String(result.stdout)))
  }
  return measureRow(row, oneCall)
}

/** Runs `warmup` calls not counted, then the row's calls paced by its plan, and tallies them. */
export async function measureRow(
  row: {calls: number; connections: number; rate?: number; warmup: number},
  oneCall: (tally: Tally) => Promise<void>,
): Promise<Measured> {
  const warm = new Tally()
  for (let i = 0; i < row.warmup; i++) await oneCall(warm)
  const tally = new Tally()
  const started = performance.now()
  await drive(plan(row.calls, row.connections, row.rate), () => oneCall(tally))
  return tally.result(row.calls, performance.now() - started)
}
