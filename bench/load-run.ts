/**
 * The load test (issues #3 and #12): a private nats-server and etcd on free ports, one listener and
 * N workers in this process, a function on amp-test/cat:1 (warm containers, pre-started fresh ones,
 * or a fresh container per call), and `calls` calls at `connections` concurrent HTTP connections,
 * each with its own body. Every answer must be exactly its own body:
 * anything else is counted as crossed, lost (no HTTP answer) or non-200, and no amp container of
 * the run may be left afterwards. bench/load.ts runs it from the command line; a CI-sized run is
 * test/bench/load.integration.test.ts.
 */
import {setTimeout as sleep} from 'node:timers/promises'
import {randomBytes} from 'node:crypto'
import {performance} from 'node:perf_hooks'
import {Pool} from 'undici'

import {containers} from '../test/helpers/containers.js'
import {TEST_IMAGES} from '../test/helpers/images.js'
import {createFunction, startTestStack} from '../test/helpers/stack.js'

/** How the function's calls get containers: warm ones (--reuse), pre-started fresh ones, or each its own docker run. */
export type LoadMode = 'reuse' | 'prestart' | 'fresh'
export const LOAD_MODES: readonly LoadMode[] = ['reuse', 'prestart', 'fresh']

export interface LoadOptions {
  calls: number
  /** reuse unless given. */
  mode?: LoadMode
  /** The function's prestart (reuse: most warm containers per worker); the concurrency unless given. */
  prestart?: number
  /** HTTP connections kept open to the listener, each with one call at a time. */
  connections: number
  workers: number
  /** Containers each worker runs at once. */
  concurrency: number
  /** Random bytes in each body, after its unique prefix. */
  bodyBytes?: number
  /** Progress lines (every 10 %); silent unless given. */
  progress?: (line: string) => void
}

export interface LoadReport {
  calls: number
  mode: LoadMode
  prestart: number
  connections: number
  workers: number
  concurrency: number
  durationMs: number
  callsPerSecond: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** Answered 200 with exactly the body sent. */
  ok: number
  /** No HTTP answer at all (connection error, reset...). */
  lost: number
  /** Answered 200 with a body other than the one sent. */
  crossed: number
  /** Count of answers by HTTP status other than 200. */
  byStatus: Record<string, number>
  /** The first few failures, for the report. */
  samples: string[]
  /** amp containers of this run still there once the calls are done and the stack stopped (idle pre-started ones go then). */
  containersLeft: number
}

/** How long the containers of finished calls may take to disappear (docker removes --rm containers just after exit). */
const CONTAINERS_GONE_MS = 15_000
const MAX_SAMPLES = 5

export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const stack = await startTestStack({workers: options.workers, worker: {concurrency: options.concurrency}})
  // A name of its own: other suites may run amp containers on the same dockerd at the same time.
  const fn = `load-${randomBytes(4).toString('hex')}`
  let stopped = false
  try {
    const mode = options.mode ?? 'reuse'
    const prestart = mode === 'fresh' ? 0 : (options.prestart ?? options.concurrency)
    await createFunction(stack.listener, fn, {image: TEST_IMAGES.cat, prestart, ...(mode === 'reuse' ? {reuse: true} : {})})
    const pool = new Pool(stack.listener.url, {connections: options.connections, pipelining: 1})
    const latencies: number[] = []
    const report = {ok: 0, lost: 0, crossed: 0, byStatus: {} as Record<string, number>, samples: [] as string[]}
    const sample = (text: string) => report.samples.length < MAX_SAMPLES && report.samples.push(text)
    let next = 0
    let answered = 0
    const step = Math.max(1, Math.floor(options.calls / 10))
    const started = performance.now()

    const oneCall = async (i: number) => {
      const body = Buffer.concat([Buffer.from(`call ${i} of ${fn}\n`), randomBytes(options.bodyBytes ?? 256)])
      const t0 = performance.now()
      try {
        const res = await pool.request({path: `/${fn}`, method: 'POST', body})
        const answer = Buffer.from(await res.body.arrayBuffer())
        latencies.push(performance.now() - t0)
        if (res.statusCode !== 200) {
          report.byStatus[res.statusCode] = (report.byStatus[res.statusCode] ?? 0) + 1
          sample(`call ${i}: ${res.statusCode} ${answer.toString('utf8').slice(0, 200)}`)
        } else if (answer.equals(body)) {
          report.ok++
        } else {
          report.crossed++
          sample(`call ${i}: 200 with another body (${answer.length} bytes, starts ${JSON.stringify(answer.subarray(0, 30).toString('latin1'))})`)
        }
      } catch (error) {
        report.lost++
        sample(`call ${i}: no answer: ${(error as Error).message}`)
      }
      const done = ++answered
      if (options.progress && done % step === 0) options.progress(`${done}/${options.calls} calls answered`)
    }
    const connection = async () => {
      while (next < options.calls) await oneCall(next++)
    }
    await Promise.all(Array.from({length: options.connections}, connection))
    const durationMs = performance.now() - started
    await pool.close()

    // Workers keep idle pre-started containers until they stop: nothing may be left after that.
    await stack.stop()
    stopped = true
    const left = await containersGone(fn)
    latencies.sort((a, b) => a - b)
    return {
      calls: options.calls,
      mode,
      prestart,
      connections: options.connections,
      workers: options.workers,
      concurrency: options.concurrency,
      durationMs,
      callsPerSecond: (options.calls / durationMs) * 1000,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      maxMs: latencies.at(-1) ?? 0,
      ...report,
      containersLeft: left.length,
    }
  } finally {
    if (!stopped) await stack.stop()
  }
}

/** Waits for the run's containers to be gone, and returns those still there after CONTAINERS_GONE_MS. */
export async function containersGone(fn: string): Promise<string[]> {
  const until = Date.now() + CONTAINERS_GONE_MS
  for (;;) {
    const left = await containers(`label=amp.function=${fn}`)
    if (left.length === 0 || Date.now() > until) return left
    await sleep(250)
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}

export function nonOk(report: LoadReport): number {
  return Object.values(report.byStatus).reduce((sum, n) => sum + n, 0)
}

/** True when anything was lost, crossed, answered other than 200, or left behind. */
export function loadFailed(report: LoadReport): boolean {
  return report.lost > 0 || report.crossed > 0 || nonOk(report) > 0 || report.containersLeft > 0 || report.ok !== report.calls
}

const ms = (value: number) => `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`

/** The report as one small table. */
export function formatReport(r: LoadReport): string {
  const statuses = Object.entries(r.byStatus).map(([status, n]) => `${status}:${n}`).join(' ') || 'none'
  const rows: Array<[string, string]> = [
    ['calls', `${r.calls} (${r.ok} ok)`],
    ['containers', r.mode === 'reuse' ? `warm (--reuse), at most ${r.prestart} per worker` : r.mode === 'prestart' ? `fresh, pre-started (prestart ${r.prestart})` : 'fresh, one docker run each'],
    ['connections', String(r.connections)],
    ['workers x concurrency', `${r.workers} x ${r.concurrency}`],
    ['duration', `${(r.durationMs / 1000).toFixed(1)} s`],
    ['calls/s', r.callsPerSecond.toFixed(1)],
    ['p50', ms(r.p50Ms)],
    ['p99', ms(r.p99Ms)],
    ['max', ms(r.maxMs)],
    ['lost', String(r.lost)],
    ['crossed', String(r.crossed)],
    ['errors by status', statuses],
    ['containers left', String(r.containersLeft)],
  ]
  const width = Math.max(...rows.map(([name]) => name.length))
  return [...rows.map(([name, value]) => `${name.padEnd(width)}  ${value}`), ...r.samples.map((s) => `! ${s}`)].join('\n')
}
