import {setTimeout as sleep} from 'node:timers/promises'
import {expect} from 'chai'
import {jetstreamManager} from '@nats-io/jetstream'
import {connect} from '@nats-io/transport-node'

import {LOG_STREAM, type LogLine} from '../../../src/runtime/shared/call-logs.js'
import {AmpClient} from '../../../src/runtime/client/client.js'
import {AmpError} from '../../../src/runtime/shared/errors.js'
import {startListener, type Listener} from '../../../src/runtime/listener/listener.js'
import {createLogger, silentLogger} from '../../../src/runtime/shared/logger.js'
import {startWorker, type Worker} from '../../../src/runtime/worker/worker.js'
import {ensureTestImages, TEST_IMAGES} from '../../helpers/images.js'
import {DOCKER, requireDocker, startEtcd, startNats, type ServiceHandle} from '../../helpers/services.js'
import {startTestStack, type TestStack} from '../../helpers/stack.js'


async function collect(lines: AsyncIterable<LogLine>): Promise<LogLine[]> {
  const all: LogLine[] = []
  for await (const line of lines) all.push(line)
  return all
}

/** The next line from a following iterator, or a failure after `ms`. */
async function nextLine(iterator: AsyncIterator<LogLine>, ms = 15_000): Promise<LogLine> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no log line within ${ms} ms`)), ms)))
  try {
    const next = await Promise.race([iterator.next(), timeout])
    if (next.done) throw new Error('the log stream ended')
    return next.value
  } finally {
    clearTimeout(timer)
  }
}

describe('per-call logs: worker, JetStream, listener', function () {
  this.timeout(120_000)
  let stack: TestStack
  let nats: ServiceHandle
  let worker: Worker
  let client: AmpClient

  before(async () => {
    stack = await startTestStack()
    ;({nats, worker, client} = stack)
    await client.createFunction('echo', {image: TEST_IMAGES.stderr})
    await client.createFunction('drip', {image: TEST_IMAGES.drip})
    await client.createFunction('quiet', {image: TEST_IMAGES.cat})
  })

  after(() => stack?.stop())

  it('the worker creates the AMP_LOGS stream with the documented limits', async () => {
    const nc = await connect({servers: nats.url})
    try {
      const info = await (await jetstreamManager(nc)).streams.info(LOG_STREAM)
      expect(info.config).to.include({storage: 'file', retention: 'limits', discard: 'old', max_msg_size: 65_536, max_bytes: 1024 ** 3})
      expect(info.config.max_age).to.equal(24 * 3600 * 1e9)
      expect(info.config.subjects).to.deep.equal(['amp.v1.logs.>'])
    } finally {
      await nc.close()
    }
  })

  it("keeps each stderr line of a call under that call's id, in order, with the worker that ran it", async () => {
    const result = await client.invoke('echo', Buffer.from('alpha\nbeta\r\n\ngamma'))
    expect(result.exitCode).to.equal(0)
    const lines = (await collect(await client.logs('echo'))).filter((line) => line.callId === result.callId)
    expect(lines.map((line) => line.line)).to.deep.equal(['log: alpha', 'beta', '', 'gamma'])
    for (const line of lines) {
      expect(line).to.include({function: 'echo', callId: result.callId, worker: worker.id})
      expect(Date.parse(line.time)).to.be.within(Date.now() - 60_000, Date.now())
    }
  })

  it('--call shows only the lines of that call', async () => {
    const first = await client.invoke('echo', Buffer.from('from the first call'))
    const second = await client.invoke('echo', Buffer.from('from the second call'))
    const all = await collect(await client.logs('echo'))
    expect(all.map((line) => line.callId)).to.include.members([first.callId, second.callId])
    const only = await collect(await client.logs('echo', {callId: second.callId}))
    expect(only.map((line) => [line.callId, line.line])).to.deep.equal([[second.callId, 'log: from the second call']])
  })

  it('--since leaves out older lines, as a duration or as a time', async () => {
    const before = await client.invoke('echo', Buffer.from('older'))
    await sleep(3000) // the gap the test needs: 'older' is over 2 s old by the time 'newer' is written
    const middle = new Date()
    const after = await client.invoke('echo', Buffer.from('newer'))
    const sinceTime = await collect(await client.logs('echo', {since: middle.toISOString()}))
    expect(sinceTime.map((line) => line.callId)).to.include(after.callId).and.not.include(before.callId)
    const sinceDuration = await collect(await client.logs('echo', {since: '2s'}))
    expect(sinceDuration.map((line) => line.line)).to.deep.equal(['log: newer'])
    const wide = await collect(await client.logs('echo', {since: '1h'}))
    expect(wide.map((line) => line.callId)).to.include.members([before.callId, after.callId])
  })

  it('--follow gets the lines of a call made after it started, as the container writes them', async () => {
    const lines = (await client.logs('drip', {follow: true, since: '1s'}))[Symbol.asyncIterator]()
    try {
      const started = Date.now()
      let done = false
      const call = client.invoke('drip', Buffer.from('')).finally(() => (done = true))
      const first = await nextLine(lines)
      expect(first.line).to.equal('first')
      // The container sleeps 2 s after "first": the line came while the call was still running.
      expect(done, 'the call had already ended when its first line arrived').to.equal(false)
      const second = await nextLine(lines)
      expect(second).to.include({line: 'second', callId: first.callId})
      expect((await call).callId).to.equal(first.callId)
      expect(Date.now() - started).to.be.below(15_000)
    } finally {
      await lines.return?.()
    }
  })

  it('ends a read without --follow at once when there is nothing (no call wrote anything)', async () => {
    await client.invoke('quiet', Buffer.from('stdout only'))
    const started = Date.now()
    expect(await collect(await client.logs('quiet'))).to.deep.equal([])
    expect(Date.now() - started).to.be.below(2000)
  })

  it('answers function_not_found (exit 102) for a function that does not exist', async () => {
    const error = await client.logs('no-such-fn').then(
      () => undefined,
      (error_: unknown) => error_,
    )
    expect(error).to.be.instanceOf(AmpError)
    expect(error).to.include({code: 'function_not_found', exit: 102})
  })
})

describe('per-call logs without JetStream', function () {
  this.timeout(120_000)
  let nats: ServiceHandle
  let etcd: ServiceHandle
  let listener: Listener
  let worker: Worker
  const workerLog: string[] = []

  before(async () => {
    await requireDocker()
    await ensureTestImages()
    ;[nats, etcd] = await Promise.all([startNats({jetStream: false}), startEtcd()])
  })

  after(async () => {
    await listener?.close()
    await worker?.close()
    await Promise.all([nats?.stop(), etcd?.stop()])
  })

  it('the worker starts at once, warns once, and calls run as usual with their stderr', async () => {
    const started = Date.now()
    worker = await startWorker({
      nats: nats.url,
      concurrency: 2,
      docker: DOCKER,
      logger: createLogger({write: (line) => workerLog.push(line)}),
    })
    expect(Date.now() - started).to.be.below(3000)
    listener = await startListener({host: '127.0.0.1', port: 0, nats: nats.url, etcd: [etcd.url], logger: silentLogger})
    const client = new AmpClient({server: listener.url})
    await client.createFunction('echo', {image: TEST_IMAGES.stderr})
    for (let i = 0; i < 3; i++) {
      const callStarted = Date.now()
      const result = await client.invoke('echo', Buffer.from(`line ${i}\nmore`))
      expect(result.exitCode).to.equal(0)
      expect(result.stdout.toString()).to.equal(`line ${i}\nmore`)
      expect(result.stderr.toString()).to.equal(`log: line ${i}\nmore`)
      // A container run takes a fraction of a second here; logging must not add seconds of timeouts.
      expect(Date.now() - callStarted).to.be.below(5000)
    }
    const warnings = workerLog.filter((line) => line.includes('per-call logs are off'))
    expect(warnings).to.have.length(1)
    expect(warnings[0]).to.contain('level=warn').and.contain('-js')
  })

  it('amp function logs says logs are off and why (service_unavailable, exit 108)', async () => {
    const client = new AmpClient({server: listener.url})
    const error = await client.logs('echo').then(
      () => undefined,
      (error_: unknown) => error_,
    )
    expect(error).to.be.instanceOf(AmpError)
    expect(error).to.include({code: 'service_unavailable', exit: 108})
    expect((error as Error).message).to.contain('JetStream').and.contain('-js')
  })
})
