import {expect} from 'chai'

import {type Clock, drive, plan, SecondBudget, share} from '../../bench/perf-pacing.js'

/** A clock that only moves when the code under test sleeps, or a call takes time. */
class FakeClock implements Clock {
  t = 0
  now = () => this.t
  sleep = async (ms: number) => {
    this.t += ms
  }
}

describe('benchmark pacing (autocannon arithmetic for the raw docker rows)', () => {
  it('splits calls and rates over connections as autocannon does', () => {
    expect([0, 1, 2, 3].map((i) => share(10, 4, i))).to.deep.equal([3, 3, 2, 2])
    expect(plan(40, 4)).to.deep.equal({connections: 4, calls: [10, 10, 10, 10]})
    expect(plan(40, 1, 2)).to.deep.equal({connections: 1, calls: [40], rates: [2]})
    // A rate below the connections lowers the connections to the rate.
    expect(plan(9, 4, 3)).to.deep.equal({connections: 3, calls: [3, 3, 3], rates: [1, 1, 1]})
    expect(() => plan(3, 4)).to.throw(RangeError)
  })

  it('lets `rate` calls through per one-second window, back to back, then waits for the next window', async () => {
    const clock = new FakeClock()
    const budget = new SecondBudget(2, clock)
    const starts: number[] = []
    for (let i = 0; i < 5; i++) {
      await budget.take()
      starts.push(clock.t)
      clock.t += 300 // the call
    }
    expect(starts).to.deep.equal([0, 300, 1000, 1300, 2000])
  })

  it('does not bank a budget across windows: a slow call does not earn a burst afterwards', async () => {
    const clock = new FakeClock()
    const budget = new SecondBudget(2, clock)
    await budget.take()
    clock.t += 2500 // one call much slower than the pace
    const starts: number[] = []
    for (let i = 0; i < 3; i++) {
      await budget.take()
      starts.push(clock.t)
      clock.t += 100
    }
    expect(starts).to.deep.equal([2500, 2600, 3000])
  })

  it('drives each connection one call at a time, for its share of the calls', async () => {
    const clock = new FakeClock()
    let running = 0
    let most = 0
    let calls = 0
    await drive(plan(10, 4), async () => {
      running++
      most = Math.max(most, running)
      await new Promise((resolve) => setImmediate(resolve))
      running--
      calls++
    }, clock)
    expect(calls).to.equal(10)
    expect(most).to.equal(4)
  })
})
