import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {expect} from 'chai'
import {execa} from 'execa'
import {request} from 'undici'
import {AmpClient} from '../../../src/runtime/client/client.js'
import {AmpError} from '../../../src/runtime/shared/errors.js'
import {createLogger, type Logger} from '../../../src/runtime/shared/logger.js'
import {freePort, probeEtcd, probeNats} from '../../../src/runtime/ops/servers.js'
import {startStack, type Stack, type StackOptions} from '../../../src/runtime/ops/stack.js'
import {ensureTestImages, TEST_IMAGES} from '../../helpers/images.js'
import {DOCKER, requireDocker, startEtcd, startNats, type ServiceHandle} from '../../helpers/services.js'
import {waitFor} from '../../helpers/wait.js'

/** A free client port whose next port (etcd's peer port in amp up) is free too. */
function freePortPair(): Promise<number> {
  return waitFor('a free port whose next port is free too', async () => {
    const port = await freePort()
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once('error', () => resolve(false))
      server.listen({host: '127.0.0.1', port: port + 1}, () => server.close(() => resolve(true)))
    })
    return free ? port : undefined
  }, 10_000, 0)
}

function memoryLogger(): {logger: Logger; lines: string[]} {
  const lines: string[] = []
  return {logger: createLogger({write: (line) => lines.push(line)}), lines}
}

describe('startStack (integration)', function () {
  this.timeout(120_000)
  let dataDir: string
  let stack: Stack | undefined
  const extra: ServiceHandle[] = []

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'amp-test-stack-'))
  })

  afterEach(async () => {
    await stack?.close()
    stack = undefined
    await Promise.all(extra.splice(0).map((service) => service.stop()))
    rmSync(dataDir, {recursive: true, force: true})
  })

  async function options(overrides: Partial<StackOptions> = {}): Promise<StackOptions> {
    return {
      dataDir,
      host: '127.0.0.1',
      port: 0,
      nats: `nats://127.0.0.1:${await freePort()}`,
      etcd: `http://127.0.0.1:${await freePortPair()}`,
      concurrency: 2,
      docker: DOCKER,
      pull: 'never',
      logger: memoryLogger().logger,
      ...overrides,
    }
  }

  it('starts nats-server and etcd when nothing answers, serves calls, and stops what it started', async () => {
    await requireDocker()
    await ensureTestImages()
    const {logger, lines} = memoryLogger()
    const opts = await options({logger})
    stack = await startStack(opts)

    expect(stack.startedNats).to.equal(true)
    expect(stack.startedEtcd).to.equal(true)
    expect(stack.natsUrl).to.equal(opts.nats)
    expect(stack.etcdUrl).to.equal(opts.etcd)
    expect(await probeNats(stack.natsUrl)).to.equal(true)
    expect(await probeEtcd(stack.etcdUrl)).to.equal('healthy')
    expect(existsSync(path.join(dataDir, 'etcd', 'member')), 'etcd data under <dataDir>/etcd').to.equal(true)
    expect(stack.listenerUrl).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(lines.join('')).to.include('nats-server started').and.include('etcd started')

    const health = await request(`${stack.listenerUrl}/_amp/v1/health`)
    expect(health.statusCode).to.equal(200)
    expect(await health.body.json()).to.deep.equal({status: 'ok'})

    // The whole flow through the embedded listener and worker.
    const created = await request(`${stack.listenerUrl}/_amp/v1/functions/demo`, {
      method: 'PUT',
      headers: {'content-type': 'application/json'},
      body: JSON.stringify({image: TEST_IMAGES.title}),
    })
    expect(created.statusCode).to.equal(201)
    await created.body.dump()
    const call = await request(`${stack.listenerUrl}/demo`, {method: 'POST', body: 'hello amp functions\n'})
    expect(call.statusCode).to.equal(200)
    expect(await call.body.text()).to.equal('Hello Amp Functions\n')

    const {natsUrl, etcdUrl} = stack
    await stack.close()
    await stack.close() // idempotent
    expect(await probeNats(natsUrl)).to.equal(false)
    expect(await probeEtcd(etcdUrl)).to.equal('unreachable')
    expect(lines.join('')).to.include('nats-server stopped').and.include('etcd stopped')
    expect(lines.join('')).to.not.include('exited unexpectedly')
  })

  it('starts nats-server with JetStream, its store under <dataDir>/nats, so function logs are kept', async () => {
    await requireDocker()
    await ensureTestImages()
    stack = await startStack(await options())
    const client = new AmpClient({server: stack.listenerUrl})
    await client.createFunction('demo', {image: TEST_IMAGES.title})
    const result = await client.invoke('demo', Buffer.from('kept in jetstream'))
    const lines = []
    for await (const line of await client.logs('demo', {callId: result.callId})) lines.push(line.line)
    expect(lines).to.deep.equal(['input kept in jetstream'])
    expect(existsSync(path.join(dataDir, 'nats', 'jetstream')), 'JetStream store under <dataDir>/nats').to.equal(true)
  })

  it('keeps etcd data across restarts of the stack', async () => {
    const opts = await options()
    stack = await startStack(opts)
    const put = await request(`${stack.listenerUrl}/_amp/v1/functions/kept`, {
      method: 'PUT',
      headers: {'content-type': 'application/json'},
      body: JSON.stringify({image: TEST_IMAGES.cat}),
    })
    expect(put.statusCode).to.equal(201)
    await put.body.dump()
    await stack.close()

    stack = await startStack(opts)
    const got = await request(`${stack.listenerUrl}/_amp/v1/functions/kept`)
    expect(got.statusCode).to.equal(200)
    expect(((await got.body.json()) as {image: string}).image).to.equal(TEST_IMAGES.cat)
  })

  it('leaves nothing behind that keeps the process alive after close()', async () => {
    const opts = await options()
    const script = fileURLToPath(new URL('../../fixtures/scripts/stack-up-down.ts', import.meta.url))
    const child = execa(process.execPath, ['--import', 'tsx', script, dataDir, opts.nats!, opts.etcd!], {
      timeout: 60_000,
      reject: false,
    })
    let closedAt = 0
    child.stdout.on('data', () => (closedAt ||= Date.now()))
    const result = await child
    expect(result.stdout).to.equal('closed true true')
    expect(result.exitCode).to.equal(0)
    expect(Date.now() - closedAt, 'ms from close() to exit').to.be.below(2000)
  })

  it('uses servers that already answer and leaves them running on close', async () => {
    const nats = await startNats()
    const etcd = await startEtcd()
    extra.push(nats, etcd)
    stack = await startStack(await options({nats: nats.url, etcd: etcd.url}))

    expect(stack.startedNats).to.equal(false)
    expect(stack.startedEtcd).to.equal(false)
    expect((await request(`${stack.listenerUrl}/_amp/v1/health`)).statusCode).to.equal(200)

    await stack.close()
    expect(await probeNats(nats.url)).to.equal(true)
    expect(await probeEtcd(etcd.url)).to.equal('healthy')
  })

  it('refuses to start servers for an address that is not on this machine', async () => {
    const opts = await options({nats: 'nats://192.0.2.1:4222'})
    const error = await startStack(opts).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(error).to.be.instanceOf(AmpError)
    expect((error as AmpError).code).to.equal('service_unavailable')
    expect((error as AmpError).message).to.include('192.0.2.1')
    // etcd was started alongside and must be gone again.
    expect(await probeEtcd(opts.etcd!)).to.equal('unreachable')
  })

  it('stops the servers it started when the listener cannot start', async () => {
    const opts = await options()
    const error = await startStack(opts, {
      startListener: async () => {
        throw new Error('listener broke')
      },
    }).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect((error as Error).message).to.equal('listener broke')
    expect(await probeNats(opts.nats!)).to.equal(false)
    expect(await probeEtcd(opts.etcd!)).to.equal('unreachable')
  })

  it('says what is wrong when the nats port is taken by something else', async () => {
    const blocker = createServer((socket) => socket.end())
    const port = await freePort()
    await new Promise<void>((resolve) => blocker.listen({host: '127.0.0.1', port}, resolve))
    try {
      const error = await startStack(await options({nats: `nats://127.0.0.1:${port}`})).then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(error).to.be.instanceOf(AmpError)
      expect((error as AmpError).message).to.match(/nats-server exited before it was ready.*address already in use/)
    } finally {
      blocker.close()
    }
  })
})
