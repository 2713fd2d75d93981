import {expect} from 'chai'
import {execa, type ResultPromise} from 'execa'
import {request} from 'undici'

import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import type {Listener} from '../../src/runtime/listener/listener.js'
import {freePort, probeEtcd, probeNats} from '../../src/runtime/ops/servers.js'
import {containers} from '../helpers/containers.js'
import {ensureTestImages, TEST_IMAGES} from '../helpers/images.js'
import {DAEMON_KILL_AFTER_MS, DEV} from '../helpers/run-amp-process.js'
import {DOCKER, requireDocker, type ServiceHandle} from '../helpers/services.js'
import {createFunction, startTestStack, type StackWithoutWorker} from '../helpers/stack.js'
import {waitFor} from '../helpers/wait.js'


/** `amp <args>` as its own process, the way systemd runs it. Resolves once it logs that it is ready. */
async function daemon(
  args: string[],
  env: Record<string, string> = {},
  ready = /ready/,
): Promise<{child: ResultPromise; stderr: () => string; stdout: () => string}> {
  const child = execa('node', [DEV, ...args], {reject: false, env: {NODE_EXTRA_CA_CERTS: '', ...env}, stdin: 'ignore', forceKillAfterDelay: DAEMON_KILL_AFTER_MS})
  let stderr = ''
  let stdout = ''
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`amp ${args.join(' ')} did not get ready:\n${stderr}`)), 30_000)
    const check = () => {
      if (ready.test(stderr) || ready.test(stdout)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout?.on('data', check)
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
      check()
    })
    child.on('exit', () => reject(new Error(`amp ${args.join(' ')} exited early:\n${stderr}`)))
  })
  return {child, stderr: () => stderr, stdout: () => stdout}
}

async function post(url: string, body: string) {
  const started = Date.now()
  const res = await request(url, {method: 'POST', body})
  const text = await res.body.text()
  return {status: res.statusCode, text, ms: Date.now() - started, callId: String(res.headers['amp-call-id'])}
}

describe('daemons as processes: crash and graceful stop', function () {
  this.timeout(120_000)
  let stack: StackWithoutWorker
  let nats: ServiceHandle
  let etcd: ServiceHandle
  let listener: Listener

  before(async () => {
    // The workers are daemons the tests start, as processes.
    stack = await startTestStack({worker: false, docker: true})
    ;({nats, etcd, listener} = stack)
    for (const [name, image, timeoutMs] of [
      ['hang', TEST_IMAGES.sleep, 120_000],
      ['slow', TEST_IMAGES.slow, 30_000],
    ] as const) {
      await createFunction(listener, name, {image, timeoutMs})
    }
  })

  after(() => stack?.stop())

  it('answers 502 within a few seconds when the worker is killed mid-call, and the next worker removes its container', async () => {
    const {child} = await daemon(['worker', 'start', '--nats', nats.url, '--docker', DOCKER])
    const pending = post(`${listener.url}/hang`, 'x')
    const container = await waitFor('the call container', async () => {
      const found = await containers(`label=amp.worker-pid=${child.pid}`)
      return found.length > 0 ? found[0] : undefined
    })
    const killedAt = Date.now()
    child.kill('SIGKILL')
    const res = await pending
    const waited = Date.now() - killedAt
    expect(res.status).to.equal(502)
    expect(JSON.parse(res.text).error.message).to.match(/stopped responding/)
    expect(waited, 'ms from kill -9 to the answer').to.be.below(6000)

    // The function ignores stdin, so its container outlives the worker; the next worker on this host removes it.
    const next = await stack.addWorker({concurrency: 1})
    try {
      expect(await containers(`id=${container}`)).to.deep.equal([])
      expect(await containers(`label=amp.call=${res.callId}`)).to.deep.equal([])
    } finally {
      await next.close()
    }
  })

  it('on SIGTERM, a worker finishes the call in flight, takes no new one, and exits 0', async () => {
    const {child, stderr} = await daemon(['worker', 'start', '--nats', nats.url, '--docker', DOCKER])
    const inFlight = post(`${listener.url}/slow`, 'finish me')
    await waitFor('the call container', async () =>
      (await containers(`label=amp.worker-pid=${child.pid}`)).length > 0 ? true : undefined,
    )
    child.kill('SIGTERM')
    const res = await inFlight
    expect(res.status).to.equal(200)
    expect(res.text).to.equal('finish me')
    const exited = await child
    expect(exited.exitCode, stderr()).to.equal(0)
    // It was the only worker: a call now finds nobody, at once.
    const after = await post(`${listener.url}/slow`, 'x')
    expect(after.status).to.equal(503)
    expect(await containers(`label=amp.worker-pid=${child.pid}`)).to.deep.equal([])
  })

  it('on SIGTERM, a listener finishes the call in flight, then exits 0', async () => {
    const worker = await stack.addWorker({concurrency: 2})
    try {
      const {child, stderr} = await daemon([
        'listener',
        'start',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--nats',
        nats.url,
        '--etcd',
        etcd.url,
      ])
      const url = /url=(http:\/\/\S+)/.exec(stderr())?.[1] ?? /(http:\/\/127\.0\.0\.1:\d+)/.exec(stderr())?.[1]
      expect(url, stderr()).to.be.a('string')
      const inFlight = post(`${url}/slow`, 'listener drains')
      await waitFor('the call container', async () =>
        (await containers('label=amp.function=slow')).length > 0 ? true : undefined,
      )
      child.kill('SIGTERM')
      const res = await inFlight
      expect(res.status).to.equal(200)
      expect(res.text).to.equal('listener drains')
      expect((await child).exitCode, stderr()).to.equal(0)
    } finally {
      await worker.close()
    }
  })
})

describe('amp up as a process', function () {
  this.timeout(120_000)

  it('starts NATS, etcd, a listener and a worker, says where they are, serves a call, and stops all on Ctrl-C', async () => {
    await requireDocker()
    await ensureTestImages()
    const home = mkdtempSync(path.join(tmpdir(), 'amp-up-'))
    const nats = `nats://127.0.0.1:${await freePort()}`
    const etcd = `http://127.0.0.1:${await freePort()}`
    try {
      const {child, stdout, stderr} = await daemon(
        ['up', '--port', '0', '--nats', nats, '--etcd', etcd, '--docker', DOCKER],
        {HOME: home, XDG_DATA_HOME: path.join(home, 'data')},
        /Ctrl-C/,
      )
      expect(stdout()).to.contain(nats).and.contain(etcd).and.contain('started by amp')
      const url = /listener\s+(http:\/\/\S+)/.exec(stdout())?.[1]
      expect(url, stdout()).to.be.a('string')

      const created = await request(`${url}/_amp/v1/functions/demo`, {method: 'PUT', body: JSON.stringify({image: TEST_IMAGES.title})})
      expect(created.statusCode).to.equal(201)
      await created.body.dump()
      const res = await post(`${url}/demo`, 'hello from amp up\n')
      expect(res.status).to.equal(200)
      expect(res.text).to.equal('Hello From Amp Up\n')

      child.kill('SIGINT')
      expect((await child).exitCode, stderr()).to.equal(0)
      expect(await probeNats(nats)).to.equal(false)
      expect(await probeEtcd(etcd)).to.equal('unreachable')
    } finally {
      rmSync(home, {recursive: true, force: true})
    }
  })
})
