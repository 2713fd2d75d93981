import {expect} from 'chai'

import {Slots} from '../../../src/runtime/worker/slots.js'
import {FakeClock} from '../../helpers/fake-clock.js'

/** Whether `promise` has settled after the microtasks queued so far ran; its value if so. */
async function settled<T>(promise: Promise<T>): Promise<{value?: T; done: boolean}> {
  const mark = Symbol('pending')
  const value = await Promise.race([promise, new Promise<typeof mark>((resolve) => setImmediate(() => resolve(mark)))])
  return value === mark ? {done: false} : {done: true, value: value as T}
}

describe('worker: slots', () => {
  it('gives a slot at once up to the concurrency, then lines calls up first come first served', async () => {
    const slots = new Slots(2)
    const first = slots.acquire()
    const second = slots.acquire()
    expect(await first.slot).to.equal(true)
    expect(await second.slot).to.equal(true)
    expect(slots.used).to.equal(2)
    const third = slots.acquire()
    const fourth = slots.acquire()
    expect((await settled(third.slot)).done).to.equal(false)
    slots.release()
    // The freed slot goes to the first call in line, not back: two still held.
    expect(await settled(third.slot)).to.deep.equal({done: true, value: true})
    expect((await settled(fourth.slot)).done).to.equal(false)
    expect(slots.used).to.equal(2)
    slots.release()
    expect(await settled(fourth.slot)).to.deep.equal({done: true, value: true})
    slots.release()
    slots.release()
    expect(slots.used).to.equal(0)
  })

  it('takes a call that leaves the line out of it: its slot resolves false and the next release skips it', async () => {
    const slots = new Slots(1)
    await slots.acquire().slot
    const leaving = slots.acquire()
    const staying = slots.acquire()
    leaving.leave()
    expect(await settled(leaving.slot)).to.deep.equal({done: true, value: false})
    slots.release()
    expect(await settled(staying.slot)).to.deep.equal({done: true, value: true})
    // Leaving again, or after the slot came, changes nothing.
    leaving.leave()
    staying.leave()
    expect(slots.used).to.equal(1)
    slots.release()
    expect(slots.used).to.equal(0)
  })

  it('has a free slot only beyond the containers still starting, with nobody in line, and not once draining', async () => {
    const slots = new Slots(2)
    expect(slots.hasFreeSlot()).to.equal(true)
    expect(slots.hasFreeSlot(1)).to.equal(true)
    expect(slots.hasFreeSlot(2)).to.equal(false)
    await slots.acquire().slot
    expect(slots.hasFreeSlot()).to.equal(true)
    expect(slots.hasFreeSlot(1)).to.equal(false)
    await slots.acquire().slot
    const waiting = slots.acquire()
    slots.release()
    await waiting.slot
    slots.release()
    expect(slots.hasFreeSlot()).to.equal(true)
    const queued = new Slots(1)
    await queued.acquire().slot
    const inLine = queued.acquire()
    queued.drain()
    queued.release()
    // Draining: a call already in line still gets its slot, yet none counts as free.
    expect(await settled(inLine.slot)).to.deep.equal({done: true, value: true})
    queued.release()
    expect(queued.used).to.equal(0)
    expect(queued.hasFreeSlot()).to.equal(false)
  })

  it('wakes slotFreed at the next release, or after a second at the latest', async () => {
    const clock = new FakeClock()
    const slots = new Slots(1, clock)
    await slots.acquire().slot
    const freed = slots.slotFreed()
    expect((await settled(freed)).done).to.equal(false)
    slots.release()
    expect((await settled(freed)).done).to.equal(true)
    expect(clock.pending, 'the safety net is cancelled').to.equal(0)
    const late = slots.slotFreed()
    clock.advance(999)
    expect((await settled(late)).done).to.equal(false)
    clock.advance(1)
    expect((await settled(late)).done).to.equal(true)
  })
})
