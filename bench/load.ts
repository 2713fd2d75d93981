/**
 * npm run bench:load -- --calls 10000 --connections 32 --workers 2 [--concurrency 4] [--body 256]
 *                       [--mode reuse|prestart|fresh] [--prestart N]
 * Prints one table; exits 1 when any call was lost, crossed or not 200, or a container was left.
 * See bench/load-run.ts for what it starts and checks.
 */
import {parseArgs} from 'node:util'

import {formatReport, LOAD_MODES, type LoadMode, loadFailed, runLoad} from './load-run.js'

const {values} = parseArgs({
  options: {
    calls: {type: 'string', default: '10000'},
    connections: {type: 'string', default: '32'},
    workers: {type: 'string', default: '2'},
    concurrency: {type: 'string', default: '4'},
    body: {type: 'string', default: '256'},
    mode: {type: 'string', default: 'reuse'},
    prestart: {type: 'string'},
  },
})
if (!(LOAD_MODES as readonly string[]).includes(values.mode)) {
  process.stderr.write(`bench:load: --mode must be one of ${LOAD_MODES.join(', ')}, got ${JSON.stringify(values.mode)}\n`)
  process.exit(2)
}

function count(name: 'calls' | 'connections' | 'workers' | 'concurrency' | 'body' | 'prestart', min: number): number {
  const value = Number(values[name])
  if (!Number.isInteger(value) || value < min) {
    process.stderr.write(`bench:load: --${name} must be a whole number of at least ${min}, got ${JSON.stringify(values[name])}\n`)
    process.exit(2)
  }
  return value
}

const options = {
  calls: count('calls', 1),
  connections: count('connections', 1),
  workers: count('workers', 1),
  concurrency: count('concurrency', 1),
  bodyBytes: count('body', 0),
  mode: values.mode as LoadMode,
  ...(values.prestart === undefined ? {} : {prestart: count('prestart', 1)}),
  progress: (line: string) => process.stderr.write(`${line}\n`),
}
process.stderr.write(
  `load: ${options.calls} calls at ${options.connections} connections, ${options.workers} workers x ${options.concurrency} containers, ${options.mode}\n`,
)
try {
  const report = await runLoad(options)
  process.stdout.write(`${formatReport(report)}\n`)
  // Servers and sockets may still be closing; the verdict is known.
  process.exit(loadFailed(report) ? 1 : 0)
} catch (error) {
  process.stderr.write(`bench:load failed: ${(error as Error).message}\n`)
  process.exit(1)
}
