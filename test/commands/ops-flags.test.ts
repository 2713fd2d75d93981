import {expect} from 'chai'

import {isolateEnvironment, runAmp} from '../helpers/run-amp.js'

/** The daemons' new flags are checked before anything starts. (They run for real in test/runtime/ops.integration.test.ts.) */
describe('amp listener start / worker start: --drain-timeout, --metrics-port', () => {
  isolateEnvironment()

  const usage: Array<[string, string[], RegExp]> = [
    ['worker start with a metrics port out of range', ['worker', 'start', '--metrics-port', '70000'], /70000/],
    ['worker start with a drain timeout of 0', ['worker', 'start', '--drain-timeout', '0'], /invalid duration "0"/],
    ['listener start with a drain timeout that is not a duration', ['listener', 'start', '--drain-timeout', 'later'], /invalid duration "later"/],
  ]
  for (const [what, args, message] of usage) {
    it(`refuses ${what} with exit 2`, async () => {
      const {error, exitCode} = await runAmp(args)
      expect(exitCode).to.equal(2)
      expect(error?.message).to.match(message)
    })
  }

  it('reads AMP_METRICS_PORT as the flag', async () => {
    process.env.AMP_METRICS_PORT = 'nine'
    const {exitCode, error} = await runAmp(['worker', 'start'])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.match(/metrics-port/)
  })

  it('lists the new flags in help', async () => {
    const worker = await runAmp(['worker', 'start', '--help'])
    expect(worker.stdout).to.contain('--metrics-port').and.contain('AMP_METRICS_PORT').and.contain('--drain-timeout')
    const listener = await runAmp(['listener', 'start', '--help'])
    expect(listener.stdout).to.contain('--drain-timeout').and.contain('AMP_DRAIN_TIMEOUT')
  })
})
