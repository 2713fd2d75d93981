import {expect} from 'chai'
import {request} from 'undici'

import {startListener, type Listener} from '../../src/runtime/listener/listener.js'
import {silentLogger} from '../../src/runtime/shared/logger.js'
import {Registry} from '../../src/runtime/shared/metrics.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {createFunction, startTestStack, type TestStack} from '../helpers/stack.js'
import {sample} from '../helpers/prometheus.js'
import {waitFor, waitUntil} from '../helpers/wait.js'

async function call(url: string, body = 'x') {
  const started = Date.now()
  const res = await request(url, {method: 'POST', body})
  const text = await res.body.text()
  return {status: res.statusCode, headers: res.headers, text, ms: Date.now() - started}
}

async function inFlight(listener: Listener): Promise<number> {
  const res = await request(`${listener.url}/_amp/v1/metrics`)
  const line = (await res.body.text()).split('\n').find((l) => l.startsWith('amp_listener_calls_in_flight '))
  return Number(line?.split(' ')[1])
}

// Calls that hold their worker slot far longer than any refusal may take.
const HOLD_MS = 15_000
// A call no worker has room for waits in the listener up to its timeout (issue #15), then gets 503.
const IMPATIENT_MS = 2000

describe('overload: past max-inflight answered at once; a call no worker has room for waits only up to its timeout', function () {
  this.timeout(120_000)
  let stack: TestStack
  /** Same NATS and etcd, default max-inflight: its calls reach the (full) worker. */
  let roomy: Listener

  before(async () => {
    stack = await startTestStack({worker: {concurrency: 2, backlog: 0, drainTimeoutMs: 1000}, listener: {maxInFlight: 2}})
    roomy = await startListener({host: '127.0.0.1', port: 0, logger: silentLogger, nats: stack.nats.url, etcd: [stack.etcd.url]})
    await createFunction(stack.listener, 'hold', {image: TEST_IMAGES.sleep, timeoutMs: HOLD_MS})
    await createFunction(stack.listener, 'cat', {image: TEST_IMAGES.cat})
    await createFunction(stack.listener, 'impatient', {image: TEST_IMAGES.cat, timeoutMs: IMPATIENT_MS})
  })

  after(async () => {
    await roomy?.close()
    await stack?.stop()
  })

  it("past max-inflight, the listener answers 429 with Retry-After at once; a full worker gives 503 at the call's timeout", async () => {
    const {listener} = stack
    const held = [call(`${listener.url}/hold`), call(`${listener.url}/hold`)]
    await waitFor('two calls in flight', async () => ((await inFlight(listener)) === 2 ? true : undefined))

    const refused = await call(`${listener.url}/cat`, 'third')
    expect(refused.status, refused.text).to.equal(429)
    expect(refused.headers['retry-after']).to.equal('1')
    expect(refused.headers['amp-error-code']).to.equal('overloaded')
    expect(JSON.parse(refused.text).error.message).to.match(/limit of 2 calls at once/)
    expect(refused.ms).to.be.below(3000)

    // Both worker slots are taken and it keeps no backlog: another listener's call waits for room up to
    // its timeout, then is turned away, long before a slot frees.
    const busy = await call(`${roomy.url}/impatient`, 'fourth')
    expect(busy.status, busy.text).to.equal(503)
    expect(busy.headers['amp-error-code']).to.equal('no_worker')
    expect(busy.headers['retry-after']).to.equal('1')
    expect(busy.ms).to.be.at.least(IMPATIENT_MS - 100)
    expect(busy.ms).to.be.below(HOLD_MS / 2)

    for (const res of await Promise.all(held)) expect(res.status, res.text).to.equal(504)
    const after = await call(`${listener.url}/cat`, 'room again')
    expect(after.status, after.text).to.equal(200)
    expect(after.text).to.equal('room again')
  })
})

describe('a queued call whose caller hung up', function () {
  this.timeout(120_000)
  let stack: TestStack
  const workerMetrics = new Registry()
  /** Calls the worker has accepted and not answered: waiting in its backlog, or running. */
  const workerInFlight = async () => sample(await workerMetrics.metrics(), 'amp_worker_calls_in_flight')

  before(async () => {
    // One slot and one backlog place: a call waiting there blocks every other until it leaves.
    stack = await startTestStack({worker: {concurrency: 1, backlog: 1, drainTimeoutMs: 1000, metricsRegistry: workerMetrics}})
    await createFunction(stack.listener, 'hold', {image: TEST_IMAGES.sleep, timeoutMs: HOLD_MS})
    await createFunction(stack.listener, 'cat', {image: TEST_IMAGES.cat})
  })

  after(async () => {
    await stack?.stop()
  })

  it('leaves the worker backlog at once, so the next call is taken instead of turned away', async () => {
    const {listener} = stack
    const holding = call(`${listener.url}/hold`)
    await waitFor('the hold call in flight', async () => ((await inFlight(listener)) === 1 ? true : undefined))
    const hangUp = new AbortController()
    const queued = request(`${listener.url}/cat`, {method: 'POST', body: 'queued', signal: hangUp.signal}).then(
      () => 'answered',
      () => 'hung up',
    )
    await waitFor('the second call in flight', async () => ((await inFlight(listener)) === 2 ? true : undefined))
    await waitUntil("the second call in the worker's backlog", async () => (await workerInFlight()) === 2)
    hangUp.abort()
    expect(await queued).to.equal('hung up')
    // The next heartbeat (1 s) tells the worker nobody waits: the backlog place is free well before the slot is.
    await waitUntil('the worker to let go of the call whose caller hung up', async () => (await workerInFlight()) === 1, HOLD_MS / 2)

    const next = await call(`${listener.url}/cat`, 'next')
    expect(next.status, next.text).to.equal(200)
    expect(next.text).to.equal('next')
    expect((await holding).status).to.equal(504)
  })
})
