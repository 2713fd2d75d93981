import {expect} from 'chai'

import type {FunctionSpec} from '../../../src/runtime/shared/function-spec.js'
import {type FakeListener, startFakeListener} from '../../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'

describe('amp function inspect', () => {
  isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
  })
  afterEach(() => fake.close())

  it('shows every setting, the names (not values) of its variables, the times in UTC and the URL that calls it', async () => {
    fake.add('test', 'ghcr.io/acme/fn:1', 90_000, {TOKEN: 'hunter2-secret', LEVEL: 'debug'})
    const {stdout, exitCode} = await runAmp(['function', 'inspect', 'test', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal(
      [
        'Name:      test',
        'Image:     ghcr.io/acme/fn:1',
        'Timeout:   90s',
        'Network:   none',
        'Memory:    256MiB',
        'CPUs:      1',
        'Pids:      256',
        'Env:       LEVEL, TOKEN (values hidden)',
        'Calls:     synchronous (asynchronous with --async)',
        'Retries:   2 (a failed async call runs at most 3 times)',
        'Prestart:  up to 2 containers started ahead of calls, per worker',
        'Reuse:     no (a fresh container per call)',
        'Created:   2025-01-31 14:05:09Z',
        'Updated:   2025-01-31 14:05:09Z',
        `Call:      POST ${fake.url}/test`,
        '',
      ].join('\n'),
    )
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).to.deep.equal(['GET /_amp/v1/functions/test'])
  })

  it('says when every call is fire-and-forget, and the retries of a failed async call', async () => {
    fake.add('test')
    fake.functions.get('test')!.fireAndForget = true
    fake.functions.get('test')!.retries = 0
    const {stdout, exitCode} = await runAmp(['fn', 'inspect', 'test', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.contain('\nCalls:     fire-and-forget (every call is asynchronous)\n')
    expect(stdout).to.contain('\nRetries:   0 (a failed async call runs at most 1 times)\n')
    const json = await runAmp(['fn', 'inspect', 'test', '--json', '--server', fake.url])
    expect(JSON.parse(json.stdout)).to.include({fireAndForget: true, retries: 0})
  })

  it('says when its containers are warm (reuse), how many calls each serves, and that prestart is then the most warm ones', async () => {
    fake.add('test')
    Object.assign(fake.functions.get('test')!, {reuse: true, reuseMaxCalls: 500, prestart: 3})
    const {stdout, exitCode} = await runAmp(['fn', 'inspect', 'test', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.contain('\nPrestart:  up to 3 warm containers per worker\n')
    expect(stdout).to.contain('\nReuse:     yes: a warm container serves up to 500 calls, each in a fresh process\n')
    const json = await runAmp(['fn', 'inspect', 'test', '--json', '--server', fake.url])
    expect(JSON.parse(json.stdout)).to.include({reuse: true, reuseMaxCalls: 500, prestart: 3})
  })

  it('never shows the value of a variable, with or without --json', async () => {
    fake.add('test', 'busybox:1.36', 30_000, {TOKEN: 'hunter2-secret'})
    for (const args of [[], ['--json'], ['-v']]) {
      const run = await runAmp(['fn', 'inspect', 'test', ...args, '--server', fake.url])
      expect(run.exitCode).to.equal(0)
      expect(run.stdout + run.stderr).to.contain('TOKEN').and.not.contain('hunter2')
    }
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
