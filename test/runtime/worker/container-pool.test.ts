import {expect} from 'chai'

import {BACKOFF_BASE_MS, ContainerPool, DEMAND_WINDOW_MS, MIN_WARM, type Prestarted} from '../../../src/runtime/worker/container-pool.js'

interface Settings {
  function: string
  env: string
}

class FakeContainer implements Prestarted {
  readonly exited: Promise<void>
  exit!: () => void
  ready?: Promise<void>
  run?: () => void
  abandoned = false
  abandon(): void {
    this.abandoned = true
    this.exit()
  }

  constructor(readonly name: string, readonly settings: Settings) {
    this.exited = new Promise((resolve) => (this.exit = resolve))
  }
}

/** A pool over fake containers and a clock the test moves; removing a container ends it, as docker rm --force does. */
function setup(options: {max?: number; idleMs?: number; failStart?: boolean; withReady?: boolean} = {}) {
  let clock = 1_000_000
  // The engine's room as the worker would report it: the pool's own starts in progress are passed in.
  let room = (starting: number) => starting < 100
  const asked: number[] = []
  let count = 0
  const started: FakeContainer[] = []
  const removals: string[][] = []
  const pool = new ContainerPool<FakeContainer, Settings>(
    {
      start: (settings) => {
        if (options.failStart) throw new Error('no room')
        const container = new FakeContainer(`amp-${++count}`, settings)
        if (options.withReady) container.ready = new Promise((resolve) => (container.run = resolve))
        started.push(container)
        return container
      },
      remove: async (names) => {
        removals.push(names)
        for (const container of started) if (names.includes(container.name)) container.exit()
      },
      now: () => clock,
    },
    {
      max: options.max ?? 4,
      idleMs: options.idleMs ?? 60_000,
      removeRetryMs: 5,
      canStart: (starting) => {
        asked.push(starting)
        return room(starting)
      },
      // Synchronous: a top-up after a call is visible as soon as done() returns.
      defer: (task) => task(),
    },
  )
  return {
    pool,
    asked,
    setRoom: (next: (starting: number) => boolean) => (room = next),
    started,
    removals,
    removed: () => removals.flat(),
    tick: (ms: number) => (clock += ms),
  }
}

const A: Settings = {function: 'a', env: 'X=1'}
const B: Settings = {function: 'b', env: ''}
const settle = () => new Promise((resolve) => setImmediate(resolve))

describe('ContainerPool', () => {
  it('starts two containers once the first call (which runs cold) is over, and gives the oldest to the next call', () => {
    const {pool, started} = setup()
    const first = pool.take('ka', A, 2)
    expect(first.container).to.equal(undefined)
    // Nothing starts while the call runs: a start would compete with it for the engine.
    expect(started).to.have.length(0)
    first.done()
    expect(started).to.have.length(2)
    const second = pool.take('ka', A, 2)
    expect(second.container).to.equal(started[0])
    expect(started).to.have.length(2)
    second.done()
    // Its replacement once it is over: one ready, one starting.
    expect(started).to.have.length(3)
    expect(pool.idleOf('ka')).to.equal(2)
  })

  it('keeps one container for a function whose prestart is 1', () => {
    const {pool, started} = setup()
    pool.take('ka', A, 1).done()
    expect(started).to.have.length(1)
    expect(pool.target('ka')).to.equal(1)
  })

  it('gives each container to exactly one call: two calls at once never share one', () => {
    const {pool} = setup()
    pool.take('ka', A, 4).done()
    const one = pool.take('ka', A, 4)
    const two = pool.take('ka', A, 4)
    expect(one.container).to.not.equal(undefined)
    expect(two.container).to.not.equal(undefined)
    expect(one.container).to.not.equal(two.container)
  })

  it('grows to the number of calls that ran at once recently, within prestart and the worker-wide cap', () => {
    const {pool} = setup({max: 3})
    const calls = [pool.take('ka', A, 16), pool.take('ka', A, 16), pool.take('ka', A, 16), pool.take('ka', A, 16)]
    // Peak 4 at once, but the cap is 3.
    expect(pool.target('ka')).to.equal(3)
    for (const call of calls) call.done()
    expect(pool.idle).to.equal(3)

    const small = setup({max: 8})
    const held = [small.pool.take('ka', A, 2), small.pool.take('ka', A, 2), small.pool.take('ka', A, 2)]
    expect(small.pool.target('ka')).to.equal(2)
    for (const call of held) call.done()
    expect(small.pool.idle).to.equal(2)
  })

  it('shrinks its target back to two when the burst is older than the demand window', () => {
    const {pool, tick} = setup({max: 8})
    const burst = [pool.take('ka', A, 8), pool.take('ka', A, 8), pool.take('ka', A, 8)]
    for (const call of burst) call.done()
    expect(pool.target('ka')).to.equal(3)
    tick(DEMAND_WINDOW_MS + 1)
    expect(pool.target('ka')).to.equal(MIN_WARM)
  })

  it('keeps the cap across keys: idle containers of all functions together stay within --prestart-max', () => {
    const {pool} = setup({max: 2})
    for (const key of ['k1', 'k2', 'k3']) pool.take(key, {function: key, env: ''}, 2).done()
    expect(pool.idle).to.equal(2)
    expect(pool.idleOf('k3')).to.equal(0)
  })

  // prestart 1 below: one container per key keeps the counts simple.
  it('never gives a call a container started for other settings (keys are separate)', () => {
    const {pool, started} = setup()
    pool.take('ka', A, 1).done()
    const other = pool.take('kb', B, 1)
    expect(other.container).to.equal(undefined)
    other.done()
    const again = pool.take('kb', B, 1)
    expect(again.container?.settings).to.deep.equal(B)
    expect(started.filter((container) => container.settings === A)).to.have.length(1)
  })

  it('starts nothing for prestart 0, and drops the pool of a function whose prestart became 0', async () => {
    const {pool, started, removed} = setup()
    pool.take('ka', A, 0).done()
    expect(started).to.have.length(0)
    pool.take('kb', B, 1).done()
    expect(pool.idleOf('kb')).to.equal(1)
    const call = pool.take('kb', B, 0)
    expect(call.container).to.equal(undefined)
    await settle()
    expect(pool.idleOf('kb')).to.equal(0)
    expect(removed()).to.deep.equal([started[0].name])
  })

  it('starts nothing when the worker cap is 0', () => {
    const {pool, started} = setup({max: 0})
    expect(pool.take('ka', A, 2).container).to.equal(undefined)
    expect(started).to.have.length(0)
  })

  it('drops and removes a container that exits before use, backs off that key, and lets calls run fresh', async () => {
    const {pool, started, removed, tick} = setup()
    pool.take('ka', A, 1).done()
    started[0].exit()
    await settle()
    expect(removed()).to.deep.equal([started[0].name])
    expect(pool.idleOf('ka')).to.equal(0)
    // Backing off: the next call runs fresh and no container is started for it.
    const fresh = pool.take('ka', A, 1)
    expect(fresh.container).to.equal(undefined)
    fresh.done()
    expect(started).to.have.length(1)
    tick(BACKOFF_BASE_MS)
    pool.take('ka', A, 1).done()
    expect(started).to.have.length(2)
    // Failing again doubles the pause.
    started[1].exit()
    await settle()
    tick(BACKOFF_BASE_MS)
    pool.take('ka', A, 1).done()
    expect(started).to.have.length(2)
    tick(BACKOFF_BASE_MS)
    pool.take('ka', A, 1).done()
    expect(started).to.have.length(3)
  })

  it('backs off when a container cannot even be started', () => {
    const {pool, asked} = setup({failStart: true})
    expect(() => pool.take('ka', A, 2).done()).to.not.throw()
    expect(pool.idle).to.equal(0)
    // Backing off: a second call's end does not try again at once.
    const tries = asked.length
    pool.take('ka', A, 2).done()
    expect(asked).to.have.length(tries)
  })

  it('starts nothing while the engine has no room (a saturated worker), and tops up once it has', () => {
    const {pool, started, setRoom, tick} = setup()
    setRoom(() => false)
    pool.take('ka', A, 2).done()
    tick(10)
    pool.take('kb', B, 2).done()
    expect(started).to.have.length(0)
    setRoom(() => true)
    // The owner's timer; the most recently called function comes first.
    pool.topUp()
    expect(started.map((container) => container.settings.function)).to.deep.equal(['b', 'b', 'a', 'a'])
  })

  it('counts its own starts in progress against the room, until each container runs', async () => {
    const {pool, started, asked, setRoom} = setup({withReady: true})
    // Room for one start at a time.
    setRoom((starting) => starting < 1)
    pool.take('ka', A, 2).done()
    expect(started).to.have.length(1)
    expect(asked).to.deep.equal([0, 1])
    // Running: its start is over, and the next one begins.
    started[0].run!()
    await settle()
    expect(started).to.have.length(2)
    // A container that exits before it ever ran frees its place too.
    started[1].exit()
    await settle()
    expect(asked.at(-1)).to.equal(0)
  })

  it('removes the containers of a key without a call for --prestart-idle', async () => {
    const {pool, started, removed, tick} = setup({idleMs: 60_000})
    pool.take('ka', A, 1).done()
    pool.take('kb', B, 1).done()
    tick(30_000)
    pool.take('kb', B, 1).done()
    tick(30_000)
    await pool.sweep()
    expect(removed()).to.deep.equal([started[0].name])
    expect(pool.idleOf('ka')).to.equal(0)
    expect(pool.idleOf('kb')).to.equal(1)
  })

  it('starts nothing for a key idle past --prestart-idle, even while one of its calls still runs', async () => {
    const {pool, started, tick} = setup({idleMs: 60_000})
    const long = pool.take('ka', A, 2)
    tick(60_000)
    await pool.sweep()
    pool.topUp()
    expect(started).to.have.length(0)
    long.done()
    expect(started).to.have.length(0)
    // A new call makes it live again.
    pool.take('ka', A, 2).done()
    expect(started).to.have.length(2)
  })

  it('drains the pools of a changed function at once, and no other', async () => {
    const {pool, started, removed} = setup()
    pool.take('ka-old', A, 1).done()
    pool.take('kb', B, 1).done()
    await pool.drain('a')
    expect(removed()).to.deep.equal([started[0].name])
    expect(pool.idleOf('ka-old')).to.equal(0)
    expect(pool.idleOf('kb')).to.equal(1)
  })

  it('on close removes every idle container in one removal, and starts no more', async () => {
    const {pool, started, removals} = setup()
    pool.take('ka', A, 2).done()
    pool.take('kb', B, 2).done()
    const running = pool.take('ka', A, 2)
    await pool.close()
    expect(removals).to.have.length(1)
    expect(removals[0]).to.have.members(started.filter((container) => container !== running.container).map((container) => container.name))
    expect(pool.idle).to.equal(0)
    const count = started.length
    running.done()
    expect(pool.take('ka', A, 2).container).to.equal(undefined)
    expect(started).to.have.length(count)
  })

  it('removes again a container whose docker run was still creating it when the first removal ran', async () => {
    let created = false
    const removals: string[][] = []
    let container!: FakeContainer
    const pool = new ContainerPool<FakeContainer, Settings>(
      {
        start: (settings) => (container = new FakeContainer('amp-late', settings)),
        remove: async (names) => {
          removals.push(names)
          // The first removal finds nothing (not created yet); by the second the container exists, and goes.
          if (created) container.exit()
          created = true
        },
      },
      {max: 2, idleMs: 60_000, removeRetryMs: 5, defer: (task) => task()},
    )
    pool.take('ka', A, 2).done()
    await pool.close()
    expect(removals.length).to.be.at.least(2)
    expect(removals.at(-1)).to.deep.equal(['amp-late'])
    expect(container.abandoned).to.equal(false)
  })

  it('gives up on a container that no removal ends (engine not answering): ends its docker CLI so close() returns', async () => {
    const removals: string[][] = []
    let container!: FakeContainer
    const pool = new ContainerPool<FakeContainer, Settings>(
      {start: (settings) => (container = new FakeContainer('amp-stuck', settings)), remove: async (names) => void removals.push(names)},
      {max: 2, idleMs: 60_000, removeRetryMs: 1, defer: (task) => task()},
    )
    pool.take('ka', A, 2).done()
    await pool.close()
    expect(container.abandoned).to.equal(true)
    expect(removals.length).to.be.greaterThan(1)
  })
})
