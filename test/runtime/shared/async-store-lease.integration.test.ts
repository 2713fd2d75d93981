/** The workers' lease is the consumer's ack wait, whichever daemon created the consumer first. */
import {expect} from 'chai'

import {AsyncStore, CALL_STREAM, DEFAULT_ASYNC_SETTINGS, WORKER_CONSUMER} from '../../../src/runtime/shared/async-store.js'
import {connectNats, type NatsConnection} from '../../../src/runtime/shared/nats.js'
import {startNats, type ServiceHandle} from '../../helpers/services.js'

describe('AsyncStore lease', function () {
  this.timeout(30_000)
  let nats: ServiceHandle
  let nc: NatsConnection

  before(async () => {
    nats = await startNats()
    nc = await connectNats(nats.url, 'lease-test')
  })

  after(async () => {
    await nc?.close()
    await nats?.stop()
  })

  it('takes the existing consumer ack wait, not its own setting, so renewals match what JetStream enforces', async () => {
    // A listener started first with a 6 s lease creates the consumer...
    const first = await AsyncStore.open(nc, {...DEFAULT_ASYNC_SETTINGS, leaseMs: 6000})
    expect(first.settings.leaseMs).to.equal(6000)
    // ...then a worker with the default 30 s: renewing every 10 s would let JetStream redeliver its running calls.
    const second = await AsyncStore.open(nc, {...DEFAULT_ASYNC_SETTINGS, leaseMs: 30_000})
    expect(second.settings.leaseMs).to.equal(6000)
    const info = await second.jsm.consumers.info(CALL_STREAM, WORKER_CONSUMER)
    expect(info.config.ack_wait).to.equal(6000 * 1_000_000)
  })
})
