import {expect} from 'chai'

import {type FunctionSpec, publicSpec} from '../../../src/runtime/shared/function-spec.js'
import {type FakeListener, startFakeListener} from '../../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'

describe('amp function update', () => {
  isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
  })
  afterEach(() => fake.close())

  it('sends only the settings given, in one PATCH, and says what the function is now', async () => {
    fake.add('test', 'my/image:1', 30_000)
    const {stdout, exitCode} = await runAmp(['function', 'update', 'test', '--image', 'my/image:2', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal(
      'Updated function test (image my/image:2, timeout 30s, network none); calls already running finish with the previous settings\n',
    )
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).to.deep.equal(['PATCH /_amp/v1/functions/test'])
    expect(JSON.parse(fake.requests[0].body.toString())).to.deep.equal({image: 'my/image:2'})
  })

  it('takes --timeout as a duration and --network, as amp fn update', async () => {
    fake.add('test')
    const {exitCode} = await runAmp(['fn', 'update', 'test', '--timeout', '1m30s', '--network', 'bridge', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(JSON.parse(fake.requests[0].body.toString())).to.deep.equal({timeoutMs: 90_000, network: 'bridge'})
    expect(fake.functions.get('test')).to.include({image: 'busybox:1.36', timeoutMs: 90_000, network: 'bridge'})
  })

  it('prints the function as stored after the change with --json', async () => {
    const before = fake.add('test')
    const {stdout, exitCode} = await runAmp<FunctionSpec>(['fn', 'update', 'test', '--image', 'my/image:2', '--json', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(JSON.parse(stdout)).to.deep.equal({...before, image: 'my/image:2', updatedAt: '2025-02-01T09:30:00.000Z'})
  })

  it('never takes a setting from AMP_TIMEOUT or the config file: only what is typed changes a function', async () => {
    fake.add('test')
    process.env.AMP_TIMEOUT = '5s'
    const {exitCode} = await runAmp(['fn', 'update', 'test', '--image', 'my/image:2', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(JSON.parse(fake.requests[0].body.toString())).to.deep.equal({image: 'my/image:2'})
  })

  it('sets and removes variables and changes limits in one PATCH, keeping the other variables', async () => {
    fake.add('test', 'my/image:1', 30_000, {KEEP: 'k', OLD: 'o'})
    const args = ['fn', 'update', 'test', '--env', 'NEW=n', '--unset-env', 'OLD', '--memory', '64MiB', '--cpus', '2', '--pids-limit', '100']
    const {result, exitCode} = await runAmp<FunctionSpec>([...args, '--json', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(JSON.parse(fake.requests[0].body.toString())).to.deep.equal({
      memoryBytes: 64 * 1024 * 1024,
      cpus: 2,
      pidsLimit: 100,
      env: {NEW: 'n', OLD: null},
    })
    expect(result).to.include({memoryBytes: 64 * 1024 * 1024, cpus: 2, pidsLimit: 100})
    expect(result?.envKeys).to.deep.equal(['KEEP', 'NEW'])
    expect(fake.functions.get('test')?.env).to.deep.equal({KEEP: 'k', NEW: 'n'})
  })

  it('turns fire-and-forget on and off and changes retries, sending only those', async () => {
    fake.add('test')
    const on = await runAmp(['fn', 'update', 'test', '--fire-and-forget', '--retries', '4', '--server', fake.url])
    expect(on.exitCode, on.stderr).to.equal(0)
    expect(on.stdout).to.equal(
      'Updated function test (image busybox:1.36, timeout 30s, network none, fire-and-forget, retries 4); calls already running finish with the previous settings\n',
    )
    expect(JSON.parse(fake.requests[0].body.toString())).to.deep.equal({fireAndForget: true, retries: 4})
    const off = await runAmp<FunctionSpec>(['fn', 'update', 'test', '--no-fire-and-forget', '--json', '--server', fake.url])
    expect(off.exitCode).to.equal(0)
    expect(JSON.parse(fake.requests[1].body.toString())).to.deep.equal({fireAndForget: false})
    expect(off.result).to.include({fireAndForget: false, retries: 4})
    expect(fake.functions.get('test')).to.include({fireAndForget: false, retries: 4})
  })

  it('turns reuse on and off (--no-reuse) and changes --reuse-max-calls, sending only those', async () => {
    fake.add('test')
    const on = await runAmp(['fn', 'update', 'test', '--reuse', '--reuse-max-calls', '20', '--server', fake.url])
    expect(on.exitCode, on.stderr).to.equal(0)
    expect(on.stdout).to.equal(
      'Updated function test (image busybox:1.36, timeout 30s, network none, reuse, reuse-max-calls 20); calls already running finish with the previous settings\n',
    )
    expect(JSON.parse(fake.requests[0].body.toString())).to.deep.equal({reuse: true, reuseMaxCalls: 20})
    const off = await runAmp<FunctionSpec>(['fn', 'update', 'test', '--no-reuse', '--json', '--server', fake.url])
    expect(off.exitCode).to.equal(0)
    expect(JSON.parse(fake.requests[1].body.toString())).to.deep.equal({reuse: false})
    expect(off.result).to.include({reuse: false, reuseMaxCalls: 20})
    expect(fake.functions.get('test')).to.include({reuse: false, reuseMaxCalls: 20})
  })

  it('exits 2 when the listener refuses --prestart 0 on a function with reuse on, which stays as it was', async () => {
    fake.add('test')
    fake.functions.get('test')!.reuse = true
    const before = publicSpec(fake.functions.get('test')!)
    const {error, exitCode} = await runAmp(['fn', 'update', 'test', '--prestart', '0', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.equal('reuse needs prestart of at least 1 (the most warm containers a worker keeps)')
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).to.deep.equal(['PATCH /_amp/v1/functions/test'])
    expect(publicSpec(fake.functions.get('test')!)).to.deep.equal(before)
  })

  it('exits 2, asking nothing of the listener, when there is nothing to change', async () => {
    fake.add('test')
    const {error, exitCode} = await runAmp(['fn', 'update', 'test', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.equal(
      'nothing to update: give --image, --timeout, --network, --memory, --cpus, --pids-limit, --env, --unset-env, --fire-and-forget, --retries, --prestart, --reuse or --reuse-max-calls',
    )
    expect(error?.suggestions).to.deep.equal(['See the current settings with: amp function inspect test'])
    expect(fake.requests).to.deep.equal([])
  })

  const refused: Array<[string, string[], RegExp]> = [
    ['an image docker would read as a flag', ['--image=--privileged'], /invalid image reference "--privileged"/],
    ['an image with an uppercase repository (#15)', ['--image', 'UPPER/x'], /^invalid image reference "UPPER\/x": the repository name must be lowercase$/],
    ['an image with an empty tag', ['--image', 'my/image:'], /^invalid image reference "my\/image:": the tag may hold at most 128 characters/],
    ['an image with a bad digest', ['--image', 'my/image@sha256:1234'], /: a digest is algorithm:hex, e\.g\. sha256:<64 lowercase hex digits>$/],
    ['the host network', ['--network', 'host'], /invalid network "host"/],
    ['a bad duration', ['--timeout', '10min'], /invalid duration "10min"/],
    ['a timeout over 24h', ['--timeout', '25h'], /at most 24h/],
    ['more than 10 retries', ['--retries', '11'], /^retries must be a whole number from 0 to 10$/],
    ['retries that are no number', ['--retries', 'x'], /^invalid retries "x"/],
    ['--reuse with --prestart 0', ['--reuse', '--prestart', '0'], /^reuse needs prestart of at least 1/],
    ['a --reuse-max-calls of 0', ['--reuse-max-calls', '0'], /^reuseMaxCalls must be a whole number from 1 to 1000000$/],
    ['a --reuse-max-calls that is no number', ['--reuse-max-calls', 'many'], /^invalid reuse-max-calls "many"/],
  ]
  for (const [what, flags, message] of refused) {
    it(`exits 2 on ${what}, changing nothing`, async () => {
      const before = fake.add('test')
      const {error, exitCode} = await runAmp(['fn', 'update', 'test', ...flags, '--server', fake.url])
      expect(exitCode).to.equal(2)
      expect(error?.message).to.match(message)
      expect(fake.requests).to.deep.equal([])
      expect(publicSpec(fake.functions.get('test')!)).to.deep.equal(before)
    })
  }

  it('exits 102 with a hint when there is no such function, and creates none', async () => {
    const {error, exitCode} = await runAmp(['fn', 'update', 'nope', '--image', 'my/image:2', '--server', fake.url])
    expect(exitCode).to.equal(102)
    expect(error?.message).to.equal('no function named nope')
    expect(error?.suggestions).to.deep.equal(['See the registered functions with: amp function ls'])
    expect(fake.functions.has('nope')).to.equal(false)
  })

  it('prints a JSON error with the code and exit under --json', async () => {
    const {stdout, exitCode} = await runAmp(['fn', 'update', 'nope', '--image', 'my/image:2', '--json', '--server', fake.url])
    expect(exitCode).to.equal(102)
    expect(JSON.parse(stdout).error).to.include({code: 'function_not_found', exit: 102})
  })
})
