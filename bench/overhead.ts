/**
 * npm run bench:overhead -- [--calls 20] [--image IMAGE]
 * Where amp's time goes on one call, beyond `docker run` itself: sequential calls at 1 connection
 * through a listener and a worker in this process, each step timestamped (performance.now) by the
 * client, by the daemons' own log lines (a capturing logger) and by the worker's docker CLI calls
 * (the runner's injected exec). Prints the median of each step, in ms. See docs/performance.md.
 */
import {performance} from 'node:perf_hooks'
import {parseArgs} from 'node:util'
import {execa} from 'execa'
import {request} from 'undici'

import {ContainerStarts} from '../src/runtime/worker/container-events.js'
import {ContainerRunner} from '../src/runtime/worker/container-runner.js'
import type {LogFields, Logger} from '../src/runtime/shared/logger.js'
import {newWorkerId, startWorker} from '../src/runtime/worker/worker.js'
import {ensureTestImages, TEST_IMAGES} from '../test/helpers/images.js'
import {DOCKER, requireDocker} from '../test/helpers/services.js'
import {createFunction, startTestStack} from '../test/helpers/stack.js'
import {percentile} from './load-run.js'
import {callInput, wrongAnswer} from './perf-tally.js'

type Marks = Record<string, number>

/** A logger that notes when each call's lines were written, by call id. */
function markingLogger(marks: Map<string, Marks>, base: LogFields = {}): Logger {
  const note = (msg: string, fields: LogFields = {}) => {
    const all = {...base, ...fields}
    if (typeof all.call !== 'string') return
    const m = marks.get(all.call) ?? {}
    m[msg] = performance.now()
    if (typeof all.ms === 'number') m[`${msg} ms`] = all.ms
    marks.set(all.call, m)
  }
  return {debug: note, info: note, warn: note, error: note, child: (fields) => markingLogger(marks, {...base, ...fields})}
}

const {values} = parseArgs({options: {calls: {type: 'string', default: '20'}, image: {type: 'string'}}})
const calls = Number(values.calls)
await requireDocker()
await ensureTestImages()
const image = values.image ?? TEST_IMAGES.upper

const marks = new Map<string, Marks>()
const logger = markingLogger(marks)
const stack = await startTestStack({worker: false, listener: {logger}})
// The worker as startWorker builds it, with its docker CLI calls and its wait for start events timed.
const runnerId = newWorkerId()
const starts = new ContainerStarts({docker: DOCKER, workerId: runnerId})
starts.start()
const nameOf = (args: readonly string[]) => String(args[args.indexOf('--name') + 1]).replace(/^amp-/, '')
const exec = ((file: string, args: readonly string[], options: object) => {
  if (args[0] !== 'run') return execa(file, args, options)
  const m = marks.get(nameOf(args)) ?? {}
  marks.set(nameOf(args), m)
  m['docker run called'] = performance.now()
  const child = execa(file, args, options)
  void child.then(() => (m['docker run exited'] = performance.now()))
  return child
}) as unknown as typeof execa
const runner = new ContainerRunner({
  docker: DOCKER,
  workerId: runnerId,
  exec,
  startedAt: async (name) => {
    const m = marks.get(name.replace(/^amp-/, '')) ?? {}
    const at = await starts.take(name)
    m['start event taken'] = performance.now()
    return at
  },
})
const worker = await startWorker({nats: stack.nats.url, concurrency: 4, docker: DOCKER, logger}, {runner})

const steps: Array<[string, string, string]> = [
  ['HTTP in, function lookup, NATS offer, worker accepts', 'client sent', 'call accepted'],
  ['worker: slot, log stream, docker args', 'call accepted', 'docker run called'],
  ['docker run -i --rm (execa called to exit, as the raw rows time it)', 'docker run called', 'docker run exited'],
  ['worker: after docker exits, until the result is ready', 'docker run exited', 'call done'],
  ['  of which: waiting for the container start event', 'docker run exited', 'start event taken'],
  ['NATS result to the listener, HTTP answer sent', 'call done', 'call answered'],
  ['HTTP answer to the client', 'call answered', 'client got answer'],
  ['total (client)', 'client sent', 'client got answer'],
]
const durations = steps.map(() => [] as number[])
try {
  const fn = 'overhead'
  await createFunction(stack.listener, fn, {image, prestart: 0})
  for (let i = 0; i < calls + 2; i++) {
    const input = callInput(fn)
    const sent = performance.now()
    const res = await request(`${stack.listener.url}/${fn}`, {method: 'POST', body: input})
    const output = await res.body.text()
    const got = performance.now()
    const callId = String(res.headers['amp-call-id'])
    const wrong = res.statusCode === 200 ? wrongAnswer(input, output) : `${res.statusCode} ${output}`
    if (wrong) throw new Error(`call ${callId}: ${wrong}`)
    const m: Marks = {...marks.get(callId), 'client sent': sent, 'client got answer': got}
    // The first two calls warm the caches (function lookup, image, connections): not counted.
    if (i >= 2) steps.forEach(([, from, to], s) => durations[s].push(m[to] - m[from]))
  }
} finally {
  await worker.close()
  starts.stop()
  await stack.stop()
}

const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 0.5)
const width = Math.max(...steps.map(([name]) => name.length))
process.stdout.write(`${calls} sequential calls of ${image}, medians in ms (p90 in brackets)\n`)
steps.forEach(([name], s) => {
  const sorted = [...durations[s]].sort((a, b) => a - b)
  process.stdout.write(`${name.padEnd(width)}  ${median(sorted).toFixed(1).padStart(7)}  (${percentile(sorted, 0.9).toFixed(1)})\n`)
})
process.exit(0)
