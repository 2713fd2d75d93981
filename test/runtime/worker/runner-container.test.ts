import {mkdtempSync, rmSync} from 'node:fs'
import net from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {expect} from 'chai'

import {RunnerContainer, RunnerStartError} from '../../../src/runtime/worker/runner-container.js'
import {frame, FrameDecoder, RUNNER_HELLO} from '../../../src/runtime/worker/runner-frames.js'
import {waitUntil} from '../../helpers/wait.js'

/** `docker run --detach` that "starts" a runner: it connects to the socket and lets the test speak for it. */
function fakeRunner(options: {cli?: {failed: boolean; stderr?: string}; connect?: boolean} = {}) {
  let socket!: net.Socket
  const received: Array<[string, string]> = []
  let connected!: () => void
  const up = new Promise<void>((resolve) => (connected = resolve))
  let socketPath = ''
  const start = () => {
    if (options.connect !== false) {
      socket = net.connect(socketPath, () => connected())
      const decoder = new FrameDecoder((type, payload) => received.push([type, payload.toString('latin1')]), () => {})
      socket.on('data', (chunk) => decoder.push(chunk))
    }
    return Object.assign(Promise.resolve({failed: false, ...options.cli}), {kill: () => true})
  }
  return {
    start,
    received,
    up,
    setPath: (file: string) => (socketPath = file),
    send: (type: string, payload = '') => socket.write(frame(type, Buffer.from(payload, 'latin1'))),
    hangUp: () => socket.destroy(),
  }
}

describe('RunnerContainer (the socket side of a runner container)', () => {
  let dir: string
  let n = 0
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'amp-runner-container-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  function container(fake: ReturnType<typeof fakeRunner>, connectTimeoutMs?: number) {
    const socketPath = path.join(dir, `${++n}.sock`)
    fake.setPath(socketPath)
    return new RunnerContainer({name: `amp-test-${n}`, socketPath, start: fake.start, connectTimeoutMs, now: () => 42})
  }
  /** A container whose stand-in runner has connected and said its hello. */
  async function up() {
    const fake = fakeRunner()
    const c = container(fake)
    await fake.up
    fake.send('H', RUNNER_HELLO)
    await c.ready
    return {fake, c}
  }

  it('is up at the hello, sends a call as its frames, and ends the call at its exit frame with the output before it', async () => {
    const {fake, c} = await up()
    expect(c.readyAt).to.equal(42)
    const out: string[] = []
    const err: string[] = []
    const ended = c.call(Buffer.from('input'), true, (chunk) => out.push(chunk.toString()), (chunk) => err.push(chunk.toString()))
    await waitUntil('the runner to get the call\'s three frames', () => fake.received.length >= 3, 2000, 5)
    expect(fake.received).to.deep.equal([['S', '\u0001'], ['I', 'input'], ['C', '']])
    fake.send('O', 'a')
    fake.send('E', 'log')
    fake.send('O', 'b')
    fake.send('X', 's\u0009')
    expect(await ended).to.deep.equal({exitCode: 137})
    expect([out, err]).to.deep.equal([['a', 'b'], ['log']])
    expect(c.calls).to.equal(1)
  })

  it("tells a call whose process could not start from the runner's own failure", async () => {
    const {fake, c} = await up()
    const first = c.call(Buffer.alloc(0), true, () => {}, () => {})
    fake.send('F', 'exec /nope: No such file or directory')
    expect(await first).to.deep.equal({error: 'exec /nope: No such file or directory', fatal: false})
    const second = c.call(Buffer.alloc(0), true, () => {}, () => {})
    fake.send('F', 'amp-runner: poll: Bad file descriptor')
    expect(await second).to.deep.equal({error: 'amp-runner: poll: Bad file descriptor', fatal: true})
  })

  it('ends a call as lost when the container goes away during it, and is gone (exited) then', async () => {
    const {fake, c} = await up()
    const ended = c.call(Buffer.from('x'), false, () => {}, () => {})
    fake.hangUp()
    const end = await ended
    expect(end.lost).to.equal(true)
    await c.exited
    expect(await c.call(Buffer.from('y'), false, () => {}, () => {})).to.include({lost: true})
  })

  it('refuses a peer that does not say the hello, and output with no call', async () => {
    const liar = fakeRunner()
    const c = container(liar)
    await liar.up
    liar.send('X', 'e\u0000')
    const error = await c.ready.catch((e: unknown) => e)
    expect(error).to.be.instanceOf(RunnerStartError)
    expect((error as Error).message).to.match(/did not speak amp-runner\/1/)

    const early = await up()
    early.fake.send('O', 'not asked for')
    await early.c.exited
  })

  it("takes docker's refusal to mount the runner's files as the runner being unusable on that engine", async () => {
    const fake = fakeRunner({
      connect: false,
      cli: {failed: true, stderr: 'docker: Error response from daemon: invalid mount config for type "bind": bind source path does not exist: /nowhere/amp-runner.\nSee \'docker run --help\'.\n'},
    })
    const error = (await container(fake).ready.catch((e: unknown) => e)) as RunnerStartError
    expect(error.runnerUnusable).to.equal(true)
    expect(error.message).to.equal('Error response from daemon: invalid mount config for type "bind": bind source path does not exist: /nowhere/amp-runner.')
    const other = fakeRunner({connect: false, cli: {failed: true, stderr: "docker: Error response from daemon: network bogus not found.\nSee 'docker run --help'.\n"}})
    expect(((await container(other).ready.catch((e: unknown) => e)) as RunnerStartError).runnerUnusable).to.equal(false)
  })

  it('takes a runner that never connects after docker started it as an engine on another host', async () => {
    const fake = fakeRunner({connect: false})
    const c = container(fake, 50)
    const error = (await c.ready.catch((e: unknown) => e)) as RunnerStartError
    expect(error.runnerUnusable).to.equal(true)
    expect(error.message).to.match(/did not connect .*another host/)
    await c.exited
  })

  it('lets no second connection in once the runner is connected: the socket file is gone', async () => {
    await up()
    const intruder = net.connect(path.join(dir, `${n}.sock`))
    const refused = await new Promise<string>((resolve) => intruder.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? '')))
    expect(refused).to.equal('ENOENT')
  })
})
