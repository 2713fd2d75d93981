/**
 * NATS and etcd with credentials and TLS, for real: nats-server with --user/--pass and TLS with
 * client certificates, etcd with TLS, client certificates and auth enabled. The right settings work
 * end to end (listener, worker, a call); wrong ones fail at start with one line that holds no secret.
 */
import {expect} from 'chai'
import {Etcd3} from 'etcd3'
import {readFileSync} from 'node:fs'

import {AmpClient} from '../../../src/runtime/client/client.js'
import type {EtcdAuth, NatsAuth} from '../../../src/runtime/shared/credentials.js'
import {AmpError, EXIT} from '../../../src/runtime/shared/errors.js'
import {startListener, type Listener} from '../../../src/runtime/listener/listener.js'
import {createLogger} from '../../../src/runtime/shared/logger.js'
import {connectNats} from '../../../src/runtime/shared/nats.js'
import {Registry} from '../../../src/runtime/listener/registry.js'
import {startWorker, type Worker} from '../../../src/runtime/worker/worker.js'
import {ampError} from '../../helpers/amp-error.js'
import {makeCerts, type TestCerts} from '../../helpers/certs.js'
import {ensureTestImages} from '../../helpers/images.js'
import {DOCKER, requireDocker, startEtcd, startNats, type ServiceHandle} from '../../helpers/services.js'

const NATS_PASSWORD = 'nats-Pass-8a8a8a'
const ETCD_PASSWORD = 'etcd-Pass-6b6b6b'
const TOKEN = 'api-Token-4d4d4d'
const SECRETS = [NATS_PASSWORD, ETCD_PASSWORD, TOKEN]

describe('NATS and etcd credentials and TLS (integration)', function () {
  this.timeout(120_000)
  let certs: TestCerts
  let otherCa: TestCerts
  let nats: ServiceHandle
  let etcd: ServiceHandle
  let natsAuth: NatsAuth
  let etcdAuth: EtcdAuth
  const lines: string[] = []
  const logger = createLogger({level: 'debug', write: (line) => lines.push(line)})

  before(async () => {
    await requireDocker()
    await ensureTestImages()
    ;[certs, otherCa] = await Promise.all([makeCerts('amp'), makeCerts('other')])
    const tls = {ca: certs.ca, cert: certs.cert, key: certs.key}
    ;[nats, etcd] = await Promise.all([
      startNats({args: ['--user', 'amp', '--pass', NATS_PASSWORD, '--tls', '--tlscert', certs.cert, '--tlskey', certs.key, '--tlscacert', certs.ca, '--tlsverify']}),
      startEtcd({tls}),
    ])
    // etcd auth: a root user, then auth on (the client certificate alone lets us in until then).
    const admin = new Etcd3({hosts: etcd.url, credentials: {rootCertificate: readFileSync(certs.ca), certChain: readFileSync(certs.cert), privateKey: readFileSync(certs.key)}})
    try {
      await (await admin.user('root').create(ETCD_PASSWORD)).addRole('root')
      await admin.auth.authEnable()
    } finally {
      admin.close()
    }
    natsAuth = {user: 'amp', password: NATS_PASSWORD, tls}
    etcdAuth = {user: 'root', password: ETCD_PASSWORD, tls}
  })
  after(async () => {
    await Promise.all([nats?.stop(), etcd?.stop()])
    certs?.remove()
    otherCa?.remove()
  })

  const expectOneLineWithoutSecrets = (error: AmpError) => {
    expect(error.message).to.not.contain('\n')
    for (const secret of SECRETS) expect(`${error.message} ${error.suggestions.join(' ')}`).to.not.contain(secret)
  }

  it('with the right credentials, a listener and a worker serve a call end to end, and no secret is logged', async () => {
    let listener: Listener | undefined
    let worker: Worker | undefined
    try {
      worker = await startWorker({nats: nats.url, natsAuth, concurrency: 2, docker: DOCKER, logger})
      listener = await startListener({host: '127.0.0.1', port: 0, nats: nats.url, etcd: [etcd.url], natsAuth, etcdAuth, auth: {token: TOKEN}, logger})
      const client = new AmpClient({server: listener.url, token: TOKEN, logger})
      await client.createFunction('cat', {image: 'amp-test/cat:1'}, {replace: true})
      const result = await client.invoke('cat', Buffer.from('over TLS'))
      expect(result.exitCode).to.equal(0)
      expect(result.stdout.toString()).to.equal('over TLS')
      expect((await client.listFunctions()).map((spec) => spec.name)).to.deep.equal(['cat'])
      // A client without the token is turned away by the same listener.
      const refused = await ampError(new AmpClient({server: listener.url}).listFunctions())
      expect(refused.exit).to.equal(EXIT.notAuthorized)
    } finally {
      await listener?.close()
      await worker?.close()
    }
    const log = lines.join('')
    expect(log).to.contain('listener ready').and.contain('worker ready').and.contain('request refused')
    for (const secret of SECRETS) expect(log).to.not.contain(secret)
  })

  it('a wrong NATS password fails the worker and the listener at start: exit 110, one line, no password', async () => {
    const wrong = {...natsAuth, password: 'wrong-Nats-Pass'}
    const fromWorker = await ampError(startWorker({nats: nats.url, natsAuth: wrong, concurrency: 1, docker: DOCKER, logger}))
    expect(fromWorker).to.include({code: 'unauthorized', exit: EXIT.notAuthorized})
    expect(fromWorker.message).to.match(/^NATS at nats:\/\/127\.0\.0\.1:\d+ refused amp's credentials/)
    expectOneLineWithoutSecrets(fromWorker)
    expect(fromWorker.message).to.not.contain('wrong-Nats-Pass')
    const fromListener = await ampError(startListener({host: '127.0.0.1', port: 0, nats: nats.url, etcd: [etcd.url], natsAuth: wrong, etcdAuth, logger}))
    expect(fromListener.code).to.equal('unauthorized')
    // None at all is refused the same way.
    expect((await ampError(connectNats(nats.url, 'test', {tls: natsAuth.tls}))).code).to.equal('unauthorized')
  })

  it('a wrong etcd password fails the listener at start: exit 110, one line, no password', async () => {
    const error = await ampError(
      startListener({host: '127.0.0.1', port: 0, nats: nats.url, etcd: [etcd.url], natsAuth, etcdAuth: {...etcdAuth, password: 'wrong-Etcd-Pass'}, logger}),
    )
    expect(error).to.include({code: 'unauthorized', exit: EXIT.notAuthorized})
    expect(error.message).to.match(/^etcd refused amp's credentials/)
    expectOneLineWithoutSecrets(error)
    expect(error.message).to.not.contain('wrong-Etcd-Pass')
  })

  it('a CA that did not sign the server\'s certificate fails NATS and etcd at start with a clear line', async () => {
    const untrusted = {ca: otherCa.ca, cert: certs.cert, key: certs.key}
    const natsError = await ampError(connectNats(nats.url, 'test', {...natsAuth, tls: untrusted}))
    expect(natsError.code).to.equal('service_unavailable')
    expect(natsError.message).to.match(/^cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+: .*cert/i)
    expectOneLineWithoutSecrets(natsError)

    const registry = await Registry.connectWith([etcd.url], {...etcdAuth, tls: untrusted})
    try {
      const etcdError = await ampError(registry.checkAccess())
      expect(etcdError.code).to.equal('service_unavailable')
      expect(etcdError.message).to.match(/^cannot connect to etcd over TLS/)
      expectOneLineWithoutSecrets(etcdError)
    } finally {
      registry.close()
    }
  })

  it('a missing certificate file fails at once, naming the setting (exit 100)', async () => {
    const error = await ampError(connectNats(nats.url, 'test', {...natsAuth, tls: {ca: `${certs.dir}/nope.pem`}}))
    expect(error).to.include({code: 'config_invalid', exit: EXIT.config})
    expect(error.message).to.contain('nats-tls-ca')
  })
})
