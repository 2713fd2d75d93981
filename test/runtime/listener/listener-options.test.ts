import {expect} from 'chai'

import {EXPECTED_AUTH, EXPECTED_ETCD_AUTH, EXPECTED_NATS_AUTH, GIVEN_ETCD_CREDENTIALS, GIVEN_NATS_CREDENTIALS, GIVEN_TOKENS, NO_AUTH, NO_ETCD_AUTH, NO_NATS_AUTH} from '../../helpers/given-credentials.js'
import {resolveSettings} from '../../../src/runtime/shared/config.js'
import {DEFAULT_ASYNC_SETTINGS} from '../../../src/runtime/shared/async-store.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {DEFAULT_LISTENER_DRAIN_MS, DEFAULT_MAX_BODY, DEFAULT_MAX_IN_FLIGHT} from '../../../src/runtime/listener/listener.js'
import {listenerOptionsFrom} from '../../../src/runtime/listener/listener-options.js'

describe('listenerOptionsFrom', () => {
  it('puts each listener setting in its option (each value distinct, so a swap shows)', () => {
    const settings = resolveSettings({
      host: '0.0.0.0',
      port: 8080,
      nats: 'nats://n1:4222,nats://n2:4222',
      etcd: ['http://e1:2379', 'http://e2:2379'],
      'max-body': '2MiB',
      'drain-timeout': '7s',
      'max-inflight': 9,
      'async-lease': '11s',
      'async-retention': '13h',
      'js-replicas': '3',
      ...GIVEN_TOKENS,
      ...GIVEN_NATS_CREDENTIALS,
      ...GIVEN_ETCD_CREDENTIALS,
    })
    expect(listenerOptionsFrom(settings, silentLogger)).to.deep.equal({
      host: '0.0.0.0',
      port: 8080,
      nats: 'nats://n1:4222,nats://n2:4222',
      etcd: ['http://e1:2379', 'http://e2:2379'],
      maxBodyBytes: 2 * 1024 * 1024,
      drainTimeoutMs: 7000,
      maxInFlight: 9,
      auth: EXPECTED_AUTH,
      natsAuth: EXPECTED_NATS_AUTH,
      etcdAuth: EXPECTED_ETCD_AUTH,
      async: {leaseMs: 11_000, retentionMs: 13 * 3_600_000, replicas: 3},
      logger: silentLogger,
    })
  })

  it("with nothing set, gives the listener's own defaults and no tokens or credentials", () => {
    const options = listenerOptionsFrom(resolveSettings({}), silentLogger)
    expect(options).to.include({host: '127.0.0.1', port: 4242, nats: 'nats://127.0.0.1:4222'})
    expect(options.etcd).to.deep.equal(['http://127.0.0.1:2379'])
    expect(options.maxBodyBytes).to.equal(DEFAULT_MAX_BODY)
    expect(options.maxInFlight).to.equal(DEFAULT_MAX_IN_FLIGHT)
    expect(options.drainTimeoutMs).to.equal(DEFAULT_LISTENER_DRAIN_MS)
    expect(options.async).to.deep.equal({...DEFAULT_ASYNC_SETTINGS, replicas: 'auto'})
    expect(options.auth).to.deep.equal(NO_AUTH)
    expect(options.natsAuth).to.deep.equal(NO_NATS_AUTH)
    expect(options.etcdAuth).to.deep.equal(NO_ETCD_AUTH)
  })
})
