/**
 * Listener faults under a stream of calls through two listeners on one NATS and etcd: one a real
 * OS process (killed and restarted, or stopped with SIGTERM), the other in this process. Workers run here.
 */
import {expect} from 'chai'
import {request} from 'undici'

import {createLogger} from '../../src/runtime/logger.js'
import {freePort} from '../../src/runtime/servers.js'
import {answers, echoed, startCallStream, type CallStream} from '../helpers/call-stream.js'
import {containers} from '../helpers/containers.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {startAmpDaemon, type AmpDaemon} from '../helpers/run-amp-process.js'
import {createFunction, startTestStack, type TestStack} from '../helpers/stack.js'
import {waitFor} from '../helpers/wait.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('listener faults under load (a listener as a process)', function () {
  this.timeout(180_000)
  let stack: TestStack
  let args: string[]
  let url: string
  let other: string
  let daemon: AmpDaemon | undefined
  let stream: CallStream | undefined
  /** The workers' log lines (JSON), to see what they did with calls whose listener died. */
  let workerLog: Array<Record<string, string>> = []

  before(async () => {
    const logger = createLogger({format: 'json', write: (line) => workerLog.push(JSON.parse(line))})
    stack = await startTestStack({workers: 2, worker: {concurrency: 4, logger}})
    await createFunction(stack.listener, 'slow', {image: TEST_IMAGES.slow, timeoutMs: 30_000})
    await createFunction(stack.listener, 'echo', {image: TEST_IMAGES.cat, timeoutMs: 30_000})
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    other = stack.listener.url
    args = ['listener', 'start', '--host', '127.0.0.1', '--port', String(port), '--nats', stack.nats.url, '--etcd', stack.etcd.url]
  })

  beforeEach(() => {
    workerLog = []
  })

  afterEach(async () => {
    await stream?.stop()
    daemon?.child.kill('SIGKILL')
    // Every call the stream made has ended; their containers must be gone too.
    await waitFor('no container of slow left', async () => ((await containers('label=amp.function=slow')).length === 0 ? true : undefined))
  })

  after(() => stack?.stop())

  /** Waits until a call through the listener process has been out for a while: it is with a worker. */
  function callInFlightThrough(target: string): Promise<string[]> {
    return waitFor('a call in flight through the listener process', async () => {
      const out = [...stream!.inFlight].filter(([, call]) => call.url === target && Date.now() - call.startedAt > 500)
      return out.length > 0 ? out.map(([input]) => input) : undefined
    }, 60_000, 50)
  }

  it('killed and restarted: its in-flight callers get an error, the other listener is unaffected, it serves at once', async () => {
    daemon = await startAmpDaemon(args)
    expect(daemon.ready.listener.url).to.equal(url)
    stream = startCallStream({urls: [url, other], fn: 'slow', callers: 4})
    await callInFlightThrough(url)
    const cut = [...stream.inFlight].filter(([, call]) => call.url === url).map(([input]) => input)
    const killedAt = Date.now()
    daemon.child.kill('SIGKILL')
    await daemon.child

    daemon = await startAmpDaemon(args)
    const readyAt = Date.now()
    const res = await request(`${url}/echo`, {method: 'POST', body: 'first after restart'})
    const first = {status: res.statusCode, body: await res.body.text(), ms: Date.now() - readyAt, container: Number(res.headers['amp-duration-ms'])}
    expect(first).to.include({status: 200, body: 'first after restart'})
    await sleep(3000)
    const records = await stream.stop()

    const cutRecords = records.filter((record) => cut.includes(record.input))
    expect(cutRecords).to.have.length(cut.length)
    for (const record of cutRecords) expect(record.error, 'a call in flight when its listener died').to.be.a('string')
    const down = records.filter((record) => record.url === url && record.startedAt > killedAt && record.endedAt < readyAt)
    for (const record of down) expect(record.error, 'a call while nothing listened').to.equal('ECONNREFUSED')
    const otherRecords = records.filter((record) => record.url === other)
    expect(otherRecords.filter((record) => !echoed(record)), 'calls through the other listener that failed').to.deep.equal([])
    const afterRestart = records.filter((record) => record.url === url && record.startedAt >= readyAt)
    expect(afterRestart.length).to.be.above(0)
    expect(afterRestart.filter((record) => !echoed(record)), 'calls through the restarted listener that failed').to.deep.equal([])

    // The workers ran the cut calls to their end and dropped the answers at once: nobody waits for a reply (NATS: no responders).
    const at = (line: Record<string, string>) => Date.parse(line.time)
    const abandoned = workerLog.filter((line) => line.msg === 'call abandoned')
    expect(abandoned.length, 'calls the workers could not answer').to.be.within(1, cut.length)
    const stalls = abandoned.map((line) => at(line) - at(workerLog.find((done) => done.msg === 'call done' && done.call === line.call)!))
    for (const stall of stalls) expect(stall, 'ms a worker spent on the answer to a dead listener').to.be.below(2000)
    console.log(
      `      [measured] listener kill -9 with ${cut.length} calls in flight; restarted, first call answered ${first.ms} ms after ready (${first.container} ms of it in docker);` +
        ` workers dropped ${abandoned.length} answers in ${stalls.join(', ')} ms; ${records.length} calls`,
    )
  })

  it('on SIGTERM: its calls in flight complete, new calls go to the other listener, it exits 0', async () => {
    daemon = await startAmpDaemon(args)
    stream = startCallStream({urls: [url, other], fn: 'slow', callers: 4, failover: true})
    await callInFlightThrough(url)
    const termAt = Date.now()
    const draining = [...stream.inFlight].filter(([, call]) => call.url === url).map(([input]) => input)
    const code = await daemon.stop('SIGTERM')
    const drainedMs = Date.now() - termAt
    await sleep(2500)
    const records = await stream.stop()

    expect(code, daemon.stderr()).to.equal(0)
    expect(drainedMs, 'drain time, under the 30 s deadline').to.be.below(25_000)
    expect(answers(records).filter((record) => !echoed(record)), 'calls not answered with their own input').to.deep.equal([])
    const finished = records.filter((record) => draining.includes(record.input))
    expect(finished.map((record) => [record.url, record.status])).to.deep.equal(draining.map(() => [url, 200]))
    // Sent to it once it stopped taking calls: refused, and answered by the other listener.
    const turnedAway = records.filter((record) => record.failedOver)
    expect(turnedAway.length, 'calls refused by the stopping listener').to.be.above(0)
    for (const record of turnedAway) {
      expect(record.url).to.equal(url)
      expect(record.error ?? record.status).to.be.oneOf(['ECONNREFUSED', 503])
    }
    expect(workerLog.filter((line) => line.msg === 'call abandoned'), 'answers the workers could not deliver').to.deep.equal([])
    console.log(`      [measured] listener drain after SIGTERM: ${drainedMs} ms with ${draining.length} calls in flight; ${turnedAway.length} calls failed over; ${records.length} calls`)
  })
})
