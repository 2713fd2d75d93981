import {mkdtempSync, rmSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {expect} from 'chai'
import {AmpError} from '../../../src/runtime/shared/errors.js'
import {isLoopback} from '../../../src/runtime/shared/validate.js'
import {
  etcdAddress,
  freePort,
  natsAddress,
  probeEtcd,
  probeNats,
  startEtcdServer,
  startNatsServer,
} from '../../../src/runtime/ops/servers.js'

describe('servers', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'amp-test-servers-'))
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('names the apt package when nats-server is missing', async () => {
    const error = await startNatsServer({host: '127.0.0.1', port: 1, binary: 'amp-no-such-nats', logFile: path.join(dir, 'log')}).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(error).to.be.instanceOf(AmpError)
    expect((error as AmpError).code).to.equal('service_unavailable')
    expect((error as AmpError).message).to.include('amp-no-such-nats')
    expect((error as AmpError).suggestions.join(' ')).to.include('apt-get install nats-server')
  })

  it('names the apt package when etcd is missing', async () => {
    const error = await startEtcdServer({
      host: '127.0.0.1',
      port: 1,
      peerPort: 2,
      dataDir: dir,
      name: 'x',
      binary: '/nonexistent/etcd',
      logFile: path.join(dir, 'log'),
    }).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect((error as AmpError).code).to.equal('registry_unavailable')
    expect((error as AmpError).suggestions.join(' ')).to.include('apt-get install etcd-server')
  })

  it('parses server addresses with and without scheme or port', () => {
    expect(natsAddress('nats://127.0.0.1:4300')).to.deep.equal({host: '127.0.0.1', port: 4300})
    expect(natsAddress('localhost')).to.deep.equal({host: 'localhost', port: 4222})
    expect(natsAddress('nats://[::1]:5000')).to.deep.equal({host: '::1', port: 5000})
    expect(etcdAddress('http://127.0.0.1')).to.deep.equal({host: '127.0.0.1', port: 2379})
    expect(etcdAddress('10.0.0.1:2400')).to.deep.equal({host: '10.0.0.1', port: 2400})
  })

  it('knows loopback hosts', () => {
    expect(['127.0.0.1', '127.1.2.3', 'localhost', '::1'].map(isLoopback)).to.deep.equal([true, true, true, true])
    expect(['0.0.0.0', '10.0.0.1', 'example.com'].map(isLoopback)).to.deep.equal([false, false, false])
  })

  it('gives the preferred port when it is free, and another free one when it is taken (etcd peers of amp up)', async () => {
    const wanted = await freePort()
    expect(await freePort('127.0.0.1', wanted)).to.equal(wanted)
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen({host: '127.0.0.1', port: wanted}, resolve))
    try {
      const other = await freePort('127.0.0.1', wanted)
      expect(other).to.be.a('number').and.not.equal(wanted)
    } finally {
      taken.close()
    }
  })

  it('does not take a closed port, or a TCP server that is not NATS or etcd, for one', async () => {
    const closed = await freePort()
    expect(await probeNats(`nats://127.0.0.1:${closed}`)).to.equal(false)
    expect(await probeEtcd(`http://127.0.0.1:${closed}`)).to.equal('unreachable')

    const other = createServer((socket) => socket.end('SSH-2.0-OpenSSH\r\n'))
    await new Promise<void>((resolve) => other.listen({host: '127.0.0.1', port: 0}, resolve))
    const {port} = other.address() as {port: number}
    try {
      expect(await probeNats(`nats://127.0.0.1:${port}`)).to.equal(false)
      expect(await probeEtcd(`http://127.0.0.1:${port}`)).to.equal('unreachable')
    } finally {
      other.close()
    }
  })
})
