import {expect} from 'chai'

import {BusyLines} from '../../../src/runtime/listener/busy-lines.js'

const never = new Promise<void>(() => {})

describe('busy lines: calls waiting for a worker, per function, in order', () => {
  it('gives the turn to the first, then to the next as each leaves, in order of joining', async () => {
    const lines = new BusyLines()
    const [a, b, c] = [lines.join('f'), lines.join('f'), lines.join('f')]
    expect(await a.turn(1000, never)).to.equal(true)
    expect(await b.turn(20, never), 'not first yet').to.equal(false)
    a.leave()
    expect(await b.turn(1000, never)).to.equal(true)
    b.leave()
    expect(await c.turn(1000, never)).to.equal(true)
    c.leave()
    expect(lines.waiting('f'), 'an empty line is gone').to.equal(false)
  })

  it('skips a call that leaves from the middle, and keeps one line per function', async () => {
    const lines = new BusyLines()
    const [a, b, c] = [lines.join('f'), lines.join('f'), lines.join('f')]
    const other = lines.join('g')
    expect(await other.turn(1000, never), 'first of its own line').to.equal(true)
    b.leave()
    a.leave()
    expect(await c.turn(1000, never)).to.equal(true)
    expect(lines.waiting('f')).to.equal(true)
    c.leave()
    c.leave()
    expect(lines.waiting('f')).to.equal(false)
    expect(lines.waiting('g')).to.equal(true)
  })

  it('stops waiting for its turn when the call ends', async () => {
    const lines = new BusyLines()
    lines.join('f')
    const waiting = lines.join('f')
    let end!: () => void
    const ended = new Promise<void>((resolve) => (end = resolve))
    const started = Date.now()
    const turn = waiting.turn(10_000, ended)
    setTimeout(end, 20)
    expect(await turn).to.equal(false)
    expect(Date.now() - started).to.be.below(1000)
  })
})
