import {expect} from 'chai'
import {Etcd3} from 'etcd3'

import {Registry, functionKey} from '../../../src/runtime/listener/registry.js'
import {probeEtcd} from '../../../src/runtime/ops/servers.js'
import {startEtcd, type ServiceHandle} from '../../helpers/services.js'
import {ampError} from '../../helpers/amp-error.js'
import {waitFor, waitUntil} from '../../helpers/wait.js'

const spec = (name: string, image = 'busybox:1.36') => ({name, image, timeoutMs: 30_000, network: 'none', memoryBytes: 256 * 1024 * 1024, cpus: 1, pidsLimit: 256, env: {}, fireAndForget: false, retries: 2, prestart: 2, reuse: false, reuseMaxCalls: 1000})


describe('Registry against etcd (integration)', function () {
  this.timeout(60_000)
  let etcd: ServiceHandle
  let registry: Registry
  let raw: Etcd3
  let clock: number

  before(async () => {
    etcd = await startEtcd()
    raw = new Etcd3({hosts: etcd.url})
  })
  after(async () => {
    raw?.close()
    await etcd?.stop()
  })

  beforeEach(async () => {
    await raw.delete().all()
    clock = Date.UTC(2024, 0, 1)
    // A clock that moves one second per reading, so createdAt and updatedAt can be told apart.
    registry = new Registry(new Etcd3({hosts: etcd.url}), () => new Date((clock += 1000)))
  })
  afterEach(() => registry.close())

  it('creates a function, stores it under its documented key, and reads it back', async () => {
    const {spec: created, created: isNew} = await registry.put(spec('echo'), false)
    expect(isNew).to.equal(true)
    expect(created).to.deep.equal({
      ...spec('echo'),
      createdAt: '2024-01-01T00:00:01.000Z',
      updatedAt: '2024-01-01T00:00:01.000Z',
    })
    expect(JSON.parse((await raw.get('/amp/v1/functions/echo').string())!)).to.deep.equal(created)
    expect(functionKey('echo')).to.equal('/amp/v1/functions/echo')
    expect(await registry.get('echo')).to.deep.equal(created)
  })

  it('reads a function stored before limits and env existed with the defaults (and lists it so)', async () => {
    const old = {name: 'old', image: 'busybox:1', timeoutMs: 5000, network: 'none', createdAt: 'c', updatedAt: 'u'}
    await raw.put(functionKey('old')).value(JSON.stringify(old))
    const defaults = {memoryBytes: 256 * 1024 * 1024, cpus: 1, pidsLimit: 256, env: {}, fireAndForget: false, retries: 2, prestart: 2, reuse: false, reuseMaxCalls: 1000}
    expect(await registry.get('old')).to.deep.equal({...old, ...defaults})
    expect(await registry.list()).to.deep.equal([{...old, ...defaults}])
  })

  it('stores the environment with its values, merges env patches and refuses one that makes it too large', async () => {
    await registry.put({...spec('env'), env: {KEEP: 'k', DROP: 'd'}}, false)
    const updated = await registry.update('env', {env: {DROP: null, ADD: 'a=b'}, cpus: 0.5})
    expect(updated).to.include({cpus: 0.5})
    expect(updated?.env).to.deep.equal({KEEP: 'k', ADD: 'a=b'})
    expect(JSON.parse((await raw.get(functionKey('env')).string())!).env).to.deep.equal({KEEP: 'k', ADD: 'a=b'})
    const error = await ampError(registry.update('env', {env: {BIG: 'x'.repeat(40 * 1024)}}))
    expect(error.code).to.equal('bad_request')
    expect((await registry.get('env'))?.env).to.deep.equal({KEEP: 'k', ADD: 'a=b'})
  })

  it('refuses an update that leaves reuse without prestart, keeping the function as it was', async () => {
    await registry.put({...spec('warm'), reuse: true}, false)
    const error = await ampError(registry.update('warm', {prestart: 0}))
    expect(error.code).to.equal('bad_request')
    expect(error.message).to.match(/^reuse needs prestart of at least 1/)
    expect(await registry.get('warm')).to.include({reuse: true, prestart: 2})
    expect(await registry.update('warm', {reuse: false, reuseMaxCalls: 50})).to.include({reuse: false, reuseMaxCalls: 50, prestart: 2})
  })

  it('returns undefined for a function that does not exist', async () => {
    expect(await registry.get('nope')).to.equal(undefined)
  })

  it('refuses to create a name that exists, leaving the stored function as it was', async () => {
    const {spec: first} = await registry.put(spec('echo', 'busybox:1'), false)
    const error = await ampError(registry.put(spec('echo', 'busybox:2'), false))
    expect(error.code).to.equal('function_exists')
    expect(error.exit).to.equal(103)
    expect(error.message).to.contain('echo')
    expect(error.suggestions.join(' ')).to.contain('--replace')
    expect(await registry.get('echo')).to.deep.equal(first)
  })

  it('lets exactly one of many racing creates of the same name win', async () => {
    const outcomes = await Promise.allSettled(
      Array.from({length: 10}, (_, i) => registry.put(spec('race', `busybox:${i}`), false)),
    )
    const won = outcomes.filter((outcome) => outcome.status === 'fulfilled')
    expect(won).to.have.length(1)
    for (const lost of outcomes.filter((outcome) => outcome.status === 'rejected')) {
      expect((lost as PromiseRejectedResult).reason.code).to.equal('function_exists')
    }
    const stored = await registry.get('race')
    expect(stored?.image).to.equal((won[0] as PromiseFulfilledResult<{spec: {image: string}}>).value.spec.image)
  })

  it('replaces a function on request, keeping createdAt and moving updatedAt', async () => {
    const {spec: first} = await registry.put(spec('echo', 'busybox:1'), false)
    const {spec: second, created} = await registry.put({...spec('echo', 'busybox:2'), timeoutMs: 500}, true)
    expect(created).to.equal(false)
    expect(second.image).to.equal('busybox:2')
    expect(second.timeoutMs).to.equal(500)
    expect(second.createdAt).to.equal(first.createdAt)
    expect(second.updatedAt > first.updatedAt).to.equal(true)
    expect(await registry.get('echo')).to.deep.equal(second)
  })

  it('creates on replace when the name is new', async () => {
    const {spec: created, created: isNew} = await registry.put(spec('fresh'), true)
    expect(isNew).to.equal(true)
    expect(created.createdAt).to.equal(created.updatedAt)
  })

  it('lists the functions sorted by name, and only functions', async () => {
    for (const name of ['zeta', 'alpha', 'a-b', 'b0', 'a1']) await registry.put(spec(name), false)
    await raw.put('/amp/v1/other').value('not a function')
    await raw.put('/amp/v1/functionsx').value('not a function either')
    const names = (await registry.list()).map((fn) => fn.name)
    expect(names).to.deep.equal(['a-b', 'a1', 'alpha', 'b0', 'zeta'])
  })

  it('lists nothing when there are no functions', async () => {
    expect(await registry.list()).to.deep.equal([])
  })

  it('removes a function and returns what it was, then undefined', async () => {
    const {spec: created} = await registry.put(spec('echo'), false)
    await registry.put(spec('keep'), false)
    expect(await registry.remove('echo')).to.deep.equal(created)
    expect(await registry.get('echo')).to.equal(undefined)
    expect(await registry.remove('echo')).to.equal(undefined)
    expect((await registry.list()).map((fn) => fn.name)).to.deep.equal(['keep'])
  })

  it('does not remove a function whose name merely starts with the given one', async () => {
    await registry.put(spec('echo-two'), false)
    expect(await registry.remove('echo')).to.equal(undefined)
    expect(await registry.get('echo-two')).to.not.equal(undefined)
  })

  describe('update', () => {
    it('changes only the given settings in place, keeping createdAt and moving updatedAt', async () => {
      const {spec: first} = await registry.put({...spec('echo', 'busybox:1'), timeoutMs: 500, network: 'bridge'}, false)
      const updated = await registry.update('echo', {image: 'busybox:2'})
      expect(updated).to.deep.equal({...first, image: 'busybox:2', updatedAt: '2024-01-01T00:00:02.000Z'})
      expect(JSON.parse((await raw.get('/amp/v1/functions/echo').string())!)).to.deep.equal(updated)
      const again = await registry.update('echo', {timeoutMs: 2000, network: 'none'})
      expect(again).to.deep.include({image: 'busybox:2', timeoutMs: 2000, network: 'none', createdAt: first.createdAt})
    })

    it('returns undefined for a function that does not exist, and creates nothing', async () => {
      expect(await registry.update('nope', {image: 'busybox:2'})).to.equal(undefined)
      expect(await raw.get('/amp/v1/functions/nope').string()).to.equal(null)
    })

    it('keeps every one of concurrent updates of different settings (none is lost)', async () => {
      for (let round = 0; round < 5; round++) {
        await registry.put(spec('echo', 'busybox:1'), true)
        await Promise.all([
          registry.update('echo', {image: `busybox:${round + 2}`}),
          registry.update('echo', {timeoutMs: 1000 + round}),
          registry.update('echo', {network: `net${round}`}),
        ])
        expect(await registry.get('echo'), `round ${round}`).to.deep.include({
          image: `busybox:${round + 2}`,
          timeoutMs: 1000 + round,
          network: `net${round}`,
        })
      }
    })

    it('never brings back a function removed while it was being updated', async () => {
      for (let round = 0; round < 10; round++) {
        await registry.put(spec('echo'), true)
        const updates = Array.from({length: 5}, (_, i) => registry.update('echo', {image: `busybox:${i}`}))
        await Promise.all([...updates, registry.remove('echo'), ...updates.map(() => registry.update('echo', {timeoutMs: 1000}))])
        expect(await registry.get('echo'), `round ${round}`).to.equal(undefined)
      }
    })
  })

  it('answers ping while etcd runs', async () => {
    expect(await registry.ping()).to.equal(true)
  })

  describe('when etcd is down', () => {
    // Registry.connect is what the listener uses: its deadlines are what keep a request from hanging.
    let connected: Registry

    beforeEach(async () => {
      connected = Registry.connect([etcd.url])
      await connected.put(spec('echo'), false)
    })
    afterEach(async () => {
      connected.close()
      etcd.kill('SIGCONT')
      await etcd.restart()
    })

    /** Waits until the killed etcd no longer answers on its port. */
    const etcdGone = () => waitUntil('etcd to stop answering', async () => (await probeEtcd(etcd.url, 500)) === 'unreachable', 5000, 50)

    async function expectUnavailable(operation: () => Promise<unknown>): Promise<void> {
      const started = Date.now()
      const error = await ampError(operation())
      const elapsed = Date.now() - started
      if (process.env.AMP_TEST_TIMING) console.log(`      ${elapsed} ms: ${error.message}`)
      expect(error.code).to.equal('registry_unavailable')
      expect(error.exit).to.equal(108)
      expect(error.message).to.contain('etcd')
      expect(elapsed, 'fails within a few seconds, not hanging').to.be.below(6000)
    }

    it('fails every operation with registry_unavailable within a few seconds when etcd has stopped', async () => {
      etcd.kill('SIGKILL')
      await etcdGone()
      await expectUnavailable(() => connected.get('echo'))
      await expectUnavailable(() => connected.list())
      await expectUnavailable(() => connected.put(spec('other'), false))
      await expectUnavailable(() => connected.remove('echo'))
      await expectUnavailable(() => connected.update('echo', {image: 'busybox:2'}))
      expect(await connected.ping()).to.equal(false)
    })

    it('fails with registry_unavailable within a few seconds when etcd hangs', async () => {
      await etcd.hang()
      await expectUnavailable(() => connected.get('echo'))
      await expectUnavailable(() => connected.list())
      const started = Date.now()
      expect(await connected.ping()).to.equal(false)
      expect(Date.now() - started).to.be.below(6000)
    })

    it('works again once etcd is back', async () => {
      etcd.kill('SIGKILL')
      await etcdGone()
      await expectUnavailable(() => connected.get('echo'))
      await etcd.restart()
      let last = ''
      const found = await waitFor(() => `the registry to read echo again (last: ${last})`, () => connected.get('echo').then(
        (stored) => stored ?? void (last = 'not found'),
        (error: Error) => void (last = error.message),
      ), 15_000, 250)
      expect(found.name).to.equal('echo')
    })
  })
})
