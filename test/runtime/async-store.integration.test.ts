import {randomBytes} from 'node:crypto'
import {expect} from 'chai'

import {AsyncStore, DEFAULT_ASYNC_SETTINGS} from '../../src/runtime/async-store.js'
import {connectNats, type NatsConnection} from '../../src/runtime/nats.js'
import {startNats, type ServiceHandle} from '../helpers/services.js'

describe('AsyncStore against a real nats-server', function () {
  this.timeout(30_000)
  let nats: ServiceHandle
  let nc: NatsConnection
  let store: AsyncStore

  before(async () => {
    nats = await startNats()
    nc = await connectNats(nats.url, 'async store test')
    store = await AsyncStore.open(nc, {...DEFAULT_ASYNC_SETTINGS, readTimeoutMs: 2000})
  })

  after(async () => {
    await nc?.close()
    await nats?.stop()
  })

  it('ends a read of an input deleted while it is read instead of hanging (nats.js waits for purged chunks)', async () => {
    await store.putInput('racy', randomBytes(1024 * 1024))
    const read = store.getInput('racy').then(
      (data) => (data ? `read ${data.length} bytes` : 'null'),
      (error: Error) => error.message,
    )
    await store.deleteInput('racy')
    // Whichever way the race goes, the read ends: with the bytes, nothing, or the deadline's error.
    expect(await read).to.match(/^read 1048576 bytes$|^null$|took over 2000 ms/)
  })
})
