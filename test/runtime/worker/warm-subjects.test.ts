import {expect} from 'chai'
import type {Subscription} from '@nats-io/transport-node'
import {setTimeout as sleep} from 'node:timers/promises'

import {warmSubject} from '../../../src/runtime/shared/protocol.js'
import {WarmSubjects} from '../../../src/runtime/worker/warm-subjects.js'

const LINGER_MS = 30

/** Records each subscription the warm subjects make, and which of them were drained. */
function fakeSubscriber() {
  const joined: string[] = []
  const drained: string[] = []
  const subscribe = (subject: string) => {
    joined.push(subject)
    return {drain: async () => void drained.push(subject)} as unknown as Subscription
  }
  return {joined, drained, subscribe}
}

/** Warm subjects started on a fake subscriber, with what they joined and drained. */
function startedWarm() {
  const {joined, drained, subscribe} = fakeSubscriber()
  const warm = new WarmSubjects(LINGER_MS)
  warm.start(subscribe)
  return {warm, joined, drained}
}

describe('worker: warm subjects', () => {
  it('joins nothing before start: no connection yet', () => {
    const warm = new WarmSubjects(LINGER_MS)
    warm.freeChanged('fn', 1)
    expect(warm.functions).to.deep.equal([])
  })

  it("joins a function's warm subject once while it has a free container, and leaves it a linger after it has none", async () => {
    const {warm, joined, drained} = startedWarm()
    warm.freeChanged('fn', 1)
    warm.freeChanged('fn', 2)
    expect(joined).to.deep.equal([warmSubject('fn')])
    warm.freeChanged('fn', 0)
    // Still there during the linger: a container free again soon costs no UNSUB and SUB.
    expect(warm.functions).to.deep.equal(['fn'])
    await sleep(LINGER_MS * 3)
    expect(warm.functions).to.deep.equal([])
    expect(drained).to.deep.equal([warmSubject('fn')])
    warm.freeChanged('fn', 1)
    expect(joined).to.deep.equal([warmSubject('fn'), warmSubject('fn')])
    await warm.close()
  })

  it('stays when a container is free again within the linger', async () => {
    const {warm, joined, drained} = startedWarm()
    warm.freeChanged('fn', 1)
    warm.freeChanged('fn', 0)
    warm.freeChanged('fn', 1)
    await sleep(LINGER_MS * 3)
    expect(warm.functions).to.deep.equal(['fn'])
    expect(joined).to.have.length(1)
    expect(drained).to.deep.equal([])
    await warm.close()
  })

  it('drains every warm subject on close, and joins none after', async () => {
    const {warm, joined, drained} = startedWarm()
    warm.freeChanged('a', 1)
    warm.freeChanged('b', 1)
    warm.freeChanged('b', 0)
    await warm.close()
    expect(drained.sort()).to.deep.equal([warmSubject('a'), warmSubject('b')])
    warm.freeChanged('c', 1)
    await sleep(LINGER_MS * 3)
    expect(joined).to.have.length(2)
    expect(warm.functions).to.deep.equal([])
    // The linger of b was cancelled: it is not drained a second time.
    expect(drained).to.have.length(2)
  })
})
