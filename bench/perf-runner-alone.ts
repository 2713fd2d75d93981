/**
 * The floor of warm containers: amp's runner alone, no listener, no NATS, no worker. One warm
 * container per connection (runner containers started as amp's worker starts them: runnerArgs),
 * and each call sends its input to one over its socket and waits for the exit frame: a fresh
 * process of the function per call inside an already running container. What this row takes is
 * what the container side of a warm call costs on this machine.
 */
import {randomUUID} from 'node:crypto'
import {performance} from 'node:perf_hooks'
import path from 'node:path'
import {execa} from 'execa'

import {LABEL, runnerArgs} from '../src/runtime/worker/container-runner.js'
import {DEFAULT_CPUS, DEFAULT_MEMORY_BYTES, DEFAULT_NETWORK, DEFAULT_PIDS_LIMIT} from '../src/runtime/shared/function-spec.js'
import {ImageCommands} from '../src/runtime/worker/image-commands.js'
import {RunnerContainer} from '../src/runtime/worker/runner-container.js'
import {prepareRunner} from '../src/runtime/worker/runner-files.js'
import {measureRow} from './perf-raw.js'
import {callInput, type Measured, wrongAnswer} from './perf-tally.js'

export interface RunnerAloneRow {
  docker: string
  image: string
  fn: string
  workerId: string
  connections: number
  rate?: number
  calls: number
  warmup: number
}

export async function runRunnerAlone(row: RunnerAloneRow): Promise<Measured> {
  const prepared = prepareRunner({})
  if (!prepared.files) throw new Error(`the runner cannot be used: ${prepared.off}`)
  const files = prepared.files
  const resolved = await new ImageCommands({docker: row.docker, pull: 'missing'}).resolve(row.image)
  if (!resolved.command) throw new Error(`the runner cannot run ${row.image}: ${resolved.unusable}`)
  const command = resolved.command
  const settings = {function: row.fn, image: row.image, network: DEFAULT_NETWORK, memoryBytes: DEFAULT_MEMORY_BYTES, cpus: DEFAULT_CPUS, pidsLimit: DEFAULT_PIDS_LIMIT, env: {}}
  const started = Array.from({length: row.connections}, (_, i) => {
    const name = `amp-${randomUUID()}`
    const socket = path.join(files.socketDir, `${i}.sock`)
    const args = runnerArgs(settings, row.workerId, {name, socket, binary: files.binary, command, labels: {[LABEL.prestarted]: 'true', [LABEL.reuse]: 'true'}})
    return new RunnerContainer({name, socketPath: socket, start: () => execa(row.docker, args, {reject: false, stdin: 'ignore'})})
  })
  try {
    await Promise.all(started.map((container) => container.ready))
    // Each connection has a container of its own (closed loop: at most one call each at a time).
    const free = [...started]
    return await measureRow(row, async (tally) => {
      const container = free.shift()!
      const input = callInput(row.fn)
      const out: Buffer[] = []
      const t0 = performance.now()
      const end = await container.call(Buffer.from(input), true, (chunk) => out.push(chunk), () => {})
      const ms = performance.now() - t0
      free.push(container)
      tally.answered(ms, end.exitCode === 0 ? wrongAnswer(input, Buffer.concat(out).toString()) : `runner: ${end.error ?? `exit ${end.exitCode}`}`)
    })
  } finally {
    for (const container of started) container.close()
    await execa(row.docker, ['rm', '--force', ...started.map((container) => container.name)], {reject: false, stdin: 'ignore'})
    prepared.cleanup()
  }
}
