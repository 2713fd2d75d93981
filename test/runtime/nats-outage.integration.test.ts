import {expect} from 'chai'
import {request} from 'undici'

import {TEST_IMAGES} from '../helpers/images.js'
import {createFunction, startTestStack, type TestStack} from '../helpers/stack.js'
import {waitFor} from '../helpers/wait.js'

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
    await createFunction(stack.listener, 'slow', {image: TEST_IMAGES.slow})
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
        if (outcome.status !== 200) await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })
    await waitFor('a first answered call', async () => (outcomes.some((o) => o.status === 200) ? true : undefined), 60_000)

    // A call still running when NATS goes away: its worker cannot send the result.
    const inFlight = call(`${listener.url}/slow`, 'in flight')
    await new Promise((resolve) => setTimeout(resolve, 500))
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
