import {setTimeout as sleep} from 'node:timers/promises'
import type {Consumer, JsMsg} from '@nats-io/jetstream'
import {expect} from 'chai'

import {PullLoop, SinglePull} from '../../../src/runtime/shared/pull-loop.js'
import {waitUntil} from '../../helpers/wait.js'

/**
 * A consumer whose fetch is set up once `setup` resolves, then yields nothing until closed or until
 * `expiresMs` passes, as a pull on an empty stream does. `seen` tells how far the pull got.
 */
function idleConsumer(setup: Promise<unknown> = Promise.resolve()) {
  const seen = {fetches: 0, waiting: false}
  const consumer = {
    fetch: async ({expires}: {expires: number}) => {
      seen.fetches++
      await setup
      let close!: () => void
      const closed = new Promise<void>((resolve) => (close = resolve))
      const batch = (async function* () {
        seen.waiting = true
        await Promise.race([closed, sleep(expires)])
      })()
      return Object.assign(batch, {close: async () => close()})
    },
  }
  return {consumer: consumer as unknown as Consumer, seen}
}

describe('SinglePull', () => {
  it('ends a pull at once when aborted while it waits for a message', async () => {
    const pull = new SinglePull()
    const started = Date.now()
    const idle = idleConsumer()
    const next = pull.next(idle.consumer, 5000)
    await waitUntil('the pull to wait for a message', () => idle.seen.waiting, 2000, 5)
    pull.abort()
    expect(await next).to.equal(null)
    expect(Date.now() - started).to.be.below(2000)
  })

  it('ends a pull at once when aborted while the pull is still being set up', async () => {
    const pull = new SinglePull()
    const started = Date.now()
    let setUp!: () => void
    const idle = idleConsumer(new Promise<void>((resolve) => (setUp = resolve)))
    const next = pull.next(idle.consumer, 5000)
    await waitUntil('the pull to be set up', () => idle.seen.fetches === 1, 2000, 5)
    pull.abort() // inside fetch(), before it returned its batch
    setUp()
    expect(await next).to.equal(null)
    expect(Date.now() - started, 'not at the pull expiry').to.be.below(2000)
  })

  it('returns null without pulling once aborted', async () => {
    const pull = new SinglePull()
    pull.abort()
    let fetched = false
    const consumer = {fetch: async () => ((fetched = true), idleConsumer().consumer)} as unknown as Consumer
    expect(await pull.next(consumer, 5000)).to.equal(null)
    expect(fetched).to.equal(false)
  })
})

/** A consumer that hands out the queued messages one per fetch, and counts its fetches. */
function queueConsumer(queue: string[]) {
  const fetches: number[] = []
  const consumer = {
    fetch: async ({expires}: {expires: number}) => {
      fetches.push(Date.now())
      const batch = (async function* () {
        const data = queue.shift()
        if (data === undefined) await sleep(expires)
        else yield fakeMsg(data)
      })()
      return Object.assign(batch, {close: async () => {}})
    },
  }
  return {consumer: consumer as unknown as Consumer, fetches}
}

const nakked: string[] = []
const fakeMsg = (data: string) => ({data, nak: () => nakked.push(data)}) as unknown as JsMsg & {data: string}

const until = (what: string, check: () => boolean) => waitUntil(what, check, 3000, 5)

describe('PullLoop', () => {
  const base = {expiresMs: 20, retryMs: 50, onPullError: () => {}}

  it('pulls only while there is room, and the next pull waits for what take() returns', async () => {
    const {consumer, fetches} = queueConsumer(['a', 'b', 'c'])
    const taken: string[] = []
    let room = false
    let freeRoom!: () => void
    let admit!: () => void
    const loop = new PullLoop({
      ...base,
      consumer: async () => consumer,
      hasRoom: () => room,
      roomFreed: () => new Promise<void>((resolve) => (freeRoom = resolve)),
      take: async (msg) => {
        taken.push((msg as unknown as {data: string}).data)
        await new Promise<void>((resolve) => (admit = resolve))
      },
    })
    loop.start()
    await sleep(50) // a gap in which a pull without room would show
    expect(fetches, 'no pull without room').to.have.length(0)
    room = true
    freeRoom()
    await until('the first message taken', () => taken.length === 1)
    await sleep(50) // a gap in which a second pull would show
    expect(taken, 'no second pull before the first is admitted').to.deep.equal(['a'])
    expect(fetches).to.have.length(1)
    admit()
    await until('the second message taken', () => taken.length === 2)
    expect(taken).to.deep.equal(['a', 'b'])
    loop.stop()
    admit()
  })

  it('after a failed pull says why, waits retryMs, and asks for the consumer again', async () => {
    const {consumer} = queueConsumer(['a'])
    const errors: string[] = []
    const asked: number[] = []
    const taken: string[] = []
    const loop = new PullLoop({
      ...base,
      consumer: async () => {
        asked.push(Date.now())
        if (asked.length === 1) throw new Error('JetStream not enabled')
        return consumer
      },
      hasRoom: () => true,
      roomFreed: async () => {},
      take: async (msg) => void taken.push((msg as unknown as {data: string}).data),
      onPullError: (error) => errors.push(error.message),
    })
    loop.start()
    await until('the message taken after the retry', () => taken.length === 1)
    loop.stop()
    expect(errors).to.deep.equal(['JetStream not enabled'])
    expect(asked).to.have.length(2)
    expect(asked[1] - asked[0]).to.be.at.least(base.retryMs - 5)
  })

  it('hands back a message that arrives after stop() instead of taking it', async () => {
    let deliver!: () => void
    const consumer = {
      fetch: async () => {
        const batch = (async function* () {
          await new Promise<void>((resolve) => (deliver = resolve))
          yield fakeMsg('late')
        })()
        return Object.assign(batch, {close: async () => {}})
      },
    } as unknown as Consumer
    const taken: string[] = []
    const loop = new PullLoop({
      ...base,
      consumer: async () => consumer,
      hasRoom: () => true,
      roomFreed: async () => {},
      take: async (msg) => void taken.push((msg as unknown as {data: string}).data),
    })
    loop.start()
    await until('the pull to start', () => deliver !== undefined)
    loop.stop()
    deliver()
    await until('the late message handed back', () => nakked.includes('late'))
    expect(taken).to.deep.equal([])
  })
})
