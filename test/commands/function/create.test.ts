import {expect} from 'chai'

import type {CreateResult} from '../../../src/runtime/client/client.js'
import {type FakeListener, startFakeListener} from '../../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'

describe('amp function create', () => {
  isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
  })
  afterEach(() => fake.close())

  it('registers the image with the default timeout and network and says so in one line', async () => {
    const {stdout, result, exitCode} = await runAmp<CreateResult>(['function', 'create', 'test', 'my/image:1', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('Created function test (image my/image:1, timeout 30s)\n')
    expect(result?.replaced).to.equal(false)
    expect(fake.requests).to.have.length(1)
    expect(fake.requests[0]).to.include({method: 'PUT', path: '/_amp/v1/functions/test'})
    expect(JSON.parse(fake.requests[0].body.toString())).to.deep.equal({image: 'my/image:1', timeoutMs: 30_000, network: 'none'})
  })

  it('works as amp fn create, with --timeout and --network', async () => {
    const {stdout, exitCode} = await runAmp(['fn', 'create', 'slow', 'busybox:1.36', '--timeout', '2m', '--network', 'bridge', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('Created function slow (image busybox:1.36, timeout 2m, network bridge)\n')
    expect(fake.functions.get('slow')).to.include({timeoutMs: 120_000, network: 'bridge'})
  })

  it('sends --memory, --cpus, --pids-limit and each --env, even with the flags before the arguments', async () => {
    process.env.FROM_SHELL = 'shell-secret'
    const args = ['fn', 'create', '--env', 'LEVEL=debug', '--env', 'FROM_SHELL', 'test', 'my/image:1']
    const {stdout, stderr, exitCode} = await runAmp([...args, '--memory', '1GiB', '--cpus', '0.5', '--pids-limit', '64', '--server', fake.url])
    expect(exitCode, stderr).to.equal(0)
    expect(JSON.parse(fake.requests[0].body.toString())).to.deep.equal({
      image: 'my/image:1',
      timeoutMs: 30_000,
      network: 'none',
      memoryBytes: 1024 * 1024 * 1024,
      cpus: 0.5,
      pidsLimit: 64,
      env: {LEVEL: 'debug', FROM_SHELL: 'shell-secret'},
    })
    expect(stdout + stderr).to.not.contain('secret')
  })

  it('sends --fire-and-forget and --retries, and says so in its line', async () => {
    const {stdout, stderr, exitCode} = await runAmp(['fn', 'create', 'notify', 'my/image:1', '--fire-and-forget', '--retries', '5', '--server', fake.url])
    expect(exitCode, stderr).to.equal(0)
    expect(stdout).to.equal('Created function notify (image my/image:1, timeout 30s, fire-and-forget, retries 5)\n')
    expect(JSON.parse(fake.requests[0].body.toString())).to.include({fireAndForget: true, retries: 5})
    expect(fake.functions.get('notify')).to.include({fireAndForget: true, retries: 5})
  })

  it('leaves fireAndForget and retries to the listener when not given', async () => {
    const {exitCode} = await runAmp(['fn', 'create', 'test', 'my/image:1', '--retries', '0', '--server', fake.url])
    expect(exitCode).to.equal(0)
    const sent = JSON.parse(fake.requests[0].body.toString())
    expect(sent).to.not.have.property('fireAndForget')
    expect(sent.retries).to.equal(0)
  })

  it('sends --prestart (0 opts out of pre-started containers) and says so in its line; leaves it to the listener when not given', async () => {
    const {stdout, exitCode} = await runAmp(['fn', 'create', 'clock', 'my/image:1', '--prestart', '0', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('Created function clock (image my/image:1, timeout 30s, prestart 0)\n')
    expect(JSON.parse(fake.requests[0].body.toString())).to.include({prestart: 0})
    expect(fake.functions.get('clock')).to.include({prestart: 0})
    await runAmp(['fn', 'create', 'plain', 'my/image:1', '--server', fake.url])
    expect(JSON.parse(fake.requests[1].body.toString())).to.not.have.property('prestart')
  })

  it('sends --reuse and --reuse-max-calls and says so in its line; leaves them to the listener when not given', async () => {
    const {stdout, stderr, exitCode} = await runAmp(['fn', 'create', 'resize', 'my/image:1', '--reuse', '--reuse-max-calls', '50', '--server', fake.url])
    expect(exitCode, stderr).to.equal(0)
    expect(stdout).to.equal('Created function resize (image my/image:1, timeout 30s, reuse, reuse-max-calls 50)\n')
    expect(JSON.parse(fake.requests[0].body.toString())).to.include({reuse: true, reuseMaxCalls: 50})
    expect(fake.functions.get('resize')).to.include({reuse: true, reuseMaxCalls: 50})
    const plain = await runAmp(['fn', 'create', 'plain', 'my/image:1', '--server', fake.url])
    expect(plain.stdout).to.equal('Created function plain (image my/image:1, timeout 30s)\n')
    const sent = JSON.parse(fake.requests[1].body.toString())
    expect(sent).to.not.have.property('reuse')
    expect(sent).to.not.have.property('reuseMaxCalls')
    expect(fake.functions.get('plain')).to.include({reuse: false, reuseMaxCalls: 1000})
  })

  it('has no --no-reuse (a new function has no reuse to turn off)', async () => {
    const {error, exitCode} = await runAmp(['fn', 'create', 'test', 'my/image:1', '--no-reuse', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.match(/Nonexistent flag: --no-reuse/)
    expect(fake.requests).to.deep.equal([])
  })

  const refused: Array<[string[], RegExp]> = [
    [['--reuse', '--prestart', '0'], /^reuse needs prestart of at least 1 \(the most warm containers a worker keeps\)$/],
    [['--reuse-max-calls', '0'], /^reuseMaxCalls must be a whole number from 1 to 1000000$/],
    [['--reuse-max-calls', '1000001'], /^reuseMaxCalls must be a whole number from 1 to 1000000$/],
    [['--reuse-max-calls', '-5'], /^invalid reuse-max-calls "-5": give a whole number from 1 to 1000000$/],
    [['--reuse-max-calls', '1e3'], /^invalid reuse-max-calls "1e3"/],
    [['--prestart', '17'], /^prestart must be a whole number from 0 to 16$/],
    [['--prestart', '-1'], /^invalid prestart "-1": give a whole number from 0 to 16$/],
    [['--prestart', 'some'], /^invalid prestart "some"/],
    [['--retries', '11'], /^retries must be a whole number from 0 to 10$/],
    [['--retries', '-1'], /^invalid retries "-1": give a whole number from 0 to 10$/],
    [['--retries', '2.5'], /^invalid retries "2.5"/],
    [['--retries', 'many'], /^invalid retries "many"/],
    [['--memory', '1MiB'], /^invalid memory "1MiB"/],
    [['--cpus', 'lots'], /^invalid cpus "lots"/],
    [['--pids-limit', '-1'], /^pidsLimit must be/],
    [['--env', 'my-secret-token'], /^--env number 1 is neither NAME=VALUE nor the NAME/],
    [['--env', 'BAD-NAME=x'], /^invalid environment variable name "BAD-NAME"/],
  ]
  for (const [flags, message] of refused) {
    it(`refuses ${flags.join(' ')} with exit 2 before any request`, async () => {
      const {error, exitCode} = await runAmp(['fn', 'create', 'test', 'my/image:1', ...flags, '--server', fake.url])
      expect(exitCode).to.equal(2)
      expect(error?.message).to.match(message).and.not.contain('my-secret-token')
      expect(fake.requests).to.deep.equal([])
    })
  }

  it('prints the function as JSON with --json', async () => {
    const {stdout, exitCode} = await runAmp(['function', 'create', 'test', 'my/image:1', '--timeout', '500ms', '--json', '--server', fake.url])
    expect(exitCode).to.equal(0)
    const printed = JSON.parse(stdout)
    expect(printed.replaced).to.equal(false)
    expect(printed.function).to.include({name: 'test', image: 'my/image:1', timeoutMs: 500, network: 'none'})
  })

  it('refuses to overwrite an existing function (exit 103) unless --replace is given', async () => {
    fake.add('test', 'old/image:1')
    const refused = await runAmp(['function', 'create', 'test', 'new/image:2', '--server', fake.url])
    expect(refused.exitCode).to.equal(103)
    expect(refused.error?.message).to.equal('function test already exists')
    expect(refused.error?.suggestions).to.deep.equal(['Overwrite it with: amp function create test IMAGE --replace'])
    expect(fake.functions.get('test')?.image).to.equal('old/image:1')

    const replaced = await runAmp(['function', 'create', 'test', 'new/image:2', '--replace', '--server', fake.url])
    expect(replaced.exitCode).to.equal(0)
    expect(replaced.stdout).to.equal('Replaced function test (image new/image:2, timeout 30s)\n')
    expect(fake.functions.get('test')?.image).to.equal('new/image:2')
  })

  const refusedLocally: Array<[string, string[], RegExp]> = [
    ['an upper-case name', ['Test', 'busybox'], /invalid function name "Test"/],
    ['a name with an underscore (the API prefix)', ['_amp', 'busybox'], /invalid function name "_amp"/],
    ['a name of 64 characters', ['a'.repeat(64), 'busybox'], /invalid function name/],
    ['an image that docker would read as a flag', ['test', '--', '--privileged'], /invalid image reference "--privileged"/],
    ['an image with a volume flag', ['test', '--', '-v/:/host'], /invalid image reference "-v\/:\/host"/],
    ['an image with upper-case letters', ['test', 'BusyBox'], /invalid image reference "BusyBox"/],
    ['an image with an uppercase repository (#15)', ['test', 'UPPER/x'], /^invalid image reference "UPPER\/x": the repository name must be lowercase$/],
    ['an image with an empty part', ['test', 'a//b:1'], /^invalid image reference "a\/\/b:1": the repository name has an empty part/],
    ['an image with a tag of 129 characters', ['test', `busybox:${'t'.repeat(129)}`], /: the tag may hold at most 128 characters/],
    ['the host network', ['test', 'busybox', '--network', 'host'], /invalid network "host"/],
    ['a bad duration', ['test', 'busybox', '--timeout', '5min'], /invalid duration "5min"/],
    ['a zero timeout', ['test', 'busybox', '--timeout', '0s'], /invalid duration "0s"/],
  ]
  for (const [what, args, message] of refusedLocally) {
    it(`refuses ${what} with exit 2 before any request`, async () => {
      const {error, exitCode} = await runAmp(['function', 'create', '--server', fake.url, ...args])
      expect(exitCode).to.equal(2)
      expect(error?.message).to.match(message)
      expect(fake.requests).to.have.length(0)
    })
  }

  it('needs both NAME and IMAGE (exit 2)', async () => {
    const {error, exitCode} = await runAmp(['function', 'create', 'test', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.match(/Missing 1 required arg/)
  })

  it('reports a bad --timeout as a JSON error under --json, with exit 2', async () => {
    const {stdout, exitCode} = await runAmp(['function', 'create', 'test', 'busybox', '--timeout', 'soon', '--json', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(JSON.parse(stdout)).to.deep.equal({
      error: {code: 'bad_request', message: 'invalid duration "soon": use e.g. 500ms, 30s, 2m or 1m30s', exit: 2},
    })
  })

  it('exits 108 when the registry is down', async () => {
    fake.registryDown = true
    const {error, exitCode} = await runAmp(['function', 'create', 'test', 'busybox', '--server', fake.url])
    expect(exitCode).to.equal(108)
    expect(error?.message).to.match(/^the function registry \(etcd\) is unavailable/)
  })

  it('exits 109 on an answer no listener would give (a proxy\'s HTML page)', async () => {
    fake.behindDeadProxy = true
    const {error, exitCode} = await runAmp(['function', 'create', 'test', 'busybox', '--server', fake.url])
    expect(exitCode).to.equal(109)
    expect(error?.message).to.equal(`unexpected answer from ${fake.url}: HTTP 502 (text/html)`)
  })
})
