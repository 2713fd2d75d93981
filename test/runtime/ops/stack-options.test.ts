import {expect} from 'chai'

import {EXPECTED_AUTH, EXPECTED_ETCD_AUTH, EXPECTED_NATS_AUTH, GIVEN_ETCD_CREDENTIALS, GIVEN_NATS_CREDENTIALS, GIVEN_TOKENS, NO_AUTH, NO_ETCD_AUTH, NO_NATS_AUTH} from '../../helpers/given-credentials.js'
import {type ConfigKey, type GivenSettings, isSet, resolveSettings} from '../../../src/runtime/shared/config.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {stackOptionsFrom} from '../../../src/runtime/ops/stack-options.js'

/** The options amp up would pass for these flags and config file. */
function optionsFor(given: GivenSettings, file = {}) {
  return stackOptionsFrom(resolveSettings(given, file), {
    dataDir: '/var/lib/amp-test',
    logger: silentLogger,
    isSet: (key: ConfigKey) => isSet(key, given, file),
  })
}

describe('stackOptionsFrom', () => {
  it('puts each amp up setting in its option (each value distinct, so a swap shows)', () => {
    const options = optionsFor({
      host: '0.0.0.0',
      port: 8080,
      nats: 'nats://10.0.0.5:4222',
      etcd: ['http://e1:2379', 'http://e2:2379'],
      concurrency: 16,
      'max-inflight': 9,
      docker: '/usr/local/bin/docker',
      pull: 'always',
      ...GIVEN_TOKENS,
      ...GIVEN_NATS_CREDENTIALS,
      ...GIVEN_ETCD_CREDENTIALS,
    })
    expect(options).to.deep.equal({
      dataDir: '/var/lib/amp-test',
      host: '0.0.0.0',
      port: 8080,
      nats: 'nats://10.0.0.5:4222',
      // One comma-separated string, as the stack takes it.
      etcd: 'http://e1:2379,http://e2:2379',
      concurrency: 16,
      maxInFlight: 9,
      docker: '/usr/local/bin/docker',
      pull: 'always',
      auth: EXPECTED_AUTH,
      natsAuth: EXPECTED_NATS_AUTH,
      etcdAuth: EXPECTED_ETCD_AUTH,
      logger: silentLogger,
    })
  })

  it('leaves out NATS and etcd unless given, so the stack checks its default addresses and may start servers there', () => {
    const options = optionsFor({})
    expect(options.nats).to.equal(undefined)
    expect(options.etcd).to.equal(undefined)
    expect(options).to.include({host: '127.0.0.1', port: 4242, concurrency: 4, maxInFlight: 64, docker: 'docker', pull: 'missing'})
    expect(options.auth).to.deep.equal(NO_AUTH)
    expect(options.natsAuth).to.deep.equal(NO_NATS_AUTH)
    expect(options.etcdAuth).to.deep.equal(NO_ETCD_AUTH)
  })

  it('passes NATS and etcd set in the config file, even at the default address', () => {
    const options = optionsFor({}, {nats: 'nats://127.0.0.1:4222', etcd: ['http://127.0.0.1:2379']})
    expect(options.nats).to.equal('nats://127.0.0.1:4222')
    expect(options.etcd).to.equal('http://127.0.0.1:2379')
  })
})
