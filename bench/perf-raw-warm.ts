/**
 * The floor of pre-started containers: the same thing amp's worker does, straight from Node with
 * execa and no amp in the way. A few `docker run -i` (amp's flags, no --rm) are kept started and
 * blocked reading stdin; each call takes the oldest, writes its input, ends stdin and waits for the
 * docker CLI to exit (timed); then a replacement is started and the used container removed, both
 * untimed, as amp does after a call. What this row takes is what Docker alone needs for a warm call
 * on this machine, starts and removals of other calls included.
 */
import {randomUUID} from 'node:crypto'
import {performance} from 'node:perf_hooks'
import {execa, type ResultPromise} from 'execa'

import {prestartArgs} from '../src/runtime/worker/container-runner.js'
import {DEFAULT_CPUS, DEFAULT_MEMORY_BYTES, DEFAULT_NETWORK, DEFAULT_PIDS_LIMIT} from '../src/runtime/shared/function-spec.js'
import {measureRow} from './perf-raw.js'
import {callInput, type Measured, type Tally, wrongAnswer} from './perf-tally.js'

export interface RawWarmRow {
  docker: string
  image: string
  fn: string
  workerId: string
  /** Containers kept started (amp's pool of one function at its floor holds two). */
  depth: number
  connections: number
  rate?: number
  calls: number
  warmup: number
  tag: string
}

interface Started {
  name: string
  child: ResultPromise<{encoding: 'utf8'; reject: false; stripFinalNewline: false}>
}

export async function runRawWarm(row: RawWarmRow): Promise<Measured> {
  const settings = {function: row.fn, image: row.image, network: DEFAULT_NETWORK, memoryBytes: DEFAULT_MEMORY_BYTES, cpus: DEFAULT_CPUS, pidsLimit: DEFAULT_PIDS_LIMIT, env: {}}
  const idle: Started[] = []
  const removals: Array<Promise<unknown>> = []
  const start = () => {
    const name = `amp-${randomUUID()}`
    const child = execa(row.docker, prestartArgs(settings, row.workerId, 'missing', name), {reject: false, stripFinalNewline: false, encoding: 'utf8'})
    idle.push({name, child})
  }
  const remove = (names: string[]) => removals.push(execa(row.docker, ['rm', '--force', ...names], {reject: false, stdin: 'ignore'}))
  const oneCall = async (tally: Tally) => {
    const input = callInput(row.tag)
    // None left (calls faster than starts): start one now, and the call waits for it, as a cold call would.
    if (idle.length === 0) start()
    const {name, child} = idle.shift()!
    const t0 = performance.now()
    child.stdin?.end(input)
    const result = await child
    const ms = performance.now() - t0
    start()
    remove([name])
    if (result.exitCode !== 0) tally.answered(ms, `exit ${result.exitCode ?? result.signal}: ${String(result.stderr).trim().slice(0, 160)}`)
    else tally.answered(ms, wrongAnswer(input, String(result.stdout)))
  }
  for (let i = 0; i < row.depth; i++) start()
  try {
    return await measureRow(row, oneCall)
  } finally {
    // Unused ones end like a call with no input (the function exits at end of stdin), then go.
    const left = idle.splice(0)
    for (const container of left) container.child.stdin?.end()
    await Promise.allSettled([...removals, ...left.map((container) => container.child)])
    if (left.length > 0) await execa(row.docker, ['rm', '--force', ...left.map((container) => container.name)], {reject: false, stdin: 'ignore'})
  }
}
