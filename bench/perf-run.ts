/**
 * The performance benchmark of issues #6 and #12, side by side in one run on one image: raw
 * `docker run -i --rm` (the floor: amp's own flags, and plain), amp end to end over HTTP, pre-started
 * containers (raw, amp without its in-container runner, amp with it), warm containers (amp's runner
 * alone, and amp end to end) and amp's own part alone (no container), each at 1 connection paced at
 * `rate` calls/s and at `connections` connections closed loop. It starts its own nats-server, etcd
 * and listener (test/helpers/stack.ts, as bench/load-run.ts does) and, for each row, the worker it
 * needs; it checks that every call was answered right and no container was left.
 * bench/perf.ts runs it from the command line; test/bench/perf.integration.test.ts at CI size.
 */
import {randomBytes} from 'node:crypto'
import {cpus} from 'node:os'
import {execa} from 'execa'
import {request} from 'undici'

import {MIN_WARM} from '../src/runtime/worker/container-pool.js'
import {silentLogger} from '../src/runtime/shared/logger.js'
import {newWorkerId, startWorker, type Worker} from '../src/runtime/worker/worker.js'
import {ensureTestImages, TEST_IMAGES} from '../test/helpers/images.js'
import {DOCKER, requireDocker} from '../test/helpers/services.js'
import {startTestStack} from '../test/helpers/stack.js'
import {containersGone} from './load-run.js'
import {runHttp} from './perf-http.js'
import {UpperCaseRunner} from './perf-pipeline.js'
import {ampRunArgs, plainRunArgs, runRaw} from './perf-raw.js'
import {runRawWarm} from './perf-raw-warm.js'
import {runRunnerAlone} from './perf-runner-alone.js'
import type {Measured} from './perf-tally.js'

export interface PerfOptions {
  /** Calls measured per row. */
  calls: number
  /**
   * Calls measured in the closed-loop rows that need no container start per call (runner alone,
   * amp warm, amp's pipeline alone): at hundreds of calls a second, `calls` would be over before
   * a throughput could be measured.
   */
  fastCalls: number
  /** Arrival rate of the 1-connection rows, calls/s (autocannon overallRate). */
  rate: number
  /** Connections of the closed-loop rows. */
  connections: number
  /** Calls made before each row, not counted. */
  warmup: number
  /** An image that answers like `tr a-z A-Z`; the busybox one built FROM scratch unless given. */
  image?: string
  /** Most pre-started containers per worker for the prestart rows. */
  prestart: number
  /** Containers the worker runs at once. */
  concurrency: number
  progress?: (line: string) => void
}

export const DEFAULT_PERF_OPTIONS = {calls: 40, fastCalls: 2000, rate: 2, connections: 4, warmup: 3, prestart: 4, concurrency: 4} as const

/** The rows whose calls start no container: they get fastCalls when closed loop. */
const FAST: readonly RowKind[] = ['runnerAlone', 'reuse', 'pipeline']

export type RowKind = 'raw' | 'plain' | 'amp' | 'warm' | 'prestart' | 'runnerPrestart' | 'runnerAlone' | 'reuse' | 'pipeline'

export interface Row extends Partial<Measured> {
  kind: RowKind
  name: string
  connections: number
  /** calls/s the row was paced at; undefined for closed loop. */
  rate?: number
  /** Why the row was not run ("no prestart support"). */
  skipped?: string
}

export interface PerfReport {
  date: string
  machine: {cores: number; cpu: string; docker: string; node: string}
  image: string
  /** The raw rows' commands, as run (IMAGE and a sample container name filled in). */
  commands: Record<'raw' | 'plain', string>
  rows: Row[]
  /** Containers of the run (raw and amp) still there once everything stopped. */
  containersLeft: number
  options: Omit<PerfOptions, 'progress'>
}

export const ROW_NAMES: Record<RowKind, string> = {
  raw: 'raw docker run -i --rm',
  plain: 'plain docker run -i --rm --network none',
  amp: 'amp',
  warm: 'raw pre-started docker run -i',
  prestart: 'amp prestart (no runner)',
  runnerPrestart: 'amp runner prestart',
  runnerAlone: 'runner alone (warm, no amp)',
  reuse: 'amp warm',
  pipeline: 'amp pipeline alone (no docker)',
}

/** The worker a row needs: none (the raw rows), amp's with or without its runner, or one that runs no container. */
type WorkerKind = 'none' | 'runner' | 'no-runner' | 'pipeline'
const WORKER_OF: Record<RowKind, WorkerKind> = {
  raw: 'none',
  plain: 'none',
  amp: 'runner',
  warm: 'none',
  prestart: 'no-runner',
  runnerPrestart: 'runner',
  runnerAlone: 'none',
  reuse: 'runner',
  pipeline: 'pipeline',
}

export async function runPerf(settings: Partial<PerfOptions> = {}): Promise<PerfReport> {
  const options: PerfOptions = {...DEFAULT_PERF_OPTIONS, ...settings}
  const say = options.progress ?? (() => {})
  await requireDocker()
  await ensureTestImages()
  const image = options.image ?? TEST_IMAGES.upper
  const id = randomBytes(3).toString('hex')
  const names = {
    raw: `perf-${id}-raw`,
    warm: `perf-${id}-warm`,
    amp: `perf-${id}`,
    prestart: `perf-${id}-pre`,
    runnerPrestart: `perf-${id}-rpre`,
    runnerAlone: `perf-${id}-ralone`,
    reuse: `perf-${id}-reuse`,
    pipeline: `perf-${id}-pipe`,
  }
  const workerId = newWorkerId()
  const commands = {
    raw: `${DOCKER} ${ampRunArgs(image, names.raw, workerId).join(' ')}`,
    plain: `${DOCKER} ${plainRunArgs(image).join(' ')}`,
  }
  const rows: Row[] = []
  const stack = await startTestStack({worker: false, docker: true})
  // One worker at a time, the one the row needs: two would share the calls.
  let worker: {kind: WorkerKind; worker?: Worker} = {kind: 'none'}
  const use = async (kind: WorkerKind) => {
    if (worker.kind === kind) return
    await worker.worker?.close()
    const common = {nats: stack.nats.url, concurrency: options.concurrency, docker: DOCKER, logger: silentLogger, async: false as const}
    if (kind === 'none') worker = {kind}
    else if (kind === 'pipeline') worker = {kind, worker: await startWorker(common, {runner: new UpperCaseRunner({workerId: 'bench-pipeline'})})}
    else worker = {kind, worker: await startWorker({...common, runner: kind === 'runner'})}
  }
  try {
    await putFunction(stack.listener.url, names.amp, {image, prestart: 0})
    const prestart = await putFunction(stack.listener.url, names.prestart, {image, prestart: options.prestart})
    await putFunction(stack.listener.url, names.runnerPrestart, {image, prestart: options.prestart})
    await putFunction(stack.listener.url, names.reuse, {image, prestart: options.prestart, reuse: true})
    await putFunction(stack.listener.url, names.pipeline, {image, prestart: 0})
    const loads = [
      {connections: 1, rate: options.rate},
      {connections: options.connections, rate: undefined},
    ]
    for (const load of loads) {
      const common = {...load, calls: options.calls, warmup: options.warmup}
      const fast = {...common, calls: load.rate === undefined ? options.fastCalls : options.calls}
      const row = async (kind: RowKind, measure: () => Promise<Measured>) => {
        say(`${ROW_NAMES[kind]} at ${describeLoad(load)}: ${FAST.includes(kind) ? fast.calls : options.calls} calls`)
        await use(WORKER_OF[kind])
        rows.push({kind, name: ROW_NAMES[kind], ...load, ...(await measure())})
      }
      const http = (fn: string, given = common) => () => runHttp({...given, url: stack.listener.url, fn, tag: fn})
      await row('raw', () => runRaw({...common, docker: DOCKER, args: () => ampRunArgs(image, names.raw, workerId), tag: names.raw}))
      await row('plain', () => runRaw({...common, docker: DOCKER, args: () => plainRunArgs(image), tag: 'plain'}))
      await row('amp', http(names.amp))
      // As deep as amp's pool of one function at its floor (MIN_WARM) or at this load, within prestart.
      const depth = Math.min(options.prestart, Math.max(MIN_WARM, load.connections))
      await row('warm', () => runRawWarm({...common, docker: DOCKER, image, fn: names.warm, workerId, depth, tag: names.warm}))
      if (prestart) await row('prestart', http(names.prestart))
      else rows.push({kind: 'prestart', name: ROW_NAMES.prestart, ...load, skipped: 'no prestart support'})
      await row('runnerPrestart', http(names.runnerPrestart))
      await row('runnerAlone', () => runRunnerAlone({...fast, docker: DOCKER, image, fn: names.runnerAlone, workerId}))
      await row('reuse', http(names.reuse, fast))
      await row('pipeline', http(names.pipeline, fast))
    }
  } finally {
    await worker.worker?.close()
    await stack.stop()
  }
  // After the worker stopped: pre-started containers live as long as their pool, and must go with it.
  let containersLeft = 0
  for (const fn of Object.values(names)) containersLeft += (await containersGone(fn)).length
  const {progress: _, ...given} = options
  return {date: new Date().toISOString(), machine: await machine(), image, commands, rows, containersLeft, options: given}
}

export function describeLoad(load: {connections: number; rate?: number}): string {
  const connections = `${load.connections} connection${load.connections === 1 ? '' : 's'}`
  return load.rate === undefined ? `${connections}, closed loop` : `${connections}, ${load.rate} calls/s`
}

/**
 * Creates or replaces a function; true when the listener kept its `prestart` setting (a listener
 * without pre-started containers ignores the field, or refuses it).
 */
async function putFunction(url: string, name: string, spec: {image: string; prestart: number; reuse?: boolean}): Promise<boolean> {
  const res = await request(`${url}/_amp/v1/functions/${name}?replace=true`, {method: 'PUT', body: JSON.stringify({...spec, network: 'none'})})
  const text = await res.body.text()
  if (res.statusCode === 400 && /prestart/i.test(text)) return false
  if (res.statusCode !== 200 && res.statusCode !== 201) throw new Error(`creating function ${name} failed: ${res.statusCode} ${text}`)
  return (JSON.parse(text) as {prestart?: unknown}).prestart === spec.prestart
}

async function machine(): Promise<PerfReport['machine']> {
  const version = await execa(DOCKER, ['version', '--format', '{{.Server.Version}}'], {reject: false})
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    docker: String(version.stdout).trim() || 'unknown',
    node: process.version,
  }
}
