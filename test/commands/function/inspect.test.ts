import {expect} from 'chai'

import type {FunctionSpec} from '../../../src/runtime/function-spec.js'
import {type FakeListener, startFakeListener} from '../../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'

describe('amp function inspect', () => {
  isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
  })
  afterEach(() => fake.close())

  it('shows every setting, the times in UTC and the URL that calls it', async () => {
    fake.add('test', 'ghcr.io/acme/fn:1', 90_000)
    const {stdout, exitCode} = await runAmp(['function', 'inspect', 'test', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal(
      [
        'Name:     test',
        'Image:    ghcr.io/acme/fn:1',
        'Timeout:  90s',
        'Network:  none',
        'Created:  2025-01-31 14:05:09Z',
        'Updated:  2025-01-31 14:05:09Z',
        `Call:     POST ${fake.url}/test`,
        '',
      ].join('\n'),
    )
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).to.deep.equal(['GET /_amp/v1/functions/test'])
  })

  it('prints the function exactly as stored with --json, as amp fn inspect', async () => {
    const spec = fake.add('test')
    const {stdout, exitCode} = await runAmp<FunctionSpec>(['fn', 'inspect', 'test', '--json', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(JSON.parse(stdout)).to.deep.equal(spec)
  })

  it('exits 102 with a hint when there is no such function', async () => {
    const {error, stdout, exitCode} = await runAmp(['fn', 'inspect', 'nope', '--server', fake.url])
    expect(exitCode).to.equal(102)
    expect(stdout).to.equal('')
    expect(error?.message).to.equal('no function named nope')
    expect(error?.suggestions).to.deep.equal(['See the registered functions with: amp function ls'])
  })

  it('exits 2 on an invalid name without asking the listener', async () => {
    const {exitCode} = await runAmp(['fn', 'inspect', 'Bad_Name', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(fake.requests).to.deep.equal([])
  })
})
