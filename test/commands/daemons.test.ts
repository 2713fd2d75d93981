import {expect} from 'chai'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {isolateEnvironment, runAmp} from '../helpers/run-amp.js'

/**
 * The daemon commands refuse bad settings before starting anything. (Running them for real is
 * covered by the integration suites.)
 */
describe('amp listener start / worker start / up: bad settings', () => {
  const home = isolateEnvironment()

  const usage: Array<[string, string[], RegExp]> = [
    ['listener start with a bad --max-body', ['listener', 'start', '--max-body', 'lots'], /invalid size "lots"/],
    ['listener start with a port out of range', ['listener', 'start', '--port', '70000'], /70000/],
    ['listener start with an empty --etcd', ['listener', 'start', '--etcd', ','], /--etcd/],
    ['listener start with --max-inflight 0', ['listener', 'start', '--max-inflight', '0'], /--max-inflight/],
    ['worker start with concurrency 0', ['worker', 'start', '--concurrency', '0'], /--concurrency/],
    ['worker start with an unknown pull policy', ['worker', 'start', '--pull', 'sometimes'], /missing, never, always/],
    ['up with a non-numeric port', ['up', '--port', 'http'], /--port/],
  ]
  for (const [what, args, message] of usage) {
    it(`refuses ${what} with exit 2`, async () => {
      const {error, exitCode} = await runAmp(args)
      expect(exitCode).to.equal(2)
      expect(error?.message).to.match(message)
    })
  }

  it('refuses a bad env value as it would the flag (AMP_MAX_BODY)', async () => {
    process.env.AMP_MAX_BODY = '0'
    const {error, exitCode} = await runAmp(['listener', 'start'])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.match(/invalid size "0"/)
  })

  for (const command of [['listener', 'start'], ['worker', 'start'], ['up']]) {
    it(`amp ${command.join(' ')} exits 100 on a broken config file`, async () => {
      const path = join(home(), 'amp.yaml')
      writeFileSync(path, 'pull: sometimes\n')
      const {error, exitCode} = await runAmp([...command, '--use-config', path])
      expect(exitCode).to.equal(100)
      expect(error?.message).to.equal(`config file ${path}: key "pull": must be one of missing, never, always, got "sometimes"`)
    })
  }
})
