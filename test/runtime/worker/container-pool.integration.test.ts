import {randomBytes, randomUUID} from 'node:crypto'
import {expect} from 'chai'

import {ContainerRunner, type RunResult, type RunSpec} from '../../../src/runtime/worker/container-runner.js'
import {containers} from '../../helpers/containers.js'
import {ensureTestImages, TEST_IMAGES} from '../../helpers/images.js'
import {DOCKER} from '../../helpers/services.js'
import {waitFor} from '../../helpers/wait.js'

/** Pre-started containers with the real docker CLI: each call still gets a container of its own, and none is left behind. */
describe('ContainerRunner with pre-started containers (real docker)', function () {
  this.timeout(120_000)
  let workerId: string
  let runner: ContainerRunner

  before(() => ensureTestImages())

  beforeEach(() => {
    workerId = `pool-it-${randomBytes(4).toString('hex')}`
    runner = new ContainerRunner({docker: DOCKER, workerId, prestartMax: 2, prestartIdleMs: 60_000})
  })

  afterEach(async () => {
    await runner.close()
    expect(await containers(`label=amp.worker=${workerId}`), 'containers of this worker after close()').to.deep.equal([])
  })

  const spec = (input: string, settings: Partial<RunSpec> = {}): RunSpec => ({
    callId: randomUUID(),
    function: 'pooled',
    image: TEST_IMAGES.sh,
    network: 'none',
    timeoutMs: 20_000,
    memoryBytes: 64 * 1024 * 1024,
    cpus: 1,
    pidsLimit: 64,
    env: {},
    input: Buffer.from(input),
    ...settings,
  })

  /** Waits until the runner has a pre-started container whose process runs (blocked reading its input). */
  const warmedUp = () =>
    waitFor('a running pre-started container', async () =>
      runner.prestarted > 0 && (await containers(`label=amp.worker=${workerId}`, {running: true})).length > 0 ? true : undefined,
    )

  const out = (result: RunResult) => result.stdout.toString('utf8')

  it('serves calls warm with the right output and exit code, each in a container of its own, removed after', async () => {
    // The script prints the container's hostname: its id, so two calls in one container would show.
    const script = (text: string) => `echo "got ${text}"; hostname; echo oops >&2; exit 3\n`
    const first = await runner.run(spec(script('hello')))
    expect(first).to.include({outcome: 'exited', exitCode: 3})
    expect(first.warm).to.equal(undefined)
    const hosts = [out(first).split('\n')[1]]
    for (let index = 0; index < 4; index++) {
      await warmedUp()
      const result = await runner.run(spec(script(`call ${index}`)))
      expect(result, `call ${index}`).to.include({outcome: 'exited', exitCode: 3, warm: true})
      const [got, host] = out(result).split('\n')
      expect(got).to.equal(`got call ${index}`)
      expect(result.stderr.toString('utf8')).to.equal('oops\n')
      hosts.push(host)
    }
    expect(new Set(hosts).size, `hostnames ${hosts.join(', ')}`).to.equal(hosts.length)
    // Used containers are removed after their result; only the pool's idle one stays.
    await waitFor('used containers removed', async () => {
      const left = await containers(`label=amp.worker=${workerId}`)
      return left.length <= runner.prestarted ? true : undefined
    })
    for (const host of hosts) expect(await containers(`id=${host}`), `container ${host}`).to.deep.equal([])
  })

  it('never gives a call a container started with the old environment of an updated function', async () => {
    const old = {env: {LEVEL: 'old'}}
    await runner.run(spec('echo $LEVEL\n', old))
    await warmedUp()
    expect(out(await runner.run(spec('echo $LEVEL\n', old)))).to.equal('old\n')
    await warmedUp()
    // The function changed: the next call must see the new value, warm or not.
    const updated = await runner.run(spec('echo $LEVEL\n', {env: {LEVEL: 'new'}}))
    expect(out(updated)).to.equal('new\n')
    expect(updated.warm).to.equal(undefined)
    // Its old containers go when the worker hears of the change.
    await runner.drainPrestarted('pooled')
    await waitFor('no idle container of the old settings', async () => (runner.prestarted === 0 ? true : undefined))
  })

  it('gives the call what the process wrote before its input came (its log from the start)', async () => {
    const drip = spec('', {image: TEST_IMAGES.drip})
    await runner.run({...drip, input: Buffer.from('one')})
    await warmedUp()
    const result = await runner.run({...drip, callId: randomUUID(), input: Buffer.from('two')})
    expect(result).to.include({outcome: 'exited', exitCode: 0, warm: true})
    expect(out(result)).to.equal('two')
    expect(result.stderr.toString('utf8')).to.equal('first\nsecond\n')
  })

  it('kills a warm call at its timeout, counted from when its input was given, and removes its container', async () => {
    await runner.run(spec('exit 0\n'))
    await warmedUp()
    const call = spec('sleep 30\n', {timeoutMs: 1500})
    const result = await runner.run(call)
    expect(result).to.include({outcome: 'timeout', killed: 'timeout', warm: true})
    await waitFor('the killed container removed', async () => ((await containers(`label=amp.worker=${workerId}`)).length <= runner.prestarted ? true : undefined))
  })

  it('reports an image that cannot run as a fresh run does, and keeps no broken container', async () => {
    const missing = spec('', {image: 'amp-test/no-such-image:1'})
    const noPull = new ContainerRunner({docker: DOCKER, workerId, pull: 'never', prestartMax: 2})
    try {
      const results = [await noPull.run(missing), await noPull.run({...missing, callId: randomUUID()})]
      for (const result of results) {
        expect(result.outcome).to.equal('failed')
        expect(result.error).to.match(/^cannot run amp-test\/no-such-image:1: /)
      }
    } finally {
      await noPull.close()
    }
  })
})
