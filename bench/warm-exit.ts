/**
 * NODE_EXTRA_CA_CERTS= npx tsx bench/warm-exit.ts [--calls 10] [--image IMAGE]
 * Where a pre-started container's time goes inside Docker, with no amp at all: a `docker run -i`
 * with amp's flags (no --rm) is started and left to block on stdin; then its input is written and
 * stdin ended, and this measures, from that moment, the first stdout byte, the engine's `die` event
 * (`docker events`) and the docker CLI's exit (when the exit code is known). The CLI's exit is the
 * floor of a warm call (docs/performance.md); the die event is the engine's own part of it.
 */
import {randomUUID} from 'node:crypto'
import {performance} from 'node:perf_hooks'
import {setTimeout as sleep} from 'node:timers/promises'
import {parseArgs} from 'node:util'
import {execa} from 'execa'

import {prestartArgs} from '../src/runtime/worker/container-runner.js'
import {DEFAULT_CPUS, DEFAULT_MEMORY_BYTES, DEFAULT_NETWORK, DEFAULT_PIDS_LIMIT} from '../src/runtime/shared/function-spec.js'
import {newWorkerId} from '../src/runtime/worker/worker.js'
import {ensureTestImages, TEST_IMAGES} from '../test/helpers/images.js'
import {DOCKER, requireDocker} from '../test/helpers/services.js'
import {percentile} from './load-run.js'

const {values} = parseArgs({options: {calls: {type: 'string', default: '10'}, image: {type: 'string'}}})
const calls = Number(values.calls)
if (!(Number.isInteger(calls) && calls > 0)) {
  process.stderr.write('bench/warm-exit: --calls must be a whole number above 0\n')
  process.exit(2)
}
await requireDocker()
await ensureTestImages()
const image = values.image ?? TEST_IMAGES.upper
const settings = {function: 'warm-exit', image, network: DEFAULT_NETWORK, memoryBytes: DEFAULT_MEMORY_BYTES, cpus: DEFAULT_CPUS, pidsLimit: DEFAULT_PIDS_LIMIT, env: {}}
const workerId = newWorkerId()
const times: Record<'first byte' | 'die event' | 'CLI exit', number[]> = {'first byte': [], 'die event': [], 'CLI exit': []}

for (let i = 0; i < calls; i++) {
  const name = `amp-${randomUUID()}`
  const events = execa(DOCKER, ['events', '--filter', `container=${name}`, '--filter', 'event=die', '--format', '{{.Action}}'], {buffer: false, reject: false})
  let died: number | undefined
  events.stdout?.on('data', () => (died ??= performance.now()))
  const child = execa(DOCKER, prestartArgs(settings, workerId, 'missing', name), {buffer: false, reject: false})
  let first: number | undefined
  child.stdout?.on('data', () => (first ??= performance.now()))
  // Started and blocked on stdin, and the machine quiet again, before the input goes.
  await sleep(1500)
  const given = performance.now()
  child.stdin?.end(`call ${i}: hello\n`)
  await child
  const exited = performance.now()
  await sleep(300)
  events.kill()
  await events
  await execa(DOCKER, ['rm', '--force', name], {reject: false})
  if (first !== undefined) times['first byte'].push(first - given)
  if (died !== undefined) times['die event'].push(died - given)
  times['CLI exit'].push(exited - given)
}

process.stdout.write(`${calls} pre-started containers of ${image}, ms after the input was given: p50 (p90)\n`)
for (const [step, values] of Object.entries(times)) {
  const sorted = [...values].sort((a, b) => a - b)
  const show = (p: number) => (sorted.length > 0 ? percentile(sorted, p).toFixed(1) : 'n/a')
  process.stdout.write(`${step.padEnd(12)} ${show(0.5).padStart(7)}  (${show(0.9)})\n`)
}
