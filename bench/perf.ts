/**
 * npm run bench -- [--calls 40] [--fast-calls 2000] [--rate 2] [--connections 4] [--warmup 3] [--image IMAGE]
 *                  [--prestart 4] [--out bench/results/perf.md] [--svg docs/performance.svg]
 * Prints one table (raw docker run, amp, amp prestart; 1 connection paced and N closed loop),
 * writes it as markdown to --out and as a chart to --svg; exits 1 when any call was answered
 * wrong or not at all, or a container was left. See bench/perf-run.ts and docs/performance.md.
 */
import {parseArgs} from 'node:util'

import {formatText, perfFailed, writeResults} from './perf-report.js'
import {DEFAULT_PERF_OPTIONS, runPerf} from './perf-run.js'

const {values} = parseArgs({
  options: {
    calls: {type: 'string', default: String(DEFAULT_PERF_OPTIONS.calls)},
    'fast-calls': {type: 'string', default: String(DEFAULT_PERF_OPTIONS.fastCalls)},
    rate: {type: 'string', default: String(DEFAULT_PERF_OPTIONS.rate)},
    connections: {type: 'string', default: String(DEFAULT_PERF_OPTIONS.connections)},
    warmup: {type: 'string', default: String(DEFAULT_PERF_OPTIONS.warmup)},
    prestart: {type: 'string', default: String(DEFAULT_PERF_OPTIONS.prestart)},
    concurrency: {type: 'string', default: String(DEFAULT_PERF_OPTIONS.concurrency)},
    image: {type: 'string'},
    out: {type: 'string', default: 'bench/results/perf.md'},
    svg: {type: 'string', default: 'docs/performance.svg'},
  },
})

function count(name: 'calls' | 'fast-calls' | 'rate' | 'connections' | 'warmup' | 'prestart' | 'concurrency', min: number): number {
  const value = Number(values[name])
  if (!Number.isInteger(value) || value < min) {
    process.stderr.write(`bench: --${name} must be a whole number of at least ${min}, got ${JSON.stringify(values[name])}\n`)
    process.exit(2)
  }
  return value
}

const connections = count('connections', 1)
const options = {
  calls: count('calls', connections),
  fastCalls: count('fast-calls', connections),
  rate: count('rate', 1),
  connections,
  warmup: count('warmup', 0),
  prestart: count('prestart', 1),
  concurrency: count('concurrency', 1),
  image: values.image,
  progress: (line: string) => process.stderr.write(`${line}\n`),
}
try {
  const report = await runPerf(options)
  process.stdout.write(`${formatText(report)}\n`)
  writeResults(report, {markdown: values.out, svg: values.svg})
  process.stderr.write(`written: ${values.out}, ${values.svg}\n`)
  // Servers and sockets may still be closing; the verdict is known.
  process.exit(perfFailed(report) ? 1 : 0)
} catch (error) {
  process.stderr.write(`bench failed: ${(error as Error).message}\n`)
  process.exit(1)
}
