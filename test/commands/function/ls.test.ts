import {expect} from 'chai'

import type {FunctionSpec} from '../../../src/runtime/shared/function-spec.js'
import {type FakeListener, startFakeListener} from '../../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'

describe('amp function ls', () => {
  isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
  })
  afterEach(() => fake.close())

  it('says how to create a function when there is none', async () => {
    const {stdout, result, exitCode} = await runAmp(['function', 'ls', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('No functions. Create one with: amp function create NAME IMAGE\n')
    expect(result).to.deep.equal([])
  })

  it('prints a table sorted by name', async () => {
    fake.add('zeta', 'ghcr.io/acme/zeta:2', 120_000)
    fake.add('alpha', 'busybox:1.36', 500)
    Object.assign(fake.functions.get('zeta')!, {fireAndForget: true, retries: 5, reuse: true})
    const {stdout, exitCode} = await runAmp(['function', 'ls', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal(
      [
        'NAME   IMAGE                TIMEOUT  NETWORK  CALLS            RETRIES  PRESTART  REUSE  UPDATED',
        'alpha  busybox:1.36         500ms    none     sync             2        2         no     2025-01-31 14:05:09Z',
        'zeta   ghcr.io/acme/zeta:2  2m       none     fire-and-forget  5        2         yes    2025-01-31 14:05:09Z',
        '',
      ].join('\n'),
    )
  })

  it('works as amp fn ls', async () => {
    fake.add('test')
    const {stdout, exitCode} = await runAmp(['fn', 'ls', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.match(/^NAME +IMAGE/)
    expect(stdout).to.include('test')
  })

  it('prints the list as a JSON array with --json', async () => {
    const spec = fake.add('test')
    const {stdout, exitCode} = await runAmp<FunctionSpec[]>(['fn', 'ls', '--json', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(JSON.parse(stdout)).to.deep.equal([spec])
  })

  it('prints an empty JSON array, not the hint, with --json', async () => {
    const {stdout} = await runAmp(['fn', 'ls', '--json', '--server', fake.url])
    expect(JSON.parse(stdout)).to.deep.equal([])
  })

  it('prints only the names, one per line, with -q', async () => {
    fake.add('zeta')
    fake.add('alpha')
    const {stdout, exitCode} = await runAmp(['fn', 'ls', '-q', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('alpha\nzeta\n')
  })

  it('prints nothing at all with --quiet when there are no functions (no hint for a script to trip on)', async () => {
    const {stdout, exitCode} = await runAmp(['fn', 'ls', '--quiet', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('')
  })

  it('prints the same JSON with -q as without it', async () => {
    const spec = fake.add('test')
    const {stdout} = await runAmp(['fn', 'ls', '-q', '--json', '--server', fake.url])
    expect(JSON.parse(stdout)).to.deep.equal([spec])
  })

  it('exits 101 with one clear line when no listener runs there', async () => {
    const url = fake.url
    await fake.close()
    const {error, stdout, exitCode} = await runAmp(['fn', 'ls', '--server', url])
    expect(exitCode).to.equal(101)
    expect(stdout).to.equal('')
    expect(error?.message).to.equal(`cannot reach the listener at ${url}: ECONNREFUSED`)
  })

  it('prints a JSON error with the code and exit under --json', async () => {
    const url = fake.url
    await fake.close()
    const {stdout, exitCode} = await runAmp(['fn', 'ls', '--json', '--server', url])
    expect(exitCode).to.equal(101)
    const printed = JSON.parse(stdout)
    expect(printed.error).to.include({code: 'listener_unreachable', exit: 101})
    expect(printed.error.suggestions).to.have.length.greaterThan(0)
  })

  it('exits 2 on a --server that is no URL', async () => {
    const {error, exitCode} = await runAmp(['fn', 'ls', '--server', 'localhost:4242'])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.match(/^invalid server URL "localhost:4242"/)
  })
})
