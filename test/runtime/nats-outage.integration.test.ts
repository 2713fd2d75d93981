import {setTimeout as sleep} from 'node:timers/promises'
import {expect} from 'chai'
import {execa, type ResultPromise} from 'execa'
import {createInterface} from 'node:readline'
import {request} from 'undici'

import {containers} from '../helpers/containers.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {DAEMON_KILL_AFTER_MS, DEV} from '../helpers/run-amp-process.js'
import {DOCKER} from '../helpers/services.js'
import {createFunction, startTestStack, type StackWithoutWorker, type TestStack} from '../helpers/stack.js'
import {waitFor, waitUntil} from '../helpers/wait.js'

interface Outcome {
  startedAt: number
  ms: number
  status: number
  retryAfter?: string
  echoed: boolean
}

async function call(url: string, body: string): Promise<Outcome> {
  const startedAt = Date.now()
  const res = await request(url, {method: 'POST', body})
  const text = await res.body.text()
  return {startedAt, ms: Date.now() - startedAt, status: res.statusCode, retryAfter: res.headers['retry-after'] as string | undefined, echoed: text === body}
}

// The accept timeout is 5 s: a refusal well under it was not waited for.
const FAST_MS = 3000

describe('NATS stopped and restarted under a stream of calls', function () {
  this.timeout(180_000)
  let stack: TestStack

  before(async () => {
    stack = await startTestStack({worker: {concurrency: 4}})
    await createFunction(stack.listener, 'cat', {image: TEST_IMAGES.cat})
    // No pre-started container: the call's own container shows when it runs.
    await createFunction(stack.listener, 'slow', {image: TEST_IMAGES.slow, prestart: 0})
  })

  after(() => stack?.stop())

  it('refuses calls at once during the outage, ends calls in flight with an error, and serves again after', async () => {
    const {listener, worker} = stack
    const natsUp = async () => {
      const res = await request(`${listener.url}/_amp/v1/health/ready`)
      const checks = ((await res.body.json()) as {checks: {nats: boolean}}).checks
      return checks.nats && (await worker.readiness()).body.checks.nats
    }
    const outcomes: Outcome[] = []
    let running = true
    let n = 0
    const stream = Array.from({length: 4}, async () => {
      while (running) {
        const outcome = await call(`${listener.url}/cat`, `call ${n++}`)
        outcomes.push(outcome)
        if (outcome.status !== 200) await sleep(50)
      }
    })
    await waitFor('a first answered call', async () => (outcomes.some((o) => o.status === 200) ? true : undefined), 60_000)

    // A call still running when NATS goes away: its worker cannot send the result.
    const inFlight = call(`${listener.url}/slow`, 'in flight')
    // It runs for 2 s from when its container is up.
    await waitUntil('the slow call to run', async () => (await containers([`label=amp.function=slow`, `label=amp.worker=${worker.id}`], {running: true})).length > 0, 20_000, 50)
    stack.nats.kill('SIGTERM')
    await waitFor('the listener to see NATS gone', async () => ((await natsUp()) ? undefined : true))
    const downAt = Date.now()
    // Long enough for the calls caught in flight to end and for new ones to be refused.
    await waitFor('calls made during the outage', async () => (outcomes.filter((o) => o.startedAt > downAt).length >= 10 ? true : undefined), 30_000)
    const lost = await inFlight
    expect(lost.status, 'the call in flight').to.be.oneOf([502, 503])

    await stack.nats.restart()
    const backAt = Date.now()
    await waitFor('listener and worker to reconnect', async () => ((await natsUp()) ? true : undefined), 5000, 50)
    const reconnectMs = Date.now() - backAt
    const firstOk = await waitFor('a call answered after the restart', async () => outcomes.find((o) => o.startedAt > backAt && o.status === 200), 60_000)
    await waitFor('a few more calls', async () => (outcomes.filter((o) => o.startedAt > firstOk.startedAt).length >= 8 ? true : undefined), 60_000)
    running = false
    await Promise.all(stream)

    const during = outcomes.filter((o) => o.startedAt > downAt && o.startedAt + o.ms < backAt)
    expect(during.length, 'calls made during the outage').to.be.above(0)
    for (const o of during) {
      expect(o.status).to.equal(503)
      expect(o.retryAfter).to.equal('1')
      expect(o.ms).to.be.below(FAST_MS)
    }
    const after = outcomes.filter((o) => o.startedAt >= firstOk.startedAt)
    expect(after.every((o) => o.status === 200 && o.echoed), JSON.stringify(after.filter((o) => o.status !== 200))).to.equal(true)
    console.log(`      (${during.length} calls refused during the outage; reconnected ${reconnectMs} ms after nats-server was back, the first call that succeeded was sent ${firstOk.startedAt - backAt} ms after)`)
  })
})


/** `amp <args> --json` as its own process; resolves with its ready line (the daemons print one on stdout). */
async function daemon(args: string[]): Promise<{child: ResultPromise; ready: Record<string, unknown>}> {
  // SIGKILL only past the daemons' 30 s drain deadline (execa's default is 5 s after a kill()).
  const child = execa('node', [DEV, ...args, '--json'], {reject: false, env: {NODE_EXTRA_CA_CERTS: ''}, stdin: 'ignore', forceKillAfterDelay: DAEMON_KILL_AFTER_MS})
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({input: child.stdout!}).once('line', resolve)
    child.once('exit', () => reject(new Error(`amp ${args.join(' ')} exited before it was ready`)))
  })
  return {child, ready: JSON.parse(line) as Record<string, unknown>}
}

describe('NATS stopped and restarted: the daemons as processes', function () {
  this.timeout(180_000)
  let stack: StackWithoutWorker
  const children: ResultPromise[] = []

  before(async () => {
    stack = await startTestStack({worker: false, docker: true})
    await createFunction(stack.listener, 'cat', {image: TEST_IMAGES.cat})
  })

  after(async () => {
    for (const child of children) child.kill('SIGKILL')
    await stack?.stop()
  })

  it('neither the listener nor the worker exits; both serve again after NATS returns, and stop cleanly after', async () => {
    const {nats, etcd} = stack
    const worker = await daemon(['worker', 'start', '--nats', nats.url, '--docker', DOCKER, '--concurrency', '2'])
    children.push(worker.child)
    const listener = await daemon(['listener', 'start', '--port', '0', '--nats', nats.url, '--etcd', etcd.url])
    children.push(listener.child)
    const url = (listener.ready.listener as {url: string}).url
    expect((await call(`${url}/cat`, 'before')).status).to.equal(200)

    nats.kill('SIGTERM')
    const refused = await waitFor('a call refused while NATS is down', async () => {
      const res = await call(`${url}/cat`, 'during')
      return res.status === 503 ? res : undefined
    })
    expect(refused.ms).to.be.below(FAST_MS)
    await nats.restart()
    const back = await waitFor('a call answered after the restart', async () => {
      const res = await call(`${url}/cat`, 'after')
      return res.status === 200 ? res : undefined
    }, 30_000, 200)
    expect(back.echoed).to.equal(true)
    expect(worker.child.exitCode, 'worker').to.equal(null)
    expect(listener.child.exitCode, 'listener').to.equal(null)

    // A result the worker sent just as NATS went away may wait out its 10 s reply timeout before the
    // drain ends: the daemons get their drain deadline (see daemon()), and must exit 0 within it.
    for (const {child} of [listener, worker]) {
      child.kill('SIGTERM')
      expect((await child).exitCode).to.equal(0)
    }
  })
})
