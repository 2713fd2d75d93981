/**
 * npm run bench:stream -- [--calls 30]
 *
 * First-byte latency of streamed calls (docs/http-api.md "Streaming"): the time from a function writing
 * its first stdout byte to the HTTP client receiving it. The function (amp-test/sh:1 running a
 * script) prints the wall clock with busybox `adjtimex` (microseconds; busybox `date` has no %N)
 * and then sleeps, so the byte is alone on the wire; the client notes when it arrives
 * (performance.timeOrigin + now(), the same host clock). The clock is read just before the write,
 * so the figure is a slight over-estimate. For scale, the same is measured on a bare
 * `docker run -i --rm` (container -> dockerd -> docker CLI), the part amp cannot go below, and
 * amp's own part alone: a second worker whose runner starts no container but hands the worker a
 * chunk holding the clock (worker -> NATS -> listener -> HTTP client).
 * Starts its own nats-server, etcd, listener and workers (test/helpers/stack.ts).
 */
import {performance} from 'node:perf_hooks'
import {setTimeout as sleep} from 'node:timers/promises'
import {parseArgs} from 'node:util'
import {execa} from 'execa'
import {request} from 'undici'

import {ContainerRunner, type RunResult, type RunSpec} from '../src/runtime/worker/container-runner.js'
import {silentLogger} from '../src/runtime/shared/logger.js'
import {startWorker} from '../src/runtime/worker/worker.js'
import {TEST_IMAGES} from '../test/helpers/images.js'
import {DOCKER} from '../test/helpers/services.js'
import {createFunction, startTestStack} from '../test/helpers/stack.js'

/** Prints the clock, then keeps the call open a little so the first write travels alone. */
const SCRIPT = 'adjtimex; sleep 0.2; echo end\n'

const {values} = parseArgs({options: {calls: {type: 'string', default: '30'}}})
const calls = Number(values.calls)
if (!Number.isInteger(calls) || calls < 1) {
  process.stderr.write(`bench:stream: --calls must be a whole number of at least 1, got ${JSON.stringify(values.calls)}\n`)
  process.exit(2)
}

const nowMs = () => performance.timeOrigin + performance.now()

/** The wall clock (ms) adjtimex printed: "time.tv_sec: S" and "time.tv_usec: U". */
function printedClock(text: string): number {
  const sec = /time\.tv_sec:\s*(\d+)/.exec(text)?.[1]
  const usec = /time\.tv_usec:\s*(\d+)/.exec(text)?.[1]
  if (sec === undefined || usec === undefined) throw new Error(`the function did not print its clock: ${JSON.stringify(text.slice(0, 200))}`)
  return Number(sec) * 1000 + Number(usec) / 1000
}

/** Runs no container: writes the clock as adjtimex would, as the first stdout chunk, then "exits" 0. */
class ClockRunner extends ContainerRunner {
  override async run(spec: RunSpec): Promise<RunResult> {
    const ms = nowMs()
    const text = `    time.tv_sec:  ${Math.floor(ms / 1000)}\n    time.tv_usec: ${Math.round((ms % 1000) * 1000)}\n`
    spec.onStdout?.(Buffer.from(text))
    await sleep(50)
    return {outcome: 'exited', exitCode: 0, stdout: Buffer.from(text), stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 50}
  }

  override async engine(): Promise<{version?: string}> {
    return {version: 'none'}
  }

  override async removeOrphans(): Promise<string[]> {
    return []
  }
}

/** One streamed call through amp: ms from the function's write to the client's first chunk. */
async function throughAmp(url: string): Promise<number> {
  const res = await request(url, {method: 'POST', body: SCRIPT, headers: {prefer: 'stream'}})
  let latency: number | undefined
  let text = ''
  // The whole body is read (the call ends cleanly); the first chunk's arrival is what counts.
  for await (const chunk of res.body) {
    latency ??= nowMs()
    text += chunk.toString()
  }
  if (res.headers['preference-applied'] !== 'stream') throw new Error(`the answer was not streamed (HTTP ${res.statusCode})`)
  return latency! - printedClock(text)
}

/** The same on a bare docker run -i --rm: the floor. */
async function throughDocker(): Promise<number> {
  const child = execa(DOCKER, ['run', '-i', '--rm', '--network', 'none', '--log-driver', 'none', TEST_IMAGES.sh], {input: SCRIPT, buffer: false})
  let first: number | undefined
  let text = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    first ??= nowMs()
    text += chunk.toString()
  })
  await child
  return first! - printedClock(text)
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

function row(name: string, samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b)
  const cells = [percentile(sorted, 50), percentile(sorted, 99), sorted[0], sorted.at(-1)!].map((ms) => ms.toFixed(2).padStart(8))
  return `${name.padEnd(28)}${cells.join('')}`
}

const stack = await startTestStack()
let pipelineWorker: Awaited<ReturnType<typeof startWorker>> | undefined
try {
  await createFunction(stack.listener, 'stream-latency', {image: TEST_IMAGES.sh})
  const url = `${stack.listener.url}/stream-latency`
  await throughAmp(url) // warm-up: image cache, first connections
  const amp: number[] = []
  const docker: number[] = []
  for (let i = 0; i < calls; i++) {
    amp.push(await throughAmp(url))
    docker.push(await throughDocker())
  }
  // Now the pipeline alone: the docker worker leaves (workers take every function), the clock worker comes.
  await stack.worker.close()
  pipelineWorker = await startWorker(
    {concurrency: 4, docker: DOCKER, logger: silentLogger, nats: stack.nats.url, async: false},
    {runner: new ClockRunner({workerId: 'bench-clock'})},
  )
  const pipeline: number[] = []
  for (let i = 0; i < calls; i++) pipeline.push(await throughAmp(url))
  process.stdout.write(
    [
      `first-byte latency over ${calls} calls, ms (function writes -> client receives)`,
      `${''.padEnd(28)}${['p50', 'p99', 'min', 'max'].map((h) => h.padStart(8)).join('')}`,
      row('docker run -i --rm (floor)', docker),
      row('amp, Prefer: stream', amp),
      row('amp pipeline alone', pipeline),
      '',
    ].join('\n'),
  )
} finally {
  await pipelineWorker?.close()
  await stack.stop()
}
process.exit(0)
