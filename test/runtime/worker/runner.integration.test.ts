import {expect} from 'chai'
import {execa} from 'execa'

import {ContainerRunner, type RunSpec} from '../../../src/runtime/worker/container-runner.js'
import {prepareRunner, type PreparedRunner} from '../../../src/runtime/worker/runner-files.js'
import {containers, expectNoContainer} from '../../helpers/containers.js'
import {ensureTestImages, TEST_IMAGES} from '../../helpers/images.js'
import {runSpec} from '../../helpers/run-spec.js'
import {DOCKER, requireDocker} from '../../helpers/services.js'

/** The in-container runner (docs/runner.md) with the real docker: one container per call, as every call gets by default. */
describe('ContainerRunner with the in-container runner (real docker)', function () {
  this.timeout(60_000)
  let prepared: PreparedRunner
  let runner: ContainerRunner
  const notes: Array<[string, string]> = []
  const workerId = `runner-test-${process.pid}`

  before(async () => {
    await requireDocker()
    await ensureTestImages()
    prepared = prepareRunner({})
    expect(prepared.off, 'the runner must be built (npm run build)').to.equal(undefined)
    runner = new ContainerRunner({docker: DOCKER, workerId, runner: prepared.files, note: (key, message) => notes.push([key, message])})
  })

  after(async () => {
    await runner?.close()
    prepared?.cleanup()
    await execa(DOCKER, ['rm', '--force', ...(await containers(`label=amp.worker=${workerId}`))], {reject: false})
  })

  const spec = (overrides: Partial<RunSpec> = {}) => runSpec({function: 'runner-test', image: TEST_IMAGES.cat, input: Buffer.from('hello'), prestart: 0, ...overrides})
  const sh = (script: string, overrides: Partial<RunSpec> = {}) => runner.run(spec({image: TEST_IMAGES.sh, input: Buffer.from(script), ...overrides}))

  it("runs the image's own ENTRYPOINT and CMD, with its WorkingDir, User and Env, as PID 1's child", async () => {
    const result = await runner.run(spec({image: TEST_IMAGES.whoami, input: Buffer.from('and its input\n')}))
    expect(result.outcome).to.equal('exited')
    expect(result.exitCode).to.equal(0)
    expect(result.stdout.toString()).to.equal('/work 1234:5678 hello-from-the-image from-cmd two\nand its input\n')
  })

  it('answers the moment the function exits: its container is still there, and goes afterwards', async () => {
    const call = spec({image: TEST_IMAGES.upper})
    const since = (Date.now() - 1000) / 1000
    const result = await runner.run(call)
    const answeredAt = Date.now()
    expect(result.stdout.toString()).to.equal('HELLO')
    await expectNoContainer(call.callId)
    // Without the runner the answer waits for docker run --rm, which returns once the container is
    // removed. Docker's own record of the removal, not a `docker ps` right after the answer: under load
    // that ps took longer than the removal and found nothing (CI, in the parallel pass).
    const {stdout} = await execa(DOCKER, [
      'events', '--since', since.toFixed(3), '--until', String(Date.now() / 1000 + 1),
      '--filter', `label=amp.call=${call.callId}`, '--filter', 'event=destroy', '--format', '{{.TimeNano}}',
    ])
    const removedAt = stdout.split('\n').filter(Boolean).map((ns) => Number(BigInt(ns) / 1_000_000n))
    expect(removedAt, 'when docker removed the container').to.have.length(1)
    // 5 ms for the moment between the answer and the clock read above.
    expect(removedAt[0], 'the container was removed after the answer').to.be.at.least(answeredAt - 5)
  })

  for (const [kind, image, output] of [
    ['FROM scratch (static busybox)', TEST_IMAGES.upper, 'HELLO'],
    ['musl (dynamically linked, as on Alpine)', TEST_IMAGES.musl, 'HELLO'],
    ['glibc (dynamically linked)', TEST_IMAGES.glibc, 'hello'],
  ] as const) {
    it(`runs a ${kind} image`, async () => {
      const result = await runner.run(spec({image}))
      expect([result.outcome, result.exitCode, result.stdout.toString()]).to.deep.equal(['exited', 0, output])
    })
  }

  it("passes the function's exit code, stdout and stderr through, byte for byte, binary too", async () => {
    const binary = Buffer.from([0, 1, 2, 255, 254, 10, 13, 0x58, 0, 0, 0, 2, 0x65, 0])
    const same = await runner.run(spec({input: binary}))
    expect(same.stdout.equals(binary)).to.equal(true)
    const failed = await runner.run(spec({image: TEST_IMAGES.fail, input: Buffer.from('in')}))
    expect([failed.outcome, failed.exitCode, failed.stdout.toString(), failed.stderr.toString()]).to.deep.equal(['exited', 3, 'in', 'boom\n'])
  })

  it('cannot be fooled by a function writing what looks like an exit frame, nor by one reaching for the runner', async () => {
    // An exit frame ('X', length 2, exited 0) on stdout, then the runner's own descriptors through /proc/1/fd.
    const result = await sh(String.raw`printf 'X\000\000\000\002e\000'
for fd in /proc/1/fd/*; do printf 'X\000\000\000\002e\000' 2>/dev/null > "$fd" && echo "wrote $fd" >&2; done
exit 7`)
    expect(result.exitCode).to.equal(7)
    expect([...result.stdout]).to.deep.equal([0x58, 0, 0, 0, 2, 0x65, 0])
    expect(result.stderr.toString()).to.equal('')
  })

  it('does PID 1 work: reaps orphans, and gives the exit status of a function killed by a signal as docker does', async () => {
    const result = await sh('(sleep 0.2 &) ; sleep 1; ps -o stat= | grep -c Z; kill -9 $$')
    // The orphaned sleep exited while its parent lived on: as PID 1 the runner reaped it, so no zombie.
    expect(result.stdout.toString().trim()).to.equal('0')
    expect(result.exitCode).to.equal(137)
  })

  it('forwards a signal the container gets to the function', async () => {
    const call = spec({image: TEST_IMAGES.sh, input: Buffer.from("trap 'echo got TERM; exit 0' TERM; echo up >&2; while :; do sleep 0.05; done")})
    let up!: () => void
    const running = new Promise<void>((resolve) => (up = resolve))
    const done = runner.run({...call, onStderr: (chunk) => chunk.toString().includes('up') && up()})
    await running
    await execa(DOCKER, ['kill', '--signal', 'TERM', `amp-${call.callId}`])
    const result = await done
    expect([result.outcome, result.exitCode, result.stdout.toString()]).to.deep.equal(['exited', 0, 'got TERM\n'])
  })

  it('kills a call at its timeout, whole container, and leaves none', async () => {
    const call = spec({image: TEST_IMAGES.sleep, timeoutMs: 1000})
    const result = await runner.run(call)
    expect(result.outcome).to.equal('timeout')
    expect(result.killed).to.equal('timeout')
    await expectNoContainer(call.callId)
  })

  it("runs a call's next delivery while the container of an earlier one is still there (a retry, a dead worker's leftover)", async () => {
    const call = spec()
    // What an earlier delivery left on this Docker host, under the name it ran with.
    await execa(DOCKER, ['run', '--detach', '--name', `amp-${call.callId}`, '--label', `amp.worker=${workerId}`, '--network', 'none', TEST_IMAGES.sleep])
    const again = await runner.run({...call, run: 2})
    expect([again.outcome, again.stdout.toString()], again.error).to.deep.equal(['exited', 'hello'])
    // Not this delivery's to remove: the sweep of dead workers' containers does that.
    expect(await containers(`name=^amp-${call.callId}$`, {running: true})).to.have.length(1)
    await execa(DOCKER, ['rm', '--force', `amp-${call.callId}`])
  })

  it('reports a command the image does not have as docker does: the call fails, naming the image', async () => {
    // amp-test/cat's command is /bin/cat; an image whose command is missing is the same to the runner as any exec failure.
    const result = await sh('exec /no/such/file', {})
    expect(result.exitCode).to.equal(127)
  })

  it('falls back for an image it cannot read the command of, with the same note each time (the worker logs it once)', async () => {
    const first = await runner.run(spec({image: TEST_IMAGES.nocmd}))
    const second = await runner.run(spec({image: TEST_IMAGES.nocmd}))
    // What docker itself says without the runner: the image has no command.
    for (const result of [first, second]) {
      expect(result.outcome).to.equal('failed')
      expect(result.error).to.equal(`cannot run ${TEST_IMAGES.nocmd}: Error response from daemon: No command specified`)
    }
    // One key for both: the worker logs each key once.
    const keys = notes.filter(([key]) => key.includes(TEST_IMAGES.nocmd)).map(([key]) => key)
    expect(keys).to.have.length(2)
    expect(new Set(keys).size).to.equal(1)
    expect(runner.usesRunner).to.equal(true)
  })

  it('falls back when the engine cannot mount the runner (a remote DOCKER_HOST): says so once, and stops trying', async () => {
    const said: string[] = []
    const exec = ((file: string, args: string[], options: object) => {
      if (args[0] === 'run') said.push(args.includes('--detach') ? 'runner' : 'plain')
      if (args[0] === 'rm') said.push('rm')
      return execa(file, args, options)
    }) as unknown as typeof execa
    const remote = new ContainerRunner({
      docker: DOCKER,
      workerId,
      exec,
      runner: {binary: '/nowhere/amp-runner', socketDir: prepared.files!.socketDir},
      note: (key) => said.push(`note: ${key}`),
    })
    try {
      const first = await remote.run(spec({image: TEST_IMAGES.upper}))
      const second = await remote.run(spec({image: TEST_IMAGES.upper}))
      expect([first.stdout.toString(), second.stdout.toString()], JSON.stringify({said, first: {...first, stdout: first.stdout.toString(), stderr: first.stderr.toString()}})).to.deep.equal(['HELLO', 'HELLO'])
      // The failed runner container is gone before the plain run takes its name.
      expect(said).to.deep.equal(['runner', 'rm', 'note: runner unusable', 'plain', 'plain'])
      expect(remote.usesRunner).to.equal(false)
    } finally {
      await remote.close()
    }
  })
})
