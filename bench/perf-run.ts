/**
 * The performance benchmark of issue #6, side by side in one run on one image: raw `docker run -i
 * --rm` (the floor: amp's own flags, and plain), amp end to end over HTTP, and amp with pre-started
 * containers, each at 1 connection paced at `rate` calls/s and at `connections` connections closed
 * loop. It starts its own nats-server, etcd, listener and worker (test/helpers/stack.ts, as
 * bench/load-run.ts does) and checks that every call was answered right and no container was left.
 * bench/perf.ts runs it from the command line; test/bench/perf.integration.test.ts at CI size.
 */
import {randomBytes} from 'node:crypto'
import {cpus} from 'node:os'
import {execa} from 'execa'
import {request} from 'undici'

import {MIN_WARM} from '../src/runtime/container-pool.js'
import {newWorkerId} from '../src/runtime/worker.js'
import {ensureTestImages, TEST_IMAGES} from '../test/helpers/images.js'
import {DOCKER, requireDocker} from '../test/helpers/services.js'
import {startTestStack} from '../test/helpers/stack.js'
import {containersGone} from './load-run.js'
import {runHttp} from './perf-http.js'
import {ampRunArgs, plainRunArgs, runRaw} from './perf-raw.js'
import {runRawWarm} from './perf-raw-warm.js'
import type {Measured} from './perf-tally.js'

export interface PerfOptions {
  /** Calls measured per row. */
  calls: number
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

export const DEFAULT_PERF_OPTIONS = {calls: 40, rate: 2, connections: 4, warmup: 3, prestart: 4, concurrency: 4} as const

export type RowKind = 'raw' | 'plain' | 'amp' | 'warm' | 'prestart'

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
  prestart: 'amp prestart',
}

export async function runPerf(settings: Partial<PerfOptions> = {}): Promise<PerfReport> {
  const options: PerfOptions = {...DEFAULT_PERF_OPTIONS, ...settings}
  const say = options.progress ?? (() => {})
  await requireDocker()
  await ensureTestImages()
  const image = options.image ?? TEST_IMAGES.upper
  const id = randomBytes(3).toString('hex')
  const names = {raw: `perf-${id}-raw`, warm: `perf-${id}-warm`, amp: `perf-${id}`, prestart: `perf-${id}-pre`}
  const workerId = newWorkerId()
  const commands = {
    raw: `${DOCKER} ${ampRunArgs(image, names.raw, workerId).join(' ')}`,
    plain: `${DOCKER} ${plainRunArgs(image).join(' ')}`,
  }
  const rows: Row[] = []
  const stack = await startTestStack({worker: {concurrency: options.concurrency}})
  try {
    await putFunction(stack.listener.url, names.amp, {image, prestart: 0})
    const prestart = await putFunction(stack.listener.url, names.prestart, {image, prestart: options.prestart})
    const loads = [
      {connections: 1, rate: options.rate},
      {connections: options.connections, rate: undefined},
    ]
    for (const load of loads) {
      const common = {...load, calls: options.calls, warmup: options.warmup}
      const row = async (kind: RowKind, measure: () => Promise<Measured>) => {
        say(`${ROW_NAMES[kind]} at ${describeLoad(load)}: ${options.calls} calls`)
        rows.push({kind, name: ROW_NAMES[kind], ...load, ...(await measure())})
      }
      await row('raw', () => runRaw({...common, docker: DOCKER, args: () => ampRunArgs(image, names.raw, workerId), tag: names.raw}))
      await row('plain', () => runRaw({...common, docker: DOCKER, args: () => plainRunArgs(image), tag: 'plain'}))
      await row('amp', () => runHttp({...common, url: stack.listener.url, fn: names.amp, tag: names.amp}))
      // As deep as amp's pool of one function at its floor (MIN_WARM) or at this load, within prestart.
      const depth = Math.min(options.prestart, Math.max(MIN_WARM, load.connections))
      await row('warm', () => runRawWarm({...common, docker: DOCKER, image, fn: names.warm, workerId, depth, tag: names.warm}))
      if (prestart) {
        await row('prestart', () => runHttp({...common, url: stack.listener.url, fn: names.prestart, tag: names.prestart}))
      } else {
        rows.push({kind: 'prestart', name: ROW_NAMES.prestart, ...load, skipped: 'no prestart support'})
      }
    }
  } finally {
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
async function putFunction(url: string, name: string, spec: {image: string; prestart: number}): Promise<boolean> {
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
