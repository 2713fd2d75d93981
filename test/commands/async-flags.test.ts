import {expect} from 'chai'

import {isolateEnvironment, runAmp} from '../helpers/run-amp.js'

/** The daemons' asynchronous call settings are checked before anything starts (they run for real in test/runtime/async-chaos.integration.test.ts). */
describe('amp listener start / worker start: --async-lease, --async-retry-base, --async-retention', () => {
  isolateEnvironment()

  const usage: Array<[string, string[], RegExp]> = [
    ['worker start with a lease that is not a duration', ['worker', 'start', '--async-lease', 'long'], /invalid duration "long"/],
    ['worker start with a retry base of 0', ['worker', 'start', '--async-retry-base', '0'], /invalid duration "0"/],
    ['listener start with a retention over 24h', ['listener', 'start', '--async-retention', '25h'], /invalid duration "25h"/],
  ]
  for (const [what, args, message] of usage) {
    it(`refuses ${what} with exit 2`, async () => {
      const {error, exitCode} = await runAmp(args)
      expect(exitCode).to.equal(2)
      expect(error?.message).to.match(message)
    })
  }

  it('reads AMP_ASYNC_LEASE as the flag', async () => {
    process.env.AMP_ASYNC_LEASE = 'a while'
    const {exitCode, error} = await runAmp(['worker', 'start'])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.match(/invalid duration "a while"/)
  })

  it('lists them in help, with their env vars and defaults', async () => {
    const worker = await runAmp(['worker', 'start', '--help'])
    for (const text of ['--async-lease', 'AMP_ASYNC_LEASE', '--async-retry-base', 'AMP_ASYNC_RETRY_BASE', '--async-retention', 'AMP_ASYNC_RETENTION', '30s', '24h']) {
      expect(worker.stdout).to.contain(text)
    }
    const listener = await runAmp(['listener', 'start', '--help'])
    expect(listener.stdout).to.contain('--async-lease').and.contain('--async-retention').and.not.contain('--async-retry-base')
  })
})
