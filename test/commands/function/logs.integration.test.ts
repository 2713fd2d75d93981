import {expect} from 'chai'
import {jetstreamManager} from '@nats-io/jetstream'
import {connect} from '@nats-io/transport-node'
import {execa} from 'execa'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {LOG_STREAM} from '../../../src/runtime/shared/call-logs.js'
import type {AmpClient} from '../../../src/runtime/client/client.js'
import {EXIT} from '../../../src/runtime/shared/errors.js'
import type {Listener} from '../../../src/runtime/listener/listener.js'
import type {Worker} from '../../../src/runtime/worker/worker.js'
import {TEST_IMAGES} from '../../helpers/images.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'
import type {ServiceHandle} from '../../helpers/services.js'
import {startTestStack, type StackWithoutWorker, type TestStack} from '../../helpers/stack.js'
import {waitUntil} from '../../helpers/wait.js'

const DEV = fileURLToPath(new URL('../../../bin/dev.js', import.meta.url))
const LINE = /^(\S+) (\S+) (.*)$/

describe('amp function logs', function () {
  this.timeout(120_000)
  isolateEnvironment()
  let stack: TestStack
  let nats: ServiceHandle
  let listener: Listener
  let worker: Worker
  let client: AmpClient

  before(async () => {
    stack = await startTestStack()
    ;({nats, listener, worker, client} = stack)
    await client.createFunction('echo', {image: TEST_IMAGES.stderr})
    await client.createFunction('quiet', {image: TEST_IMAGES.cat})
  })

  after(() => stack?.stop())

  it('prints TIME CALL-ID LINE for every line, and --call keeps only that call', async () => {
    const first = await client.invoke('echo', Buffer.from('one\ntwo'))
    const second = await client.invoke('echo', Buffer.from('three'))
    const all = await runAmp(['function', 'logs', 'echo', '--server', listener.url])
    expect(all.exitCode, all.stderr).to.equal(0)
    const rows = all.stdout.trimEnd().split('\n').map((line) => LINE.exec(line)!.slice(1))
    expect(rows.map(([, callId, text]) => [callId, text])).to.deep.include.members([
      [first.callId, 'log: one'],
      [first.callId, 'two'],
      [second.callId, 'log: three'],
    ])
    for (const [time] of rows) expect(Date.parse(time)).to.be.within(Date.now() - 60_000, Date.now())

    const one = await runAmp(['fn', 'logs', 'echo', '--call', second.callId, '--server', listener.url])
    expect(one.exitCode).to.equal(0)
    expect(one.stdout).to.match(new RegExp(`^\\S+ ${second.callId} log: three\\n$`))
  })

  it('--json prints one JSON object per line and nothing else', async () => {
    const result = await client.invoke('echo', Buffer.from('as json'))
    const run = await runAmp(['fn', 'logs', 'echo', '--call', result.callId, '--json', '--server', listener.url])
    expect(run.exitCode).to.equal(0)
    const lines = run.stdout.trimEnd().split('\n').map((line) => JSON.parse(line))
    expect(lines).to.have.length(1)
    expect(lines[0]).to.include({function: 'echo', callId: result.callId, worker: worker.id, line: 'log: as json'})
    expect(Object.keys(lines[0]).sort()).to.deep.equal(['callId', 'function', 'line', 'time', 'worker'])
  })

  it('prints nothing on stdout, and says so on stderr, when there are no lines; exit 0', async () => {
    await client.invoke('quiet', Buffer.from('x'))
    const run = await runAmp(['fn', 'logs', 'quiet', '--since', '10m', '--server', listener.url])
    expect(run.exitCode).to.equal(0)
    expect(run.stdout).to.equal('')
    expect(run.stderr).to.contain('no log lines for quiet since 10m')
  })

  it('exits 102 for an unknown function and 2 for a bad --since or --call, before asking the listener', async () => {
    const missing = await runAmp(['fn', 'logs', 'tset', '--server', listener.url])
    expect(missing.exitCode).to.equal(EXIT.notFound)
    expect(missing.error?.message).to.contain('tset')
    // A dead server: usage errors must not even try to reach it.
    const badSince = await runAmp(['fn', 'logs', 'echo', '--since', 'yesterday', '--server', 'http://127.0.0.1:9'])
    expect(badSince.exitCode).to.equal(EXIT.usage)
    expect(badSince.error?.message).to.contain('invalid since')
    const badCall = await runAmp(['fn', 'logs', 'echo', '--call', 'a.*', '--server', 'http://127.0.0.1:9'])
    expect(badCall.exitCode).to.equal(EXIT.usage)
  })

  it('--follow, as a process, prints a line of a call made after it started, and Ctrl-C ends it', async () => {
    const home = mkdtempSync(path.join(tmpdir(), 'amp-logs-'))
    const nc = await connect({servers: nats.url})
    const jsm = await jetstreamManager(nc)
    const consumers = async () => (await jsm.consumers.list(LOG_STREAM).next()).length
    const before = await consumers()
    const child = execa('node', [DEV, 'fn', 'logs', 'echo', '--follow'], {
      reject: false,
      stdin: 'ignore',
      env: {AMP_SERVER: listener.url, HOME: home, NODE_EXTRA_CA_CERTS: ''},
    })
    try {
      let stdout = ''
      child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
      // The call is made only once the process reads the stream (its consumer exists), so its line can only come live.
      await waitUntil('amp fn logs --follow to open the stream (a consumer of its own)', async () => (await consumers()) > before, 20_000)
      const result = await client.invoke('echo', Buffer.from('followed line'))
      await waitUntil(() => `the line of call ${result.callId} in what amp fn logs --follow printed:\n${stdout}`, () => stdout.includes(result.callId), 15_000)
      expect(stdout).to.match(new RegExp(`^\\S+ ${result.callId} log: followed line$`, 'm'))
      child.kill('SIGINT')
      const ended = await child
      expect(ended.isTerminated || ended.exitCode === 130, `exit ${ended.exitCode}, signal ${ended.signal}`).to.equal(true)
    } finally {
      child.kill('SIGKILL')
      await nc.close()
      rmSync(home, {recursive: true, force: true})
    }
  })
})

describe('amp function logs without JetStream', function () {
  this.timeout(120_000)
  isolateEnvironment()
  let stack: StackWithoutWorker
  let listener: Listener

  before(async () => {
    stack = await startTestStack({nats: {jetStream: false}, worker: false})
    ;({listener} = stack)
    await stack.client.createFunction('echo', {image: TEST_IMAGES.stderr})
  })

  after(() => stack?.stop())

  it('exits 108 with one line that says what to do', async () => {
    const run = await runAmp(['fn', 'logs', 'echo', '--server', listener.url])
    expect(run.exitCode).to.equal(EXIT.unavailable)
    expect(run.error?.message).to.contain('JetStream').and.contain('-js')
    expect(run.error?.message).not.to.contain('\n')
  })

  it('with --json, the error is JSON on stdout', async () => {
    const run = await runAmp(['fn', 'logs', 'echo', '--json', '--server', listener.url])
    expect(run.exitCode).to.equal(EXIT.unavailable)
    expect(JSON.parse(run.stdout).error).to.include({code: 'service_unavailable', exit: EXIT.unavailable})
  })
})
