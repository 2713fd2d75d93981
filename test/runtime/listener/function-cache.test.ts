import {setTimeout as sleep} from 'node:timers/promises'
import {expect} from 'chai'

import {failFast, FunctionCache, type FunctionSource, type FunctionWatch, type RegistryApi} from '../../../src/runtime/listener/function-cache.js'
import {storedFunction, type StoredFunction} from '../../../src/runtime/shared/function-spec.js'
import {waitFor} from '../../helpers/wait.js'
import {ampError} from '../../helpers/amp-error.js'

const spec = (name: string, image = 'img:1'): StoredFunction =>
  storedFunction({
    name,
    image,
    timeoutMs: 30_000,
    network: 'none',
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:00:00.000Z',
  })

/** etcd as the cache sees it: a snapshot to read (or a failure), and the watches it opened. */
class FakeSource implements FunctionSource {
  specs: StoredFunction[] = []
  revision = 10
  down = false
  snapshots = 0
  watches: Array<{from: string; on: FunctionWatch; stopped: boolean}> = []

  async snapshot() {
    this.snapshots++
    if (this.down) throw new Error('connect ECONNREFUSED')
    return {specs: [...this.specs], revision: String(this.revision)}
  }

  follow(revision: string, on: FunctionWatch) {
    const watch = {from: revision, on, stopped: false}
    this.watches.push(watch)
    return {stop: () => (watch.stopped = true)}
  }

  get watch() {
    return this.watches.at(-1)!
  }
}

describe('FunctionCache', () => {
  let source: FakeSource
  let cache: FunctionCache

  beforeEach(() => {
    source = new FakeSource()
    cache = new FunctionCache(source, {retryMinMs: 5, retryMaxMs: 20})
  })

  afterEach(() => cache.close())

  it('reads every function, then follows changes from the revision it read', async () => {
    source.specs = [spec('a'), spec('b')]
    await cache.start()
    expect(cache.synced).to.equal(true)
    expect(cache.lookup('a')).to.deep.equal(spec('a'))
    expect(source.watch.from).to.equal('10')
    source.watch.on.put(spec('c'))
    source.watch.on.put(spec('a', 'img:2'))
    source.watch.on.delete('b')
    expect(cache.lookup('c')).to.deep.equal(spec('c'))
    expect(cache.lookup('a')?.image).to.equal('img:2')
    expect(cache.lookup('b')).to.equal(undefined)
  })

  it('keeps serving what it knows when the watch breaks, and says etcd is out of reach', async () => {
    source.specs = [spec('a')]
    await cache.start()
    source.down = true
    source.watch.on.lost(new Error('stream ended'))
    expect(cache.synced).to.equal(false)
    expect(cache.lookup('a')).to.deep.equal(spec('a'))
    const error = await ampError((async () => cache.assertReachable())())
    expect(error.code).to.equal('registry_unavailable')
    expect(error.message).to.match(/^function registry \(etcd\) unavailable: lost the watch on etcd \(stream ended\)/)
  })

  it('reads everything again once etcd is back: what was removed or changed meanwhile is not served stale', async () => {
    source.specs = [spec('a'), spec('gone')]
    await cache.start()
    const first = source.watch
    source.down = true
    first.on.lost(new Error('cut'))
    expect(first.stopped).to.equal(true)
    await waitFor('a failed retry', async () => (source.snapshots >= 3 ? true : undefined), 2000, 5)
    source.specs = [spec('a', 'img:2')]
    source.revision = 42
    source.down = false
    await waitFor('the cache in sync again', async () => (cache.synced ? true : undefined), 2000, 5)
    expect(cache.lookup('gone')).to.equal(undefined)
    expect(cache.lookup('a')?.image).to.equal('img:2')
    expect(source.watch.from).to.equal('42')
    // A late event of the broken watch must not undo the fresh read.
    first.on.put(spec('gone'))
    expect(cache.lookup('gone')).to.equal(undefined)
  })

  it('keeps trying when etcd is down at start, and serves once it answers', async () => {
    source.down = true
    await cache.start()
    expect(cache.synced).to.equal(false)
    expect((await ampError((async () => cache.assertReachable())())).code).to.equal('registry_unavailable')
    source.specs = [spec('a')]
    source.down = false
    await waitFor('the first read', async () => (cache.synced ? true : undefined), 2000, 5)
    expect(cache.lookup('a')).to.deep.equal(spec('a'))
  })

  it('stops retrying and watching when closed', async () => {
    await cache.start()
    cache.close()
    expect(source.watch.stopped).to.equal(true)
    const reads = source.snapshots
    await sleep(50) // a gap in which a read after close() would show
    expect(source.snapshots).to.equal(reads)
  })
})

describe('failFast', () => {
  it('answers 503 without asking etcd while the cache is out of sync, and asks it otherwise', async () => {
    let asked = 0
    const registry = {list: async () => (asked++, [spec('a')])} as unknown as RegistryApi
    let reachable = false
    const guarded = failFast(registry, {
      assertReachable() {
        if (!reachable) throw new Error('etcd down')
      },
    })
    let failure: unknown
    await guarded.list().catch((error: unknown) => (failure = error))
    expect((failure as Error).message).to.equal('etcd down')
    expect(asked).to.equal(0)
    reachable = true
    expect(await guarded.list()).to.deep.equal([spec('a')])
    expect(asked).to.equal(1)
  })
})
