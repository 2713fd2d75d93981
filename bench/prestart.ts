/**
 * NODE_EXTRA_CA_CERTS= npx tsx bench/prestart.ts [--calls 30] [--rate 2] [--ready]
 * Sequential calls of the busybox `cat` test function through the ContainerRunner, paced at --rate
 * calls per second, cold (every call a fresh `docker run -i --rm`) then warm (pre-started
 * containers), and prints p50/p90/max of each: what pre-started containers save on one call.
 * --ready: before each warm call (untimed), wait until a pre-started container runs, to measure the
 * warm path itself on a loaded machine where a replacement may not be up by the next call.
 * The whole amp pipeline side by side with raw docker is the job of the benchmark of issue #6.
 */
import {randomUUID} from 'node:crypto'
import {performance} from 'node:perf_hooks'
import {setTimeout as sleep} from 'node:timers/promises'
import {parseArgs} from 'node:util'

import {execa} from 'execa'

import {ContainerRunner, type RunSpec} from '../src/runtime/worker/container-runner.js'
import {ensureTestImages} from '../test/helpers/images.js'
import {DOCKER} from '../test/helpers/services.js'

const {values} = parseArgs({
  options: {calls: {type: 'string', default: '30'}, rate: {type: 'string', default: '2'}, ready: {type: 'boolean', default: false}},
})
const calls = Number(values.calls)
const rate = Number(values.rate)
if (!(Number.isInteger(calls) && calls > 0 && rate > 0)) {
  process.stderr.write('bench/prestart: --calls must be a whole number above 0 and --rate a number above 0\n')
  process.exit(2)
}

const images = await ensureTestImages()
const spec = (): RunSpec => ({
  callId: randomUUID(),
  function: 'bench-prestart',
  image: images.cat,
  network: 'none',
  timeoutMs: 30_000,
  memoryBytes: 64 * 1024 * 1024,
  cpus: 1,
  pidsLimit: 64,
  env: {},
  input: Buffer.from('hello amp\n'),
})

async function series(prestartMax: number): Promise<{ms: number[]; warm: number}> {
  const workerId = `bench-${process.pid}`
  const runner = new ContainerRunner({docker: DOCKER, workerId, prestartMax})
  const running = async () =>
    (await execa(DOCKER, ['ps', '--quiet', '--filter', `label=amp.worker=${workerId}`, '--filter', 'label=amp.prestarted=true'])).stdout.trim() !== ''
  const ms: number[] = []
  let warm = 0
  try {
    for (let i = 0; i < calls; i++) {
      while (values.ready && prestartMax > 0 && i > 0 && !(runner.prestarted > 0 && (await running()))) await sleep(50)
      const begun = performance.now()
      const result = await runner.run(spec())
      ms.push(performance.now() - begun)
      if (result.outcome !== 'exited' || result.exitCode !== 0 || result.stdout.toString() !== 'hello amp\n') {
        throw new Error(`call ${i} went wrong: ${result.outcome} ${result.exitCode ?? ''} ${result.error ?? ''}`)
      }
      if (result.warm) warm++
      await sleep(Math.max(0, 1000 / rate - (performance.now() - begun)))
    }
  } finally {
    await runner.close()
  }
  return {ms, warm}
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]
const rows = [['mode', 'calls', 'warm', 'p50 ms', 'p90 ms', 'max ms']]
for (const [mode, max] of [['cold (docker run -i --rm)', 0], ['warm (pre-started)', 1]] as const) {
  const {ms, warm} = await series(max)
  const sorted = [...ms].sort((a, b) => a - b)
  rows.push([mode, String(calls), String(warm), ...[0.5, 0.9, 1].map((p) => pct(sorted, p).toFixed(1))])
}
const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => row[col].length)))
for (const row of rows) process.stdout.write(`${row.map((cell, col) => cell.padEnd(widths[col])).join('  ')}\n`)
