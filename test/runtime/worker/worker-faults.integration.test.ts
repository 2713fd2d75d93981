/**
 * Worker faults with workers as real OS processes: kill -9 mid-call (what callers see, and the
 * periodic sweep that removes the dead worker's containers, and only those), SIGTERM under load.
 */
import {expect} from 'chai'
import {execa} from 'execa'
import {randomUUID} from 'node:crypto'
import {hostname} from 'node:os'
import {request} from 'undici'

import {startListener, type Listener} from '../../../src/runtime/listener/listener.js'
import {createLogger, silentLogger} from '../../../src/runtime/shared/logger.js'
import {startWorker, type Worker} from '../../../src/runtime/worker/worker.js'
import {echoed, startCallStream} from '../../helpers/call-stream.js'
import {containers} from '../../helpers/containers.js'
import {TEST_IMAGES} from '../../helpers/images.js'
import {startAmpDaemon, type AmpDaemon} from '../../helpers/run-amp-process.js'
import {DOCKER, startNats, type ServiceHandle} from '../../helpers/services.js'
import {createFunction, startTestStack, type StackWithoutWorker} from '../../helpers/stack.js'
import {waitFor} from '../../helpers/wait.js'

async function post(url: string, body: string) {
  const started = Date.now()
  const res = await request(url, {method: 'POST', body})
  const text = await res.body.text()
  return {status: res.statusCode, text, endedAt: Date.now(), ms: Date.now() - started}
}

/** Waits until `count` containers of the worker process `pid` are running. */
function runningOf(pid: number, count = 1): Promise<string[]> {
  return waitFor(`${count} running containers of worker ${pid}`, async () => {
    const found = await containers(`label=amp.worker-pid=${pid}`, {running: true})
    return found.length >= count ? found : undefined
  }, 60_000)
}

describe('worker faults (workers as processes)', function () {
  this.timeout(180_000)
  let stack: StackWithoutWorker
  const daemons: AmpDaemon[] = []
  const workerStart = (nats: string, ...extra: string[]) =>
    startAmpDaemon(['worker', 'start', '--nats', nats, '--docker', DOCKER, ...extra]).then((daemon) => {
      daemons.push(daemon)
      return daemon
    })

  before(async () => {
    stack = await startTestStack({worker: false, docker: true})
    await createFunction(stack.listener, 'hang', {image: TEST_IMAGES.sleep, timeoutMs: 120_000})
    await createFunction(stack.listener, 'slow', {image: TEST_IMAGES.slow, timeoutMs: 30_000})
  })

  afterEach(async () => {
    for (const daemon of daemons.splice(0)) daemon.child.kill('SIGKILL')
  })

  after(() => stack?.stop())

  describe('kill -9 of a worker while calls run', () => {
    // A second NATS, so its workers take none of the calls the first one carries: one sweeps, one owns a live container.
    let nats2: ServiceHandle
    let listener2: Listener
    let sweeper: Worker | undefined
    let stranger: string | undefined

    before(async () => {
      nats2 = await startNats({jetStream: false})
      listener2 = await startListener({host: '127.0.0.1', port: 0, logger: silentLogger, nats: nats2.url, etcd: [stack.etcd.url]})
    })

    after(async () => {
      if (stranger) await execa(DOCKER, ['rm', '--force', stranger], {reject: false})
      await sweeper?.close()
      await listener2?.close()
      await nats2?.stop()
    })

    it('answers each caller 502 within seconds; a live worker sweeps the orphans, and only those', async () => {
      // A live worker process that owns a running container.
      const owner = await workerStart(nats2.url, '--drain-timeout', '1s', '--no-runner')
      const ownerCall = post(`${listener2.url}/hang`, 'x')
      const [owned] = await runningOf(owner.pid)
      // The sweeper: in this process, on nats2 too, started after owner's call so it takes none.
      const sweeps: Array<Record<string, string>> = []
      const logger = createLogger({format: 'json', level: 'warn', write: (line) => sweeps.push(JSON.parse(line))})
      sweeper = await startWorker({nats: nats2.url, concurrency: 1, docker: DOCKER, logger, orphanSweepMs: 500})
      // A container amp did not start (no amp.managed), though its other labels point at a dead amp worker.
      stranger = `amp-${randomUUID()}`
      await execa(DOCKER, [
        'run', '--detach', '--name', stranger, '--label', `amp.worker-host=${hostname()}`, '--label', 'amp.worker-pid=999999999',
        TEST_IMAGES.sleep,
      ])

      // Without the runner: a runner container ends by itself when its worker dies (the next test), these stay for the sweep.
      const victim = await workerStart(stack.nats.url, '--concurrency', '4', '--no-runner')
      const calls = [1, 2, 3].map((n) => post(`${stack.listener.url}/hang`, `call ${n}`))
      const orphans = await runningOf(victim.pid, 3)
      const killedAt = Date.now()
      victim.child.kill('SIGKILL')
      const answers = await Promise.all(calls)
      for (const answer of answers) {
        expect(answer.status, answer.text).to.equal(502)
        expect(JSON.parse(answer.text).error.message).to.match(/stopped responding/)
        expect(answer.endedAt - killedAt, 'ms from kill -9 to the answer').to.be.below(8000)
      }
      const gone = await waitFor('the sweep to remove the orphans', async () =>
        (await containers(`label=amp.worker-pid=${victim.pid}`)).length === 0 ? Date.now() : undefined,
      )
      console.log(`      [measured] 502 after kill -9: ${answers.map((a) => a.endedAt - killedAt).join(', ')} ms; orphans removed ${gone - killedAt} ms after it`)
      for (const orphan of orphans) expect(await containers(`id=${orphan}`)).to.deep.equal([])
      // Removed by the sweep, not by anything else: it names them (the calls' three, and the victim's idle pre-started ones).
      const swept = sweeps.filter((line) => line.msg === 'removed containers left by dead workers').flatMap((line) => line.containers.split(','))
      expect(swept.length).to.be.at.least(3)

      // Untouched: the live worker's container (its call still runs) and the stranger.
      expect(await containers(`id=${owned}`, {running: true}), 'the live worker container').to.have.length(1)
      expect(await containers(`name=${stranger}`, {running: true}), 'the container amp did not start').to.have.length(1)

      // Once its owner dies too, that one goes as well.
      owner.child.kill('SIGKILL')
      expect((await ownerCall).status).to.equal(502)
      await waitFor('the sweep to remove the second orphan', async () =>
        (await containers(`id=${owned}`)).length === 0 ? true : undefined,
      )
      expect(await containers(`name=${stranger}`, {running: true}), 'the container amp did not start').to.have.length(1)
    })
  })

  describe('kill -9 of a worker while warm containers run (--reuse)', () => {
    it('answers its callers 502, and leaves no container: each ends with its socket, and a worker started again finds none', async () => {
      await createFunction(stack.listener, 'warm-cat', {image: TEST_IMAGES.cat, reuse: true, prestart: 3})
      await createFunction(stack.listener, 'warm-hang', {image: TEST_IMAGES.sleep, reuse: true, prestart: 2, timeoutMs: 120_000})
      const victim = await workerStart(stack.nats.url, '--concurrency', '4')
      // Warm containers: some idle after serving calls, some running calls when the worker dies.
      for (let i = 0; i < 5; i++) expect((await post(`${stack.listener.url}/warm-cat`, `warm ${i}`)).text).to.equal(`warm ${i}`)
      const calls = [1, 2].map((n) => post(`${stack.listener.url}/warm-hang`, `call ${n}`))
      const before = await runningOf(victim.pid, 3)
      const killedAt = Date.now()
      victim.child.kill('SIGKILL')
      for (const answer of await Promise.all(calls)) expect(answer.status, answer.text).to.equal(502)
      // No other worker runs: the containers end by themselves, their runner's socket closed with the worker.
      const goneAt = await waitFor('the dead worker\'s containers to go', async () =>
        (await containers(`label=amp.worker-pid=${victim.pid}`)).length === 0 ? Date.now() : undefined,
      )
      console.log(`      [measured] kill -9 with ${before.length} warm containers: all gone ${goneAt - killedAt} ms after it, no worker running`)
      const again = await workerStart(stack.nats.url)
      expect((await post(`${stack.listener.url}/warm-cat`, 'after')).text).to.equal('after')
      expect(await containers(`label=amp.worker-pid=${victim.pid}`)).to.deep.equal([])
      await again.stop('SIGTERM')
      expect(await containers('label=amp.function=warm-cat')).to.deep.equal([])
    })
  })

  it('on SIGTERM, a call that outlives the drain deadline gets 502, its container is killed, and the worker exits 0', async () => {
    const worker = await workerStart(stack.nats.url, '--drain-timeout', '2s')
    const call = post(`${stack.listener.url}/hang`, 'x')
    const [container] = await runningOf(worker.pid)
    const termAt = Date.now()
    const code = await worker.stop('SIGTERM')
    const exitMs = Date.now() - termAt
    const answer = await call
    expect(code, worker.stderr()).to.equal(0)
    expect(answer.status).to.equal(502)
    expect(JSON.parse(answer.text).error.message).to.equal('the worker shut down before the call finished')
    // The deadline, plus what docker takes to kill and remove the container on a loaded machine.
    expect(exitMs, 'ms from SIGTERM to exit').to.be.within(2000, 15_000)
    expect(await containers(`id=${container}`)).to.deep.equal([])
    console.log(`      [measured] worker past a 2 s drain deadline: exit 0 after ${exitMs} ms, caller 502 after ${answer.endedAt - termAt} ms`)
  })

  it('on SIGTERM under load, a worker finishes its calls, the other worker takes the new ones, and it exits 0', async () => {
    const leaving = await workerStart(stack.nats.url, '--concurrency', '4')
    const staying = await stack.addWorker({concurrency: 4})
    const stream = startCallStream({urls: [stack.listener.url], fn: 'slow', callers: 4})
    try {
      await runningOf(leaving.pid)
      const termAt = Date.now()
      const exit = leaving.stop('SIGTERM')
      // From when it says so, it takes no new call.
      const stoppingAt = await waitFor('the worker to say it stops', async () => (/worker stopping/.test(leaving.stderr()) ? Date.now() : undefined), 10_000, 20)
      const code = await exit
      const drainedMs = Date.now() - termAt
      // Keep the stream going a little after it left.
      await new Promise((resolve) => setTimeout(resolve, 2500))
      const records = await stream.stop()
      expect(code, leaving.stderr()).to.equal(0)
      expect(drainedMs, 'drain time, under the 30 s deadline').to.be.below(25_000)
      const failed = records.filter((record) => !echoed(record))
      expect(failed, 'calls not answered with their own input').to.deep.equal([])
      const leavingId = String(leaving.ready.worker.id)
      const endedByLeaving = records.filter((record) => record.worker === leavingId)
      const afterTerm = records.filter((record) => record.startedAt > stoppingAt)
      expect(endedByLeaving.length, 'calls the leaving worker ran').to.be.above(0)
      expect(afterTerm.length, 'calls sent after SIGTERM').to.be.above(0)
      expect(afterTerm.every((record) => record.worker === staying.id), 'calls sent after SIGTERM ran on the other worker').to.equal(true)
      console.log(`      [measured] worker drain after SIGTERM: ${drainedMs} ms; ${records.length} calls, all answered`)
      // The staying worker keeps idle pre-started containers until it stops too; then none may be left.
      await staying.close()
      await waitFor('no slow container left', async () => ((await containers('label=amp.function=slow')).length === 0 ? true : undefined), 10_000)
    } finally {
      await stream.stop()
      await staying.close()
    }
  })
})
