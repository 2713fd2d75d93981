import {expect} from 'chai'
import {connect, type NatsConnection} from '@nats-io/transport-node'
import {request} from 'undici'

import {createFunction, startTestStack, type TestStack} from '../../helpers/stack.js'
import {waitFor} from '../../helpers/wait.js'
import {TEST_IMAGES} from '../../helpers/images.js'

/**
 * Calls of a function go to a worker that has a free container of it up, when one has (listeners
 * offer them first on amp.v1.warm.<fn>, docs/protocol.md), not to a random worker; and a quick call
 * is answered in one message (Amp-Status: done), with no event on the reply subject.
 */
describe('routing calls to warm containers (real docker, two workers)', function () {
  this.timeout(120_000)
  let stack: TestStack
  let spy: NatsConnection
  const events: string[] = []

  before(async () => {
    stack = await startTestStack({workers: 2, worker: {concurrency: 2, async: false}})
    spy = await connect({servers: stack.nats.url})
    spy.subscribe('amp.v1.reply.>', {
      callback: (_error, msg) => {
        events.push(msg.headers?.get('Amp-Event') ?? '?')
      },
    })
  })

  after(async () => {
    await spy?.close()
    await stack?.stop()
  })

  const call = async (fn: string, body: string) => {
    const res = await request(`${stack.listener.url}/${fn}`, {method: 'POST', body})
    return {status: res.statusCode, body: await res.body.text(), worker: String(res.headers['amp-worker'])}
  }

  it('sends every call of a --reuse function to the worker that holds its warm container', async () => {
    await createFunction(stack.listener, 'routed', {image: TEST_IMAGES.upper, reuse: true, prestart: 1})
    const first = await call('routed', 'first')
    expect(first).to.include({status: 200, body: 'FIRST'})
    const workers = []
    for (let i = 0; i < 20; i++) {
      const answer = await call('routed', `call ${i}`)
      expect(answer).to.include({status: 200, body: `CALL ${i}`})
      workers.push(answer.worker)
    }
    // A random worker of two would be the other one about half the time (all 20 the same: 1 in 2^19).
    expect(new Set(workers)).to.deep.equal(new Set([first.worker]))
  })

  it('answers a quick call in one message: no stdout, stderr or result event goes to the reply subject', async () => {
    await createFunction(stack.listener, 'quick', {image: TEST_IMAGES.stderr, reuse: true, prestart: 1})
    await call('quick', 'warm up')
    await spy.flush()
    events.length = 0
    const answer = await call('quick', 'hello')
    expect(answer).to.include({status: 200, body: 'hello'})
    await spy.flush()
    expect(events.filter((event) => event !== 'heartbeat')).to.deep.equal([])
  })

  it('sends a slow call its result as an event (accepted first), with its output inside when small', async () => {
    await createFunction(stack.listener, 'slowish', {image: TEST_IMAGES.slow, reuse: true, prestart: 1})
    events.length = 0
    const answer = await call('slowish', 'late')
    expect(answer).to.include({status: 200, body: 'late'})
    await spy.flush()
    expect(events.filter((event) => event !== 'heartbeat')).to.deep.equal(['result'])
  })

  it('stops offering a worker calls of a function once its containers are gone (the function was removed)', async () => {
    await createFunction(stack.listener, 'gone', {image: TEST_IMAGES.upper, reuse: true, prestart: 1})
    await call('gone', 'x')
    const interest = async () => {
      const probe = await spy.request('amp.v1.warm.gone', new Uint8Array(0), {timeout: 1000}).then(() => true, () => false)
      return probe
    }
    await stack.client.removeFunctions(['gone'])
    await waitFor('the warm subject of a removed function to have no responder', async () => ((await interest()) ? undefined : true), 10_000)
  })
})
