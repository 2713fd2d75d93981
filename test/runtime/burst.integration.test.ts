import {expect} from 'chai'
import {request} from 'undici'

import {TEST_IMAGES} from '../helpers/images.js'
import {createFunction, startTestStack, type TestStack} from '../helpers/stack.js'

const CALLS = 30

/**
 * Issue #15: a burst bigger than the workers' slots and backlogs, that fits in the function's
 * timeout, is served in full. The calls the workers cannot take yet wait in the listener for room,
 * instead of being answered 503 after a few seconds of retries.
 */
describe('a burst of sync calls past every slot and backlog place', function () {
  this.timeout(180_000)
  let stack: TestStack

  before(async () => {
    // 2 workers × (2 slots + 8 backlog places) = 20 calls taken at once: 10 of the 30 must wait for room.
    stack = await startTestStack({workers: 2, worker: {concurrency: 2, drainTimeoutMs: 1000}})
    await createFunction(stack.listener, 'nap', {image: TEST_IMAGES.sh, timeoutMs: 60_000})
  })

  after(() => stack?.stop())

  it(`answers all ${CALLS} concurrent calls of a 0.5 s function with 200`, async () => {
    const answers = await Promise.all(
      Array.from({length: CALLS}, async (_, i) => {
        const res = await request(`${stack.listener.url}/nap`, {method: 'POST', body: `sleep 0.5; echo call ${i}`})
        return {status: res.statusCode, text: await res.body.text(), worker: res.headers['amp-worker']}
      }),
    )
    const refused = answers.filter((answer) => answer.status !== 200)
    expect(refused.map((answer) => `${answer.status} ${answer.text}`), 'calls not answered 200').to.deep.equal([])
    expect(answers.map((answer) => answer.text)).to.deep.equal(Array.from({length: CALLS}, (_, i) => `call ${i}\n`))
    expect(new Set(answers.map((answer) => answer.worker)).size, 'both workers served calls').to.equal(2)
  })
})
