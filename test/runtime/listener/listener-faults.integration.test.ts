/**
 * Listener faults under a stream of calls through two listeners on one NATS and etcd: one a real
 * OS process (killed and restarted, or stopped with SIGTERM), the other in this process. Workers run here.
 */
import {setTimeout as sleep} from 'node:timers/promises'
import {expect} from 'chai'
import {request} from 'undici'

import {createLogger} from '../../../src/runtime/shared/logger.js'
import {freePort} from '../../../src/runtime/ops/servers.js'
import {answers, echoed, startCallStream, type CallStream} from '../../helpers/call-stream.js'
import {containers, containersBesidesIdle} from '../../helpers/containers.js'
import {TEST_IMAGES} from '../../helpers/images.js'
import {startAmpDaemon, type AmpDaemon} from '../../helpers/run-amp-process.js'
import {createFunction, startTestStack, type TestStack} from '../../helpers/stack.js'
import {waitFor} from '../../helpers/wait.js'


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
    // The tests find the hang call's container by its function label: no pre-started container of it may look the same.
    await createFunction(stack.listener, 'hang', {image: TEST_IMAGES.sleep, timeoutMs: 120_000, prestart: 0})
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
    daemon = undefined
    // Every call the stream made has ended; their containers must be gone too (the workers' idle pre-started ones stay).
    for (const fn of ['slow', 'hang']) {
      await waitFor(`no container of ${fn} left`, async () => ((await containersBesidesIdle(`label=amp.function=${fn}`)).length === 0 ? true : undefined))
    }
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
    // And a call that would run for minutes: with its listener gone, nobody will ever read its answer.
    const hanging = request(`${url}/hang`, {method: 'POST', body: 'x'}).then(() => 'answered', (error: Error) => error.message)
    const [hangContainer] = await waitFor('the hang container', async () => {
      const found = await containers('label=amp.function=hang', {running: true})
      return found.length > 0 ? found : undefined
    }, 60_000)
    await callInFlightThrough(url)
    const cut = [...stream.inFlight].filter(([, call]) => call.url === url).map(([input]) => input)
    const killedAt = Date.now()
    daemon.child.kill('SIGKILL')
    await daemon.child
    const deadAt = Date.now()
    expect(await hanging).to.not.equal('answered')
    const hangGone = waitFor('the hang container to be killed', async () =>
      (await containers(`id=${hangContainer}`)).length === 0 ? Date.now() - killedAt : undefined,
    )

    daemon = await startAmpDaemon(args)
    const readyAt = Date.now()
    const res = await request(`${url}/echo`, {method: 'POST', body: 'first after restart'})
    const first = {status: res.statusCode, body: await res.body.text(), ms: Date.now() - readyAt, container: Number(res.headers['amp-duration-ms'])}
    expect(first).to.include({status: 200, body: 'first after restart'})
    await sleep(3000) // a gap: the stream goes on through the restarted listener, and the workers drop the cut calls
    const records = await stream.stop()

    const cutRecords = records.filter((record) => cut.includes(record.input))
    expect(cutRecords).to.have.length(cut.length)
    for (const record of cutRecords) expect(record.error, 'a call in flight when its listener died').to.be.a('string')
    const down = records.filter((record) => record.url === url && record.startedAt > deadAt && record.endedAt < readyAt)
    for (const record of down) expect(record.error, 'a call while nothing listened').to.equal('ECONNREFUSED')
    const otherRecords = records.filter((record) => record.url === other)
    expect(otherRecords.filter((record) => !echoed(record)), 'calls through the other listener that failed').to.deep.equal([])
    const afterRestart = records.filter((record) => record.url === url && record.startedAt >= readyAt)
    expect(afterRestart.length).to.be.above(0)
    expect(afterRestart.filter((record) => !echoed(record)), 'calls through the restarted listener that failed').to.deep.equal([])

    // The workers dropped the cut calls without waiting on a reply (NATS: no responders): either the answer of one that
    // ended at once, or, after a few heartbeats nobody took, the call itself and its container.
    const at = (line: Record<string, string>) => Date.parse(line.time)
    const abandoned = workerLog.filter((line) => line.msg === 'call abandoned')
    const doneAt = (line: Record<string, string>) => at(workerLog.find((done) => done.msg === 'call done' && done.call === line.call)!)
    const stalls = abandoned.map((line) => at(line) - doneAt(line))
    for (const [i, line] of abandoned.entries()) {
      const stall = stalls[i]
      if (line.error.startsWith('no responders')) {
        expect(stall, 'ms a worker spent on the answer to a dead listener').to.be.below(2000)
        continue
      }
      // An answer sent while the listener was dying can reach its socket unread: nothing says no, and the worker
      // waits out its reply timeout (10 s, holding no container). Only an answer sent before the listener was gone.
      expect(line.error, 'why a worker dropped an answer').to.equal('timeout')
      expect(doneAt(line) - deadAt, 'ms after the listener was gone that an answer which timed out was sent').to.be.below(1000)
      expect(stall, 'ms a worker waited on an answer its listener took with it').to.be.within(9000, 12_000)
    }
    const dropped = workerLog.filter((line) => line.msg === 'nobody waits for the call any more: stopping it')
    expect(dropped.filter((line) => line.fn === 'hang'), 'the hang call, dropped').to.have.length(1)
    expect(abandoned.length + dropped.length - 1, 'cut slow calls the workers let go').to.be.within(1, cut.length)
    const hangKilledMs = await hangGone
    const hangNoticedMs = at(dropped.find((line) => line.fn === 'hang')!) - killedAt
    console.log(
      `      [measured] listener kill -9 with ${cut.length} + 1 calls in flight; restarted, first call answered ${first.ms} ms after ready (${first.container} ms of it in docker);` +
        ` workers dropped ${abandoned.length} answers (${stalls.join(', ') || '-'} ms after the call ended) and ${dropped.length - 1} calls; its worker noticed the hang call's listener was gone after ${hangNoticedMs} ms, its container was gone after ${hangKilledMs} ms; ${records.length} calls`,
    )
  })

  it('a caller that hangs up mid-call: the worker stops the call and its container is removed', async () => {
    const hangUp = new AbortController()
    const calling = request(`${other}/hang`, {method: 'POST', body: 'x', signal: hangUp.signal}).then(() => 'answered', () => 'hung up')
    const [container] = await waitFor('the hang container', async () => {
      const found = await containers('label=amp.function=hang', {running: true})
      return found.length > 0 ? found : undefined
    }, 60_000)
    const hungUpAt = Date.now()
    hangUp.abort()
    expect(await calling).to.equal('hung up')
    const goneMs = await waitFor('the container to be removed', async () =>
      (await containers(`id=${container}`)).length === 0 ? Date.now() - hungUpAt : undefined,
    )
    const stopped = workerLog.filter((line) => line.msg === 'nobody waits for the call any more: stopping it')
    expect(stopped.map((line) => [line.fn, line.why])).to.deep.equal([['hang', 'the listener no longer waits for it']])
    console.log(`      [measured] caller hung up: its container was gone ${goneMs} ms later`)
  })

  it('on SIGTERM, a call that outlives the drain deadline is cut, the listener exits 0, and the worker kills its container', async () => {
    daemon = await startAmpDaemon([...args, '--drain-timeout', '2s'])
    const hanging = request(`${url}/hang`, {method: 'POST', body: 'x'}).then(
      (res) => `answered ${res.statusCode}`,
      (error: NodeJS.ErrnoException) => error.code ?? error.message,
    )
    const [container] = await waitFor('the hang container', async () => {
      const found = await containers('label=amp.function=hang', {running: true})
      return found.length > 0 ? found : undefined
    }, 60_000)
    const termAt = Date.now()
    const code = await daemon.stop('SIGTERM')
    const exitMs = Date.now() - termAt
    expect(code, daemon.stderr()).to.equal(0)
    expect(exitMs, 'ms from SIGTERM to exit').to.be.within(2000, 10_000)
    expect(await hanging, 'the caller').to.not.match(/^answered/)
    const goneMs = await waitFor('the container to be killed', async () =>
      (await containers(`id=${container}`)).length === 0 ? Date.now() - termAt : undefined,
    )
    console.log(`      [measured] listener past a 2 s drain deadline: exit 0 after ${exitMs} ms; the container was gone ${goneMs} ms after SIGTERM`)
  })

  it('on SIGTERM: its calls in flight complete, new calls go to the other listener, it exits 0', async () => {
    daemon = await startAmpDaemon(args)
    stream = startCallStream({urls: [url, other], fn: 'slow', callers: 4, failover: true})
    await callInFlightThrough(url)
    const termAt = Date.now()
    // Out for a while: surely being served (one sent a moment ago may still be connecting, and be refused).
    const draining = [...stream.inFlight].filter(([, call]) => call.url === url && termAt - call.startedAt > 300).map(([input]) => input)
    const code = await daemon.stop('SIGTERM')
    const drainedMs = Date.now() - termAt
    await sleep(2500) // a gap: the stream goes on after it left, and those calls must all fail over
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
