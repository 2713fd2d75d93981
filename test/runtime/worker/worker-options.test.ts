import {expect} from 'chai'

import {EXPECTED_NATS_AUTH, GIVEN_NATS_CREDENTIALS, NO_NATS_AUTH} from '../../helpers/given-credentials.js'
import {resolveSettings} from '../../../src/runtime/shared/config.js'
import {DEFAULT_ASYNC_SETTINGS} from '../../../src/runtime/shared/async-store.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {DEFAULT_PRESTART_IDLE_MS} from '../../../src/runtime/worker/container-pool.js'
import {DEFAULT_DRAIN_TIMEOUT_MS} from '../../../src/runtime/worker/worker.js'
import {workerOptionsFrom} from '../../../src/runtime/worker/worker-options.js'

describe('workerOptionsFrom', () => {
  it('puts each worker setting in its option (each value distinct, so a swap shows)', () => {
    const settings = resolveSettings({
      nats: 'nats://n1:4222,nats://n2:4222',
      concurrency: 16,
      docker: '/usr/local/bin/docker',
      pull: 'never',
      'drain-timeout': '7s',
      'prestart-max': 3,
      'prestart-idle': '90s',
      runner: false,
      'runner-path': '/opt/amp-runner',
      'runtime-dir': '/run/amp-test',
      'metrics-port': 9464,
      'metrics-host': '0.0.0.0',
      'async-lease': '11s',
      'async-retry-base': '2s',
      'async-retention': '13h',
      'js-replicas': '5',
      ...GIVEN_NATS_CREDENTIALS,
    })
    expect(workerOptionsFrom(settings, silentLogger)).to.deep.equal({
      nats: 'nats://n1:4222,nats://n2:4222',
      concurrency: 16,
      docker: '/usr/local/bin/docker',
      pull: 'never',
      drainTimeoutMs: 7000,
      prestartMax: 3,
      prestartIdleMs: 90_000,
      runner: false,
      runnerPath: '/opt/amp-runner',
      runtimeDir: '/run/amp-test',
      metricsPort: 9464,
      metricsHost: '0.0.0.0',
      natsAuth: EXPECTED_NATS_AUTH,
      async: {leaseMs: 11_000, retryBaseMs: 2000, retentionMs: 13 * 3_600_000, replicas: 5},
      logger: silentLogger,
    })
  })

  it("with nothing set, gives the worker's own defaults: no metrics port, pools as large as the concurrency, the runner on", () => {
    const options = workerOptionsFrom(resolveSettings({}), silentLogger)
    expect(options).to.include({nats: 'nats://127.0.0.1:4222', concurrency: 4, docker: 'docker', pull: 'missing', runner: true, metricsHost: '127.0.0.1'})
    expect(options.drainTimeoutMs).to.equal(DEFAULT_DRAIN_TIMEOUT_MS)
    expect(options.prestartIdleMs).to.equal(DEFAULT_PRESTART_IDLE_MS)
    // Undefined is what the worker reads as "off" (metrics) or "its own default" (pool size, runner files).
    for (const key of ['metricsPort', 'prestartMax', 'runnerPath', 'runtimeDir'] as const) expect(options[key], key).to.equal(undefined)
    expect(options.async).to.deep.equal({...DEFAULT_ASYNC_SETTINGS, retryBaseMs: 1000, replicas: 'auto'})
    expect(options.natsAuth).to.deep.equal(NO_NATS_AUTH)
  })
})
