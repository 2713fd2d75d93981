import {setTimeout as sleep} from 'node:timers/promises'
import type {Consumer} from '@nats-io/jetstream'
import {expect} from 'chai'

import {SinglePull} from '../../src/runtime/async-store.js'

/**
 * A consumer whose fetch takes `setupMs` to start, then yields nothing until closed or until
 * `expiresMs` passes, as a pull on an empty stream does.
 */
function idleConsumer(setupMs: number) {
  const consumer = {
    fetch: async ({expires}: {expires: number}) => {
      await sleep(setupMs)
      let close!: () => void
      const closed = new Promise<void>((resolve) => (close = resolve))
      const batch = (async function* () {
        await Promise.race([closed, sleep(expires)])
      })()
      return Object.assign(batch, {close: async () => close()})
    },
  }
  return consumer as unknown as Consumer
}

describe('SinglePull', () => {
  it('ends a pull at once when aborted while it waits for a message', async () => {
    const pull = new SinglePull()
    const started = Date.now()
    const next = pull.next(idleConsumer(0), 5000)
    await sleep(30)
    pull.abort()
    expect(await next).to.equal(null)
    expect(Date.now() - started).to.be.below(2000)
  })

  it('ends a pull at once when aborted while the pull is still being set up', async () => {
    const pull = new SinglePull()
    const started = Date.now()
    const next = pull.next(idleConsumer(50), 5000)
    await sleep(10) // inside fetch(), before it returned its batch
    pull.abort()
    expect(await next).to.equal(null)
    expect(Date.now() - started, 'not at the pull expiry').to.be.below(2000)
  })

  it('returns null without pulling once aborted', async () => {
    const pull = new SinglePull()
    pull.abort()
    let fetched = false
    const consumer = {fetch: async () => ((fetched = true), idleConsumer(0))} as unknown as Consumer
    expect(await pull.next(consumer, 5000)).to.equal(null)
    expect(fetched).to.equal(false)
  })
})
