import {expect} from 'chai'
import {BrokenCircuitError} from 'cockatiel'
import type {Etcd3} from 'etcd3'

import {FunctionCache} from '../../../src/runtime/listener/function-cache.js'
import {Registry} from '../../../src/runtime/listener/registry.js'
import {ampError} from '../../helpers/amp-error.js'

/** An etcd3 client whose every read fails with `error`, as etcd3's do while etcd is out of reach. */
function failingEtcd(error: Error): Etcd3 {
  const fail = async () => {
    throw error
  }
  return {getAll: () => ({prefix: () => ({exec: fail, strings: fail})})} as unknown as Etcd3
}

/** The real cache over the real Registry: what `amp fn ls` shows during an etcd outage. */
describe('FunctionCache on a Registry that cannot reach etcd', () => {
  let cache: FunctionCache | undefined
  afterEach(() => cache?.close())

  const unreachable = async (error: Error) => {
    cache = new FunctionCache(new Registry(failingEtcd(error)), {retryMinMs: 60_000})
    await cache.start()
    expect(cache.synced).to.equal(false)
    return ampError((async () => cache!.assertReachable())())
  }

  it('says "function registry (etcd) unavailable" once, with a plain reason for an open circuit breaker', async () => {
    const error = await unreachable(new BrokenCircuitError())
    expect(error.code).to.equal('registry_unavailable')
    expect(error.message).to.equal('function registry (etcd) unavailable: cannot read functions from etcd (no answer to several attempts in a row); retrying')
  })

  it("says etcd's own reason once, on one line", async () => {
    const error = await unreachable(new Error('14 UNAVAILABLE: No connection established\nmore detail'))
    expect(error.message).to.equal('function registry (etcd) unavailable: cannot read functions from etcd (14 UNAVAILABLE: No connection established); retrying')
  })

  it('the registry itself fails with the same one clause', async () => {
    const error = await ampError(new Registry(failingEtcd(new BrokenCircuitError())).list())
    expect(error.code).to.equal('registry_unavailable')
    expect(error.message).to.equal('function registry (etcd) unavailable: no answer to several attempts in a row')
    expect(error.cause).to.be.instanceOf(BrokenCircuitError)
  })
})
