/**
 * npm run bench:cli [-- --runs 20] [--bin OTHER/bin/run.js]
 * How long the built CLI (bin/run.js, after `npm run build`) takes to start and answer, against
 * `node -e 0`: `amp --version`, and `amp function ls` against a real listener (its own nats-server
 * and etcd on free ports, three functions). The commands run in turn, one at a time, so that a
 * busy moment of a shared machine hits every row alike. Prints a table and writes it to
 * bench/results/cli-startup.md. Issue #6's target: each amp row <= 2.5x `node -e 0`. --bin measures
 * another build instead (say, of an older commit), to compare.
 */
import {execa} from 'execa'
import {existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {performance} from 'node:perf_hooks'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'

import {createFunction, startTestStack} from '../test/helpers/stack.js'

const {values} = parseArgs({
  options: {runs: {type: 'string', default: '20'}, warmup: {type: 'string', default: '3'}, bin: {type: 'string'}},
})
const runs = Number(values.runs)
const warmup = Number(values.warmup)
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(warmup) || warmup < 0) {
  process.stderr.write('bench:cli: --runs must be a whole number of at least 1, --warmup of at least 0\n')
  process.exit(2)
}

const root = fileURLToPath(new URL('..', import.meta.url))
const RUN = resolve(values.bin ?? join(root, 'bin/run.js'))
if (!existsSync(join(dirname(RUN), '../oclif.manifest.json'))) {
  process.stderr.write(`bench:cli: no build next to ${RUN}; run npm run build first\n`)
  process.exit(2)
}

interface Row {
  name: string
  args: string[]
  times: number[]
}

/** Nearest-rank percentile of sorted times. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

const stack = await startTestStack({worker: false, docker: false})
const home = mkdtempSync(join(tmpdir(), 'amp-bench-cli-'))
try {
  for (const name of ['echo', 'resize', 'thumbnail']) await createFunction(stack.listener, name, {image: 'amp-test/cat:1'})
  // No config file (a fresh HOME), no NODE_EXTRA_CA_CERTS or NODE_OPTIONS: each slows node's start.
  const env = {PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, AMP_SERVER: stack.listener.url}
  const rows: Row[] = [
    {name: 'node -e 0', args: ['-e', '0'], times: []},
    {name: 'amp --version', args: [RUN, '--version'], times: []},
    {name: 'amp function ls', args: [RUN, 'function', 'ls'], times: []},
  ]
  for (let i = 0; i < warmup + runs; i++) {
    for (const row of rows) {
      const started = performance.now()
      const result = await execa(process.execPath, row.args, {env, extendEnv: false, reject: false})
      const ms = performance.now() - started
      if (result.exitCode !== 0) throw new Error(`${row.name} exited ${result.exitCode}: ${String(result.stderr)}`)
      if (i >= warmup) row.times.push(ms)
    }
  }

  const base = percentile([...rows[0].times].sort((a, b) => a - b), 50)
  const lines = [
    `CLI startup of ${RUN}, ${runs} runs each (node ${process.version}), median and p90 wall time of the process:`,
    '',
    '| command | median ms | p90 ms | ratio to node -e 0 (median) |',
    '| --- | ---: | ---: | ---: |',
    ...rows.map((row) => {
      const sorted = [...row.times].sort((a, b) => a - b)
      const median = percentile(sorted, 50)
      return `| ${row.name} | ${median.toFixed(1)} | ${percentile(sorted, 90).toFixed(1)} | ${(median / base).toFixed(2)}x |`
    }),
  ]
  const text = `${lines.join('\n')}\n`
  process.stdout.write(text)
  mkdirSync(join(root, 'bench/results'), {recursive: true})
  writeFileSync(join(root, 'bench/results/cli-startup.md'), text)
} finally {
  rmSync(home, {recursive: true, force: true})
  await stack.stop()
}
