/**
 * amp up (startStack) with servers that already run and want credentials: a nats-server with a
 * user and password, an etcd with TLS and client certificates. It finds them (the etcd probe speaks
 * TLS), connects with the settings, and its listener requires the token.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {expect} from 'chai'

import {AmpClient} from '../../../src/runtime/client/client.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {startStack, type Stack} from '../../../src/runtime/ops/stack.js'
import {ampError} from '../../helpers/amp-error.js'
import {makeCerts, type TestCerts} from '../../helpers/certs.js'
import {DOCKER, requireDocker, startEtcd, startNats, type ServiceHandle} from '../../helpers/services.js'

const PASSWORD = 'stack-Nats-Pass-2a2a'
const TOKEN = 'stack-Token-3b3b'

describe('startStack with credentials (integration)', function () {
  this.timeout(120_000)
  let certs: TestCerts
  let nats: ServiceHandle
  let etcd: ServiceHandle
  let dataDir: string
  let stack: Stack | undefined

  before(async () => {
    await requireDocker()
    certs = await makeCerts('stack')
    ;[nats, etcd] = await Promise.all([
      startNats({args: ['--user', 'amp', '--pass', PASSWORD]}),
      startEtcd({tls: {ca: certs.ca, cert: certs.cert, key: certs.key}}),
    ])
    dataDir = mkdtempSync(path.join(tmpdir(), 'amp-test-stack-creds-'))
  })
  after(async () => {
    await stack?.close()
    await Promise.all([nats?.stop(), etcd?.stop()])
    certs?.remove()
    rmSync(dataDir, {recursive: true, force: true})
  })

  it('uses the running servers with their credentials and serves the API only with the token', async () => {
    stack = await startStack({
      dataDir,
      host: '127.0.0.1',
      port: 0,
      nats: nats.url,
      etcd: etcd.url,
      concurrency: 1,
      docker: DOCKER,
      pull: 'never',
      logger: silentLogger,
      auth: {token: TOKEN},
      natsAuth: {user: 'amp', password: PASSWORD},
      etcdAuth: {tls: {ca: certs.ca, cert: certs.cert, key: certs.key}},
    })
    expect([stack.startedNats, stack.startedEtcd]).to.deep.equal([false, false])
    await new AmpClient({server: stack.listenerUrl, token: TOKEN}).createFunction('cat', {image: 'amp-test/cat:1'})
    expect((await new AmpClient({server: stack.listenerUrl, token: TOKEN}).listFunctions()).map((spec) => spec.name)).to.deep.equal(['cat'])
    expect((await ampError(new AmpClient({server: stack.listenerUrl}).listFunctions())).code).to.equal('unauthorized')
  })
})
