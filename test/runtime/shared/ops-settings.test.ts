import {expect} from 'chai'

import {DEFAULTS, parseConfig, resolveSettings} from '../../../src/runtime/shared/config.js'
import {AmpError} from '../../../src/runtime/shared/errors.js'

describe('config: drain-timeout, metrics-port, metrics-host', () => {
  it('defaults: drain 30s, no metrics port, metrics on loopback', () => {
    const settings = resolveSettings({})
    expect(settings.drainTimeoutMs).to.equal(30_000)
    expect(settings.metricsPort).to.equal(undefined)
    expect(settings.metricsHost).to.equal('127.0.0.1')
    expect(DEFAULTS.drainTimeoutMs).to.equal(30_000)
  })

  it('reads them from the file, and a flag or env value wins over the file', async () => {
    const file = await parseConfig('drain-timeout: 1m\nmetrics-port: 9464\nmetrics-host: 0.0.0.0\n', '/etc/amp.yaml')
    expect(file).to.deep.equal({drainTimeoutMs: 60_000, metricsPort: 9464, metricsHost: '0.0.0.0'})
    expect(resolveSettings({}, file)).to.include({drainTimeoutMs: 60_000, metricsPort: 9464, metricsHost: '0.0.0.0'})
    expect(resolveSettings({'drain-timeout': '5s', 'metrics-port': 0, 'metrics-host': '::1'}, file)).to.include({
      drainTimeoutMs: 5000,
      metricsPort: 0,
      metricsHost: '::1',
    })
  })

  const bad: Array<[string, RegExp]> = [
    ['metrics-port: 70000', /key "metrics-port": must be a whole number from 0 to 65535, got 70000/],
    ['metrics-port: "9464"', /key "metrics-port": must be a whole number/],
    ['drain-timeout: soon', /key "drain-timeout": invalid duration "soon"/],
    ['metrics-host: ""', /key "metrics-host": must be a non-empty string/],
  ]
  for (const [yaml, message] of bad) {
    it(`refuses ${yaml} as a config error (exit 100)`, async () => {
      try {
        await parseConfig(`${yaml}\n`, '/etc/amp.yaml')
        expect.fail('should have thrown')
      } catch (error) {
        expect(error).to.be.instanceOf(AmpError)
        expect((error as AmpError).exit).to.equal(100)
        expect((error as AmpError).message).to.match(message)
      }
    })
  }

  it('refuses a bad --drain-timeout as a usage error (exit 2)', () => {
    expect(() => resolveSettings({'drain-timeout': '0s'})).to.throw(AmpError, /invalid duration "0s"/)
  })
})
