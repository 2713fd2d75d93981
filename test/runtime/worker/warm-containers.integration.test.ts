import {expect} from 'chai'
import {execa} from 'execa'

import {ContainerRunner, type RunSpec} from '../../../src/runtime/worker/container-runner.js'
import {prepareRunner, type PreparedRunner} from '../../../src/runtime/worker/runner-files.js'
import {containers} from '../../helpers/containers.js'
import {ensureTestImages, TEST_IMAGES} from '../../helpers/images.js'
import {runSpec} from '../../helpers/run-spec.js'
import {DOCKER, requireDocker} from '../../helpers/services.js'
import {waitFor} from '../../helpers/wait.js'

/** Functions created --reuse (docs/functions.md "Warm containers"): a container serves many calls, each in a fresh process. */
describe('warm containers (real docker)', function () {
  this.timeout(90_000)
  let prepared: PreparedRunner
  let runner: ContainerRunner
  const workerId = `warm-test-${process.pid}`
  const warmContainers = () => containers(`label=amp.worker=${workerId}`, {running: true})

  before(async () => {
    await requireDocker()
    await ensureTestImages()
    prepared = prepareRunner({})
    expect(prepared.off, 'the runner must be built (npm run build)').to.equal(undefined)
  })

  beforeEach(() => {
    runner = new ContainerRunner({docker: DOCKER, workerId, runner: prepared.files, prestartMax: 4, prestartIdleMs: 60_000})
  })

  afterEach(async () => {
    await runner.close()
    const left = await containers(`label=amp.worker=${workerId}`)
    if (left.length > 0) await execa(DOCKER, ['rm', '--force', ...left], {reject: false})
  })

  after(() => prepared?.cleanup())

  let fn = 0
  const spec = (script: string, overrides: Partial<RunSpec> = {}) =>
    runSpec({function: `warm-test-${fn}`, image: TEST_IMAGES.sh, input: Buffer.from(script), prestart: 2, reuse: true, reuseMaxCalls: 1000, ...overrides})
  beforeEach(() => fn++)
  /** hostname is the container's id: which container ran the call. */
  const where = async (overrides: Partial<RunSpec> = {}) => {
    const result = await runner.run(spec('hostname', overrides))
    expect(result.outcome, result.error).to.equal('exited')
    return result.stdout.toString().trim()
  }

  it('serves one call after the other in the same container, each in a fresh process, and keeps what the calls wrote', async () => {
    const script = 'echo "$(hostname) pid $$"; cat /seen 2>/dev/null; echo "call $RANDOM" >> /seen'
    const results = []
    for (let i = 0; i < 4; i++) results.push(await runner.run(spec(script)))
    const lines = results.map((result) => result.stdout.toString().split('\n'))
    const [host] = lines[0][0].split(' ')
    expect(lines.map((output) => output[0].split(' ')[0])).to.deep.equal([host, host, host, host])
    // A new process each time, never the previous one.
    expect(new Set(lines.map((output) => output[0])).size).to.equal(4)
    // Its files are the container's: each call sees the lines of the calls before it (README says so).
    expect(lines.map((output) => output.filter((line) => line.startsWith('call ')).length)).to.deep.equal([0, 1, 2, 3])
    expect(results.slice(1).every((result) => result.warm && result.reused)).to.equal(true)
  })

  it('leaves no process of one call for the next: what a call started in the background is killed when it ends', async () => {
    await runner.run(spec('sleep 300 & echo started'))
    const next = await runner.run(spec('ps -o comm= | grep -c sleep'))
    expect(next.stdout.toString().trim()).to.equal('0')
  })

  it('replaces a container after --reuse-max-calls calls', async () => {
    const hosts = []
    for (let i = 0; i < 5; i++) hosts.push(await where({reuseMaxCalls: 2}))
    expect(hosts[0]).to.equal(hosts[1])
    expect(hosts[2]).to.equal(hosts[3])
    expect(hosts[2]).to.not.equal(hosts[0])
    expect(hosts[4]).to.not.equal(hosts[2])
  })

  it('kills the whole container when a call times out, and serves the next call in another', async () => {
    const before = await where()
    const timedOut = await runner.run(spec('echo begun; sleep 300', {timeoutMs: 1000}))
    expect(timedOut.outcome).to.equal('timeout')
    const after = await where()
    expect(after).to.not.equal(before)
    expect(await containers(`id=${before}`)).to.deep.equal([])
  })

  it("passes each call's exit code, stdout and stderr, and keeps the container after a non-zero exit", async () => {
    const failed = await runner.run(spec('echo out; echo err >&2; hostname >&2; exit 3'))
    expect([failed.outcome, failed.exitCode, failed.stdout.toString()]).to.deep.equal(['exited', 3, 'out\n'])
    const [err, host] = failed.stderr.toString().trim().split('\n')
    expect(err).to.equal('err')
    expect(await where()).to.equal(host)
  })

  it('serves calls at once in as many containers as it may keep (prestart), the others waiting for a free one', async () => {
    const results = await Promise.all(Array.from({length: 6}, (_, i) => runner.run(spec(`echo ${i}; hostname; sleep 0.3`))))
    expect(results.map((result) => result.stdout.toString().split('\n')[0])).to.deep.equal(['0', '1', '2', '3', '4', '5'])
    expect(new Set(results.map((result) => result.stdout.toString().split('\n')[1])).size).to.equal(2)
  })

  it('removes the warm containers of a function that changed or was removed, at once', async () => {
    const host = await where()
    await runner.drainPrestarted(`warm-test-${fn}`)
    await waitFor('the drained container to go', async () => ((await containers(`id=${host}`)).length === 0 ? true : undefined), 10_000)
    expect(await where()).to.not.equal(host)
  })

  it('removes a warm container unused for --prestart-idle', async () => {
    await runner.close()
    runner = new ContainerRunner({docker: DOCKER, workerId, runner: prepared.files, prestartMax: 4, prestartIdleMs: 1500})
    const host = await where()
    expect(await warmContainers()).to.include(host.slice(0, 12))
    await waitFor('the idle container to go', async () => ((await containers(`id=${host}`)).length === 0 ? true : undefined), 15_000)
  })
})
