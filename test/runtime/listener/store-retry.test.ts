import {jserrors} from '@nats-io/jetstream/internal'
import {errors} from '@nats-io/transport-node'
import {expect} from 'chai'

import {untilStored} from '../../../src/runtime/listener/store-retry.js'

/** What nats.js's JetStream API throws when no server answers a request: no responders inside "not enabled". */
const leaderless = () => new jserrors.JetStreamNotEnabled('jetstream is not enabled', {cause: new errors.NoRespondersError('$JS.API.STREAM.MSG.GET.X')})

/** A write that fails with each of `failures` in turn, then answers "stored". */
function flaky(failures: Error[]) {
  let tries = 0
  return {
    write: async () => {
      tries++
      const failure = failures.shift()
      if (failure) throw failure
      return 'stored'
    },
    tries: () => tries,
  }
}

describe('untilStored: queueing through a JetStream leader election', () => {
  let clock = 0
  const retry = (jetStream: boolean, deadline = 10_000) => ({deadline, jetStream, retryMs: 250, now: () => clock, wait: async (ms: number) => (clock += ms)})
  beforeEach(() => (clock = 0))

  it('tries again while JetStream has no leader (no responders on a server that has JetStream)', async () => {
    const write = flaky([leaderless(), leaderless(), new errors.TimeoutError()])
    expect(await untilStored(write.write, retry(true))).to.equal('stored')
    expect(write.tries()).to.equal(4)
    expect(clock).to.equal(750)
  })

  it('gives up at once on a server without JetStream: no responders there is final', async () => {
    const write = flaky([leaderless()])
    const error = await untilStored(write.write, retry(false)).catch((e: Error) => e)
    expect(error).to.be.instanceOf(jserrors.JetStreamNotEnabled)
    expect(write.tries()).to.equal(1)
  })

  it('gives up at the deadline with the last error', async () => {
    const write = flaky(Array.from({length: 100}, () => leaderless()))
    const error = await untilStored(write.write, retry(true, 1000)).catch((e: Error) => e)
    expect(error).to.be.instanceOf(jserrors.JetStreamNotEnabled)
    expect(write.tries()).to.equal(4)
    expect(clock).to.equal(750)
  })

  it('does not try again after any other error (a refused write stays refused)', async () => {
    const write = flaky([new Error('maximum bytes exceeded')])
    expect(await untilStored(write.write, retry(true)).catch((e: Error) => e.message)).to.equal('maximum bytes exceeded')
    expect(write.tries()).to.equal(1)
  })
})
