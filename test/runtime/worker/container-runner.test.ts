import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {hostname, tmpdir} from 'node:os'
import path from 'node:path'

import {
  ContainerRunner,
  containerName,
  dockerFailure,
  dockerRunArgs,
  prestartArgs,
  prestartKey,
  runnerArgs,
  type ContainerRunnerOptions,
  type RunSpec,
} from '../../../src/runtime/worker/container-runner.js'
import {AmpError} from '../../../src/runtime/shared/errors.js'
import {waitUntil} from '../../helpers/wait.js'

const spec = (overrides: Partial<RunSpec> = {}): RunSpec => ({
  callId: 'c0ffee-1234',
  function: 'my-fn',
  image: 'busybox:1.36',
  network: 'none',
  timeoutMs: 30_000,
  memoryBytes: 256 * 1024 * 1024,
  cpus: 1,
  pidsLimit: 256,
  env: {},
  input: new Uint8Array(0),
  ...overrides,
})

describe('container-runner', () => {
  describe('dockerRunArgs', () => {
    it('builds the exact docker run argument array, image last and right after --', () => {
      expect(dockerRunArgs(spec(), 'w-1', 'missing')).to.deep.equal([
        'run',
        '--interactive',
        '--rm',
        '--name',
        'amp-c0ffee-1234',
        '--label',
        'amp.managed=true',
        '--label',
        'amp.call=c0ffee-1234',
        '--label',
        'amp.function=my-fn',
        '--label',
        'amp.worker=w-1',
        '--label',
        `amp.worker-host=${hostname()}`,
        '--label',
        `amp.worker-pid=${process.pid}`,
        '--network',
        'none',
        '--security-opt',
        'no-new-privileges',
        '--cap-drop',
        'ALL',
        '--pids-limit',
        '256',
        '--memory',
        '268435456',
        '--memory-swap',
        '268435456',
        '--cpus',
        '1',
        '--log-driver',
        'none',
        '--pull',
        'missing',
        '--',
        'busybox:1.36',
      ])
    })

    it('passes the network and pull policy through', () => {
      const args = dockerRunArgs(spec({network: 'bridge'}), 'w-1', 'never')
      expect(args[args.indexOf('--network') + 1]).to.equal('bridge')
      expect(args[args.indexOf('--pull') + 1]).to.equal('never')
      expect(args.at(-2)).to.equal('--')
      expect(args.indexOf('--')).to.equal(args.length - 2)
    })

    it("passes the function's limits, with memory+swap equal to memory (no swap)", () => {
      const args = dockerRunArgs(spec({memoryBytes: 512 * 1024 * 1024, cpus: 0.5, pidsLimit: 64}), 'w-1', 'missing')
      const value = (flag: string) => args[args.indexOf(flag) + 1]
      expect([value('--memory'), value('--memory-swap'), value('--cpus'), value('--pids-limit')]).to.deep.equal([
        '536870912',
        '536870912',
        '0.5',
        '64',
      ])
      expect(args.indexOf('--')).to.equal(args.length - 2)
    })

    it('gives the environment as --env-file /dev/fd/3: neither names nor values are in argv', () => {
      const args = dockerRunArgs(spec({env: {API_TOKEN: 's3cr3t-value', LEVEL: 'debug'}}), 'w-1', 'missing')
      expect(args.slice(args.indexOf('--env-file'), args.indexOf('--env-file') + 2)).to.deep.equal(['--env-file', '/dev/fd/3'])
      expect(args.join(' ')).to.not.match(/s3cr3t|debug|API_TOKEN|LEVEL/)
      expect(args).to.not.include('--env')
      expect(args.indexOf('--')).to.equal(args.length - 2)
    })

    it('passes no --env-file when the function has no environment', () => {
      expect(dockerRunArgs(spec(), 'w-1', 'missing')).to.not.include('--env-file')
    })

    it('names the container after the call, and after its delivery from the second on', () => {
      expect(containerName('abc')).to.equal('amp-abc')
      expect(containerName('abc', 1)).to.equal('amp-abc')
      expect(containerName('abc', 3)).to.equal('amp-abc-3')
      const args = dockerRunArgs(spec({run: 2}), 'w-1', 'missing')
      expect(args[args.indexOf('--name') + 1]).to.equal('amp-c0ffee-1234-2')
      // The label stays the call's: what finds a call's containers finds every delivery's.
      expect(args).to.include('amp.call=c0ffee-1234')
    })

    const hostile: Array<[string, () => string[]]> = [
      ['an image that is a flag', () => dockerRunArgs(spec({image: '--privileged'}), 'w', 'missing')],
      ['an image that mounts the host', () => dockerRunArgs(spec({image: '-v/:/host'}), 'w', 'missing')],
      ['an image with a newline', () => dockerRunArgs(spec({image: 'busybox\n--privileged'}), 'w', 'missing')],
      ['the host network', () => dockerRunArgs(spec({network: 'host'}), 'w', 'missing')],
      ['a container network', () => dockerRunArgs(spec({network: 'container:abc'}), 'w', 'missing')],
      ['a network that is a flag', () => dockerRunArgs(spec({network: '--privileged'}), 'w', 'missing')],
      ['an invalid function name', () => dockerRunArgs(spec({function: 'Bad_Name'}), 'w', 'missing')],
      ['a call id with a separator', () => dockerRunArgs(spec({callId: 'a;b'}), 'w', 'missing')],
      ['a call id with a space', () => dockerRunArgs(spec({callId: 'a b'}), 'w', 'missing')],
      ['an empty call id', () => dockerRunArgs(spec({callId: ''}), 'w', 'missing')],
      ['a call id of 65 characters', () => dockerRunArgs(spec({callId: 'a'.repeat(65)}), 'w', 'missing')],
      ['a delivery of 0', () => dockerRunArgs(spec({run: 0}), 'w', 'missing')],
      ['a fractional delivery', () => dockerRunArgs(spec({run: 1.5}), 'w', 'missing')],
      ['a NaN delivery', () => dockerRunArgs(spec({run: Number.NaN}), 'w', 'missing')],
      ['a pull policy that is a flag', () => dockerRunArgs(spec(), 'w', '--privileged' as never)],
      ['a worker id with a newline', () => dockerRunArgs(spec(), 'w\n--privileged', 'missing')],
      ['an empty worker id', () => dockerRunArgs(spec(), '', 'missing')],
      ['memory under docker\'s 6 MiB', () => dockerRunArgs(spec({memoryBytes: 1024 * 1024}), 'w', 'missing')],
      ['a fractional memory size', () => dockerRunArgs(spec({memoryBytes: 7.5 * 1024 * 1024 + 0.5}), 'w', 'missing')],
      ['no CPUs', () => dockerRunArgs(spec({cpus: 0}), 'w', 'missing')],
      ['NaN CPUs', () => dockerRunArgs(spec({cpus: Number.NaN}), 'w', 'missing')],
      ['a pids limit of 1', () => dockerRunArgs(spec({pidsLimit: 1}), 'w', 'missing')],
      ['an unlimited (-1) pids limit', () => dockerRunArgs(spec({pidsLimit: -1}), 'w', 'missing')],
      ['an env name that is a flag', () => dockerRunArgs(spec({env: {'--privileged': 'x'}}), 'w', 'missing')],
      ['an env value with a newline', () => dockerRunArgs(spec({env: {A: 'x\nB=y'}}), 'w', 'missing')],
    ]
    for (const [why, build] of hostile) {
      it(`throws, building nothing, for ${why}`, () => {
        let args: string[] | undefined
        expect(() => {
          args = build()
        }).to.throw()
        expect(args).to.equal(undefined)
      })
    }

    it('refuses invalid names and images as bad requests (exit 2)', () => {
      expect(() => dockerRunArgs(spec({image: '--privileged'}), 'w', 'missing'))
        .to.throw(AmpError)
        .with.property('code', 'bad_request')
    })
  })

  describe('prestartArgs and prestartKey', () => {
    const NAME = 'amp-0e4c2a4e-3c1b-4d5e-9f00-123456789abc'

    it('builds the same hardened command as a call, without --rm and amp.call, under the given random name', () => {
      const call = dockerRunArgs(spec({env: {A: '1'}}), 'w-1', 'missing')
      const pooled = prestartArgs(spec({env: {A: '1'}}), 'w-1', 'missing', NAME)
      expect(pooled).to.not.include('--rm')
      expect(pooled.join(' ')).to.not.contain('amp.call=')
      expect(pooled[pooled.indexOf('--name') + 1]).to.equal(NAME)
      expect(pooled).to.include('amp.prestarted=true')
      // Everything from the network on (limits, hardening, env file, pull, image) is the same.
      expect(pooled.slice(pooled.indexOf('--network'))).to.deep.equal(call.slice(call.indexOf('--network')))
      expect(() => prestartArgs(spec(), 'w-1', 'missing', '--privileged')).to.throw()
    })

    it('gives equal settings one key, whatever the order of the environment, and any difference another', () => {
      const key = (overrides: Partial<RunSpec>, pull: 'missing' | 'never' = 'missing') => prestartKey(spec(overrides), pull)
      expect(key({env: {A: '1', B: '2'}})).to.equal(key({env: {B: '2', A: '1'}}))
      const base = key({env: {A: '1'}})
      for (const other of [
        key({env: {A: '2'}}),
        key({env: {}}),
        key({env: {A: '1'}, image: 'busybox:2'}),
        key({env: {A: '1'}, network: 'bridge'}),
        key({env: {A: '1'}, memoryBytes: 64 * 1024 * 1024}),
        key({env: {A: '1'}, cpus: 0.5}),
        key({env: {A: '1'}, pidsLimit: 64}),
        key({env: {A: '1'}, function: 'other'}),
        key({env: {A: '1'}}, 'never'),
      ]) {
        expect(other).to.not.equal(base)
      }
    })
  })

  describe('runnerArgs', () => {
    const command = {id: `sha256:${'b'.repeat(64)}`, argv: ['/bin/tr', 'a-z', 'A-Z']}
    const files = {socket: '/run/amp/1-abcdef/1.sock', binary: '/opt/amp/dist/runner/amp-runner'}
    const NAME = 'amp-0e4c2a4e-3c1b-4d5e-9f00-123456789abc'

    it('starts the container detached with the runner as entrypoint, its files mounted read-only, the image by id and its own command after', () => {
      const args = runnerArgs(spec({env: {TOKEN: 's3cret'}}), 'w-1', {name: NAME, labels: {'amp.prestarted': 'true'}, command, ...files})
      expect(args.slice(0, 5)).to.deep.equal(['run', '--detach', '--rm', '--name', NAME])
      expect(args).to.include('amp.runner=true').and.include('amp.prestarted=true')
      expect(args.slice(args.indexOf('--mount'), args.indexOf('--mount') + 4)).to.deep.equal([
        '--mount',
        `type=bind,source=${files.binary},target=/.amp-runner,readonly`,
        '--mount',
        `type=bind,source=${files.socket},target=/.amp-socket,readonly`,
      ])
      expect(args.slice(args.indexOf('--entrypoint'))).to.deep.equal(['--entrypoint', '/.amp-runner', '--', command.id, 'serve', '/.amp-socket', '/bin/tr', 'a-z', 'A-Z'])
      expect(args.slice(args.indexOf('--pull'), args.indexOf('--pull') + 2)).to.deep.equal(['--pull', 'never'])
      // The same hardening and limits as any call, and the environment by file only.
      const call = dockerRunArgs(spec({env: {TOKEN: 's3cret'}}), 'w-1', 'missing')
      expect(args.slice(args.indexOf('--network'), args.indexOf('--pull'))).to.deep.equal(call.slice(call.indexOf('--network'), call.indexOf('--pull')))
      expect(args.join(' ')).to.contain('--env-file /dev/fd/3').and.not.contain('s3cret').and.not.contain('TOKEN')
    })

    it('refuses paths docker would parse as more mount options, and an image that is not an id', () => {
      for (const socket of ['/run/amp/a,target=/etc', 'relative.sock', '/run/amp/a b.sock', '/run/amp/"x"']) {
        expect(() => runnerArgs(spec(), 'w-1', {name: NAME, labels: {}, command, ...files, socket})).to.throw('invalid runner path')
      }
      expect(() => runnerArgs(spec(), 'w-1', {name: NAME, labels: {}, command: {...command, id: 'busybox:1'}, ...files})).to.throw('invalid image id')
    })

    it('keys pools of runner containers by the image id, its command and how the container is used too', () => {
      const plain = prestartKey(spec(), 'missing')
      const runner = (extra: object) => prestartKey({...spec(), command, reuse: false, reuseMaxCalls: 1000, ...extra}, 'missing')
      expect(runner({})).to.not.equal(plain)
      expect(runner({command: {...command, id: `sha256:${'c'.repeat(64)}`}})).to.not.equal(runner({}))
      expect(runner({command: {...command, argv: ['/bin/cat']}})).to.not.equal(runner({}))
      expect(runner({reuse: true})).to.not.equal(runner({}))
      expect(runner({reuse: true, reuseMaxCalls: 5})).to.not.equal(runner({reuse: true}))
    })
  })

  describe('dockerFailure', () => {
    it("reports docker's reason for a missing image (exit 125)", () => {
      const stderr =
        "docker: Error response from daemon: No such image: amp-test/nope:1.\nSee 'docker run --help'.\n"
      expect(dockerFailure(125, stderr)).to.equal('Error response from daemon: No such image: amp-test/nope:1.')
    })

    it('reads the message layout of newer docker CLIs', () => {
      const stderr =
        "docker: Error response from daemon: No such image: amp-test/nope:1\n\nRun 'docker run --help' for more information\n"
      expect(dockerFailure(125, stderr)).to.equal('Error response from daemon: No such image: amp-test/nope:1')
    })

    it('skips the "Unable to find image" progress line and reports the pull failure', () => {
      const stderr = [
        "Unable to find image 'nope:latest' locally",
        "docker: Error response from daemon: pull access denied for nope, repository does not exist or may require 'docker login'.",
        "See 'docker run --help'.",
      ].join('\n')
      expect(dockerFailure(125, stderr)).to.match(/^Error response from daemon: pull access denied for nope/)
    })

    it('reports a daemon that does not answer', () => {
      const stderr = 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?'
      expect(dockerFailure(125, stderr)).to.equal(stderr)
    })

    it('reports an entrypoint docker cannot execute (126/127)', () => {
      const stderr =
        'docker: Error response from daemon: failed to create task for container: exec: "/fn": permission denied: unknown.'
      expect(dockerFailure(126, stderr)).to.match(/^Error response from daemon: failed to create task/)
      expect(dockerFailure(127, stderr.replace('permission denied', 'no such file or directory'))).to.match(
        /no such file or directory/,
      )
    })

    it("takes 126/127 with only the function's own stderr for the function's exit code", () => {
      expect(dockerFailure(127, 'sh: frobnicate: not found\n')).to.equal(undefined)
      expect(dockerFailure(126, 'sh: ./run: Permission denied\n')).to.equal(undefined)
      expect(dockerFailure(126, '')).to.equal(undefined)
    })

    it('never takes an ordinary exit code for a docker failure, whatever the stderr says', () => {
      expect(dockerFailure(3, 'boom')).to.equal(undefined)
      expect(dockerFailure(1, 'docker: Error response from daemon: No such image: x')).to.equal(undefined)
      expect(dockerFailure(137, '')).to.equal(undefined)
      expect(dockerFailure(0, '')).to.equal(undefined)
    })

    it('still fails a silent exit 125 (docker gave no reason)', () => {
      expect(dockerFailure(125, '')).to.equal('docker failed to run the container')
    })
  })


  describe('ContainerRunner.run with a stand-in docker CLI', function () {
    this.timeout(20_000)
    let dir: string
    let fakeDocker: string

    before(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'amp-test-fake-docker-'))
      fakeDocker = path.join(dir, 'fake-docker.mjs')
      writeFileSync(fakeDocker, FAKE_DOCKER)
    })
    after(() => rmSync(dir, {recursive: true, force: true}))

    interface Invocation {
      file: string
      args: string[]
      at: number
    }

    /**
     * An `exec` that runs fake-docker.mjs (a real child process) in place of the docker CLI and records every
     * invocation. FAKE_RUN picks what `docker run` does; `docker kill` ends the matching `docker run` the way
     * the real one does (its CLI exits 137), after failing FAKE_KILL_FAILS times with "No such container".
     */
    function standIn(run: string, env: Record<string, string> = {}) {
      const calls: Invocation[] = []
      let runExitedAt: number | undefined
      const state = mkdtempSync(path.join(dir, 'state-'))
      const exec = ((file: string, args: readonly string[], options: Record<string, unknown>) => {
        calls.push({file, args: [...args], at: Date.now()})
        const child = execa(process.execPath, [fakeDocker, ...args], {
          ...options,
          env: {FAKE_RUN: run, FAKE_STATE: state, ...env},
        })
        if (args[0] === 'run') child.finally(() => (runExitedAt = Date.now())).catch(() => {})
        return child
      }) as unknown as ContainerRunnerOptions['exec']
      // The stand-in writes its pid file once it is ready to be killed as docker run is.
      const started = (name: string) => existsSync(path.join(state, `${name}.pid`))
      // The 'early' stand-in has written its greeting.
      const greeted = (name: string) => existsSync(path.join(state, `${name}.greeted`))
      return {calls, exec, started, greeted, runExitedAt: () => runExitedAt, commands: () => calls.map((call) => call.args[0])}
    }

    const runner = (exec: ContainerRunnerOptions['exec'], options: Partial<ContainerRunnerOptions> = {}) =>
      new ContainerRunner({docker: 'docker-cli', workerId: 'w-1', exec, ...options})

    it('runs docker with the validated arguments, pipes the input in and the output out byte for byte', async () => {
      const fake = standIn('cat')
      const input = randomBytes(1024 * 1024 + 7)
      input[0] = 0
      const result = await runner(fake.exec, {pull: 'never'}).run(spec({input}))
      expect(fake.calls).to.have.length(1)
      expect(fake.calls[0].file).to.equal('docker-cli')
      expect(fake.calls[0].args).to.deep.equal(dockerRunArgs(spec(), 'w-1', 'never'))
      expect(result.outcome).to.equal('exited')
      expect(result.exitCode).to.equal(0)
      expect(result.error).to.equal(undefined)
      expect(Buffer.compare(result.stdout, input)).to.equal(0)
      expect(result.stderr.toString()).to.equal(`read ${input.length}\n`)
      expect(result.stderrTruncated).to.equal(false)
    })

    it('hands the environment to docker as the file on its fd 3, gone from every directory', async () => {
      const fake = standIn('envfile')
      const env = {LEVEL: 'debug', TOKEN: 's3cr3t = with spaces\tand tab', EMPTY: ''}
      const result = await runner(fake.exec).run(spec({env}))
      expect(result.outcome, result.stderr.toString()).to.equal('exited')
      expect(result.stdout.toString()).to.equal('EMPTY=\nLEVEL=debug\nTOKEN=s3cr3t = with spaces\tand tab\n')
      // The file was unlinked before docker ran: no name for it was left in the directory.
      expect(result.stderr.toString()).to.equal('linked 0\n')
      expect(fake.calls[0].args.join(' ')).to.not.contain('s3cr3t')
    })

    it("passes a function's exit code through, with its stdout and stderr", async () => {
      const fake = standIn('exit3')
      const result = await runner(fake.exec).run(spec({input: Buffer.from('in')}))
      expect(result).to.include({outcome: 'exited', exitCode: 3})
      expect(result.error).to.equal(undefined)
      expect(result.stdout.toString()).to.equal('in')
      expect(result.stderr.toString()).to.equal('boom')
      expect(fake.commands()).to.deep.equal(['run'])
    })

    it('keeps a function exit 127 with its own stderr as the exit code', async () => {
      const result = await runner(standIn('exit127').exec).run(spec())
      expect(result).to.include({outcome: 'exited', exitCode: 127})
      expect(result.stderr.toString()).to.equal('sh: frobnicate: not found\n')
    })

    it("fails with docker's reason (and no stderr) when docker cannot run the image", async () => {
      const result = await runner(standIn('nosuchimage').exec).run(spec())
      expect(result.outcome).to.equal('failed')
      expect(result.exitCode).to.equal(undefined)
      expect(result.error).to.equal('cannot run busybox:1.36: Error response from daemon: No such image: busybox:1.36.')
      expect(result.stderr).to.have.length(0)
    })

    it('does not fail a function that exits without reading all its input', async () => {
      const result = await runner(standIn('noread').exec).run(spec({input: Buffer.alloc(8 * 1024 * 1024, 1)}))
      expect(result).to.include({outcome: 'exited', exitCode: 0})
      expect(result.stdout.toString()).to.equal('done')
    })

    it('fails with what to do when the docker CLI is missing', async () => {
      const result = await new ContainerRunner({docker: path.join(dir, 'no-such-docker'), workerId: 'w-1'}).run(spec())
      expect(result.outcome).to.equal('failed')
      expect(result.error).to.match(/docker CLI not found \(.*no-such-docker\): install docker or set --docker/)
    })

    it('on timeout kills the container by name, retrying until it exists, then removes it', async () => {
      const fake = standIn('sleep', {FAKE_KILL_FAILS: '2'})
      const started = Date.now()
      const result = await runner(fake.exec).run(spec({timeoutMs: 300}))
      const elapsed = Date.now() - started
      expect(result.outcome).to.equal('timeout')
      expect(result.exitCode).to.equal(undefined)
      expect(elapsed).to.be.within(300, 5000)

      const name = 'amp-c0ffee-1234'
      expect(fake.calls.map((call) => call.args)).to.deep.equal([
        dockerRunArgs(spec(), 'w-1', 'missing'),
        ['kill', '--signal', 'KILL', name],
        ['kill', '--signal', 'KILL', name],
        ['kill', '--signal', 'KILL', name],
        ['rm', '--force', name],
      ])
      const firstKill = fake.calls[1].at
      expect(firstKill - started).to.be.within(250, 2000)
      // rm only once docker run has returned, so it cannot race the container's creation.
      expect(fake.calls[4].at).to.be.at.least(fake.runExitedAt()!)
    })

    it('on timeout answers only once the container is gone, asking again while docker says its removal is in progress', async () => {
      const fake = standIn('sleep', {FAKE_RM_IN_PROGRESS: '2'})
      const result = await runner(fake.exec).run(spec({timeoutMs: 300}))
      expect(result.outcome).to.equal('timeout')
      const name = 'amp-c0ffee-1234'
      expect(fake.calls.slice(1).map((call) => call.args)).to.deep.equal([
        ['kill', '--signal', 'KILL', name],
        ['rm', '--force', name],
        ['rm', '--force', name],
        ['rm', '--force', name],
      ])
    })

    it('kills the container and fails the call when stdout passes the limit, keeping exactly the limit', async () => {
      const fake = standIn('flood')
      const result = await runner(fake.exec, {maxOutputBytes: 64 * 1024}).run(spec())
      expect(result.outcome).to.equal('failed')
      expect(result.error).to.equal('function output exceeded the 64 KiB limit')
      expect(result.stdout).to.have.length(64 * 1024)
      expect(result.stdout.every((byte) => byte === 0x61)).to.equal(true)
      expect(fake.commands()).to.deep.equal(['run', 'kill', 'rm'])
    })

    it('truncates stderr at its limit without failing the call', async () => {
      const fake = standIn('stderrflood')
      const result = await runner(fake.exec, {maxStderrBytes: 1000}).run(spec())
      expect(result).to.include({outcome: 'exited', exitCode: 0, stderrTruncated: true})
      expect(result.stderr).to.have.length(1000)
      expect(result.stdout.toString()).to.equal('ok')
      expect(fake.commands()).to.deep.equal(['run'])
    })

    it('killAll stops running calls (worker shutdown) and leaves nothing running', async () => {
      const fake = standIn('sleep')
      const r = runner(fake.exec)
      const running = r.run(spec({timeoutMs: 60_000}))
      await until('the call to run', () => r.active === 1 && fake.started('amp-c0ffee-1234'))
      r.killAll()
      const result = await running
      expect(result.outcome).to.equal('failed')
      expect(result.error).to.equal('the worker shut down before the call finished')
      expect(r.active).to.equal(0)
      expect(fake.calls.slice(1).map((call) => call.args)).to.deep.equal([
        ['kill', '--signal', 'KILL', 'amp-c0ffee-1234'],
        ['rm', '--force', 'amp-c0ffee-1234'],
      ])
    })

    it("cancel kills one call's container (its listener is gone) and leaves the others running", async () => {
      const fake = standIn('sleep')
      const r = runner(fake.exec)
      const running = r.run(spec({timeoutMs: 60_000}))
      const other = r.run(spec({callId: 'other-call', timeoutMs: 60_000}))
      await until('both calls to run', () => r.active === 2 && fake.started('amp-c0ffee-1234') && fake.started('amp-other-call'))
      expect(r.cancel('unknown-call')).to.equal(false)
      expect(r.cancel('c0ffee-1234')).to.equal(true)
      const result = await running
      expect(result).to.include({outcome: 'failed', killed: 'caller', error: 'nobody waits for the call any more'})
      expect(r.active).to.equal(1)
      expect(fake.calls.slice(2).map((call) => call.args)).to.deep.equal([
        ['kill', '--signal', 'KILL', 'amp-c0ffee-1234'],
        ['rm', '--force', 'amp-c0ffee-1234'],
      ])
      r.killAll()
      expect((await other).killed).to.equal('shutdown')
    })

    /** The pre-started container the runner's pool started: its docker run arguments and name. */
    const prestartedRun = (calls: Invocation[]) => {
      const run = calls.find((call) => call.args[0] === 'run' && !call.args.includes('--rm'))
      return run && {args: run.args, name: run.args[run.args.indexOf('--name') + 1]}
    }

    it('serves the next call from a pre-started container: input to its stdin, the same result as a fresh run, removed after', async () => {
      const fake = standIn('exit3')
      const pooled = runner(fake.exec, {prestartMax: 1})
      try {
        const cold = await pooled.run(spec({input: Buffer.from('one')}))
        expect(cold).to.include({outcome: 'exited', exitCode: 3})
        expect(cold.warm).to.equal(undefined)
        // Started once the cold call is over, not while it ran.
        await until('a container to be pre-started', () => prestartedRun(fake.calls) !== undefined)
        const started = prestartedRun(fake.calls)
        expect(started?.name).to.match(/^amp-[0-9a-f-]{36}$/)
        expect(started?.args).to.include('amp.prestarted=true').and.not.include(`amp.call=${spec().callId}`)
        const warm = await pooled.run(spec({callId: 'c0ffee-5678', input: Buffer.from('two')}))
        expect(warm).to.include({outcome: 'exited', exitCode: 3, warm: true})
        expect(warm.stdout.toString()).to.equal('two')
        expect(warm.stderr.toString()).to.equal('boom')
        await pooled.close()
        expect(fake.calls.filter((call) => call.args[0] === 'rm').map((call) => call.args)).to.deep.include(['rm', '--force', started!.name])
      } finally {
        await pooled.close()
      }
    })

    it("gives a warm call what its container wrote before the call's input came, stdout and stderr", async () => {
      const fake = standIn('early')
      const pooled = runner(fake.exec, {prestartMax: 1})
      try {
        await pooled.run(spec({input: Buffer.from('one')}))
        // Let the pre-started one start and write its greeting before any call takes it.
        await until('the pre-started container to write its greeting', () => {
          const prestarted = prestartedRun(fake.calls)
          return prestarted !== undefined && fake.greeted(prestarted.name)
        })
        const stdout: Buffer[] = []
        const warm = await pooled.run(spec({callId: 'c0ffee-5678', input: Buffer.from('two'), onStdout: (chunk) => stdout.push(chunk)}))
        expect(warm).to.include({outcome: 'exited', exitCode: 0, warm: true})
        expect(warm.stdout.toString()).to.equal('hello two')
        expect(Buffer.concat(stdout).toString()).to.equal('hello two')
        expect(warm.stderr.toString()).to.equal('started\n')
      } finally {
        await pooled.close()
      }
    })

    it('kills a warm call at its timeout by the name of its pre-started container', async () => {
      const fake = standIn('sleep')
      const pooled = runner(fake.exec, {prestartMax: 1})
      try {
        expect(await pooled.run(spec({timeoutMs: 200}))).to.include({outcome: 'timeout'})
        await until('a container to be pre-started', () => prestartedRun(fake.calls) !== undefined)
        const {name} = prestartedRun(fake.calls)!
        const warm = await pooled.run(spec({callId: 'c0ffee-5678', timeoutMs: 200}))
        expect(warm).to.include({outcome: 'timeout', killed: 'timeout', warm: true})
        expect(fake.calls.filter((call) => call.args[0] === 'kill').map((call) => call.args.at(-1))).to.include(name)
      } finally {
        await pooled.close()
      }
    })

    it('close() removes the idle pre-started containers and leaves no docker run behind', async () => {
      const fake = standIn('cat')
      const pooled = runner(fake.exec, {prestartMax: 1})
      await pooled.run(spec())
      await until('a container to be pre-started', () => prestartedRun(fake.calls) !== undefined)
      const {name} = prestartedRun(fake.calls)!
      await pooled.close()
      expect(fake.calls.at(-1)?.args).to.deep.equal(['rm', '--force', name])
      expect(fake.runExitedAt()).to.be.a('number')
      expect(pooled.prestarted).to.equal(0)
    })

    it('measures the duration with the injected clock', async () => {
      const times = [1000, 1234]
      const result = await runner(standIn('cat').exec, {now: () => times.shift() ?? 9999}).run(spec())
      expect(result.durationMs).to.equal(234)
    })

    it('refuses a hostile spec before running anything', async () => {
      const fake = standIn('cat')
      let thrown: unknown
      try {
        await runner(fake.exec).run(spec({image: '--privileged'}))
      } catch (error) {
        thrown = error
      }
      expect(thrown).to.be.instanceOf(AmpError)
      expect(fake.calls).to.deep.equal([])
    })
  })

  describe('ContainerRunner.removeOrphans', () => {
    it("removes only the containers of this host's dead workers", async () => {
      const calls: string[][] = []
      const listing = [
        `amp-dead1\t4242`,
        `amp-alive\t777`,
        `amp-mine\t${process.pid}`,
        `not-amp\t4242`,
        `amp-bad;name\t4242`,
        `amp-dead2\t`,
        '',
      ].join('\n')
      const exec = (async (_file: string, args: readonly string[]) => {
        calls.push([...args])
        return {stdout: args[0] === 'ps' ? listing : '', failed: false, exitCode: 0}
      }) as unknown as ContainerRunnerOptions['exec']
      const removed = await new ContainerRunner({workerId: 'w-1', exec}).removeOrphans((pid) => pid === 777)
      expect(removed).to.deep.equal(['amp-dead1', 'amp-dead2'])
      expect(calls[0]).to.include.members(['ps', '--all', 'label=amp.managed=true', `label=amp.worker-host=${hostname()}`])
      expect(calls.slice(1)).to.deep.equal([['rm', '--force', 'amp-dead1', 'amp-dead2']])
    })

    it('removes nothing when docker cannot list containers', async () => {
      const calls: string[][] = []
      const exec = (async (_file: string, args: readonly string[]) => {
        calls.push([...args])
        return {stdout: '', failed: true, exitCode: 1}
      }) as unknown as ContainerRunnerOptions['exec']
      expect(await new ContainerRunner({workerId: 'w-1', exec}).removeOrphans(() => false)).to.deep.equal([])
      expect(calls).to.have.length(1)
    })
  })
})


const until = (what: string, check: () => boolean) => waitUntil(what, check, 5000, 10)

/** Stands in for the docker CLI: `run` behaves as FAKE_RUN says, `kill` and `rm` act on the `run` of that name. */
const FAKE_DOCKER = String.raw`
import {existsSync, readFileSync, writeFileSync, unlinkSync} from 'node:fs'
import path from 'node:path'

const [command, ...args] = process.argv.slice(2)
const state = process.env.FAKE_STATE
const pidFile = (name) => path.join(state, name + '.pid')

function readAll() {
  const parts = []
  return new Promise((resolve) => {
    process.stdin.on('data', (chunk) => parts.push(chunk))
    process.stdin.on('end', () => resolve(Buffer.concat(parts)))
  })
}

if (command === 'run') {
  const name = args[args.indexOf('--name') + 1]
  // What the docker CLI does when its container is killed; set before the pid file says it can be.
  process.on('SIGTERM', () => process.exit(137))
  writeFileSync(pidFile(name), String(process.pid))
  switch (process.env.FAKE_RUN) {
    case 'cat': {
      const input = await readAll()
      process.stderr.write('read ' + input.length + '\n')
      process.stdout.write(input)
      break
    }
    case 'early': {
      // Writes before reading its input: a pre-started container's output from before its call belongs to that call.
      process.stderr.write('started\n')
      process.stdout.write('hello ')
      // Said once both are in the pipes (writes to a pipe are synchronous), for a test to wait on.
      writeFileSync(path.join(state, name + '.greeted'), '')
      process.stdout.write(await readAll())
      break
    }
    case 'envfile': {
      // What docker does with --env-file /dev/fd/3: open the path and read it (a socket could not be opened).
      const file = args[args.indexOf('--env-file') + 1]
      process.stdout.write(readFileSync(file))
      const {statSync} = await import('node:fs')
      process.stderr.write('linked ' + statSync(file).nlink + '\n')
      break
    }
    case 'exit3': {
      process.stdout.write(await readAll())
      process.stderr.write('boom')
      process.exitCode = 3
      break
    }
    case 'exit127':
      process.stderr.write('sh: frobnicate: not found\n')
      process.exitCode = 127
      break
    case 'nosuchimage':
      process.stderr.write("docker: Error response from daemon: No such image: " + args.at(-1) + ".\nSee 'docker run --help'.\n")
      process.exitCode = 125
      break
    case 'noread':
      process.stdout.write('done')
      process.exit(0)
    case 'sleep':
      setInterval(() => {}, 1000)
      break
    case 'flood': {
      const block = Buffer.alloc(16 * 1024, 'a')
      const write = () => { while (process.stdout.write(block)); process.stdout.once('drain', write) }
      write()
      break
    }
    case 'stderrflood':
      process.stderr.write(Buffer.alloc(5000, 'e'))
      process.stdout.write('ok')
      break
    default:
      process.stderr.write('fake docker: unknown FAKE_RUN\n')
      process.exitCode = 99
  }
} else if (command === 'kill') {
  const name = args.at(-1)
  const fails = path.join(state, 'kill-failures')
  const failed = existsSync(fails) ? Number(readFileSync(fails, 'utf8')) : 0
  if (failed < Number(process.env.FAKE_KILL_FAILS ?? 0) || !existsSync(pidFile(name))) {
    writeFileSync(fails, String(failed + 1))
    process.stderr.write('Error response from daemon: No such container: ' + name + '\n')
    process.exit(1)
  }
  try { process.kill(Number(readFileSync(pidFile(name), 'utf8')), 'SIGTERM') } catch {}
  unlinkSync(pidFile(name))
  process.stdout.write(name + '\n')
} else if (command === 'rm') {
  // As docker answers while its own removal (--rm) of a container that just exited is under way, FAKE_RM_IN_PROGRESS times.
  const busy = path.join(state, 'rm-in-progress')
  const answered = existsSync(busy) ? Number(readFileSync(busy, 'utf8')) : 0
  if (answered < Number(process.env.FAKE_RM_IN_PROGRESS ?? 0)) {
    writeFileSync(busy, String(answered + 1))
    process.stderr.write('Error response from daemon: removal of container ' + args.at(-1) + ' is already in progress\n')
    process.exit(1)
  }
  // rm --force kills a running container: its attached docker run exits as if killed.
  for (const name of args.filter((arg) => !arg.startsWith('-'))) {
    if (!existsSync(pidFile(name))) continue
    try { process.kill(Number(readFileSync(pidFile(name), 'utf8')), 'SIGTERM') } catch {}
    unlinkSync(pidFile(name))
  }
  process.stdout.write(args.at(-1) + '\n')
} else {
  process.stderr.write('fake docker: unexpected command ' + command + '\n')
  process.exit(99)
}
`
