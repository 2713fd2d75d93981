import {expect} from 'chai'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {parseConfig, resolveSettings} from '../../../src/runtime/shared/config.js'
import {describeCredentials, natsAuthOf, readTlsFiles, redactUrls} from '../../../src/runtime/shared/credentials.js'
import {AmpError, EXIT} from '../../../src/runtime/shared/errors.js'
import {ampError} from '../../helpers/amp-error.js'

const SECRET = 's3cret-Value-42'

function thrown(run: () => unknown): Error {
  try {
    run()
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a throw')
}

/** The error a promise rejects with. */
async function rejected(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a rejection')
}

describe('credentials', () => {
  describe('settings', () => {
    it('reads tokens, credentials and TLS files from the config file, flag or env over file', async () => {
      const file = await parseConfig(`token: from-file\ninvoke-token: calls-only\nnats-user: amp\nnats-password: ${SECRET}\netcd-tls-ca: /etc/amp/ca.pem\n`, 'f')
      expect(file).to.deep.equal({token: 'from-file', invokeToken: 'calls-only', natsUser: 'amp', natsPassword: SECRET, etcdTlsCa: '/etc/amp/ca.pem'})
      const settings = resolveSettings({token: 'from-env', 'nats-tls-ca': '/ca.pem'}, file)
      expect(settings).to.include({token: 'from-env', invokeToken: 'calls-only', natsUser: 'amp', natsPassword: SECRET, natsTlsCa: '/ca.pem'})
      expect(resolveSettings({}, {}).token).to.equal(undefined)
      expect(natsAuthOf(settings)).to.deep.include({user: 'amp', password: SECRET, tls: {ca: '/ca.pem', cert: undefined, key: undefined}})
    })

    it('refuses a token that cannot travel in a header, or an empty secret, without showing it', async () => {
      const fromFlag = thrown(() => resolveSettings({token: `${SECRET} x`}, {})) as AmpError
      expect(fromFlag.exit).to.equal(EXIT.usage)
      expect(fromFlag.message).to.contain('--token (or AMP_TOKEN)').and.not.contain(SECRET)
      const fromFile = await rejected(parseConfig(`token: "${SECRET}\\n"`, '/etc/amp.yaml')) as AmpError
      expect(fromFile.exit).to.equal(EXIT.config)
      expect(fromFile.message).to.contain('key "token"').and.not.contain(SECRET)
      expect((await rejected(parseConfig('nats-password: 12345', 'f'))).message).to.contain('non-empty string').and.not.contain('12345')
      // Not secret: shown, to help.
      expect((await rejected(parseConfig('nats-tls-ca: 7', 'f'))).message).to.contain('got 7')
    })

    it('describes what is set with secrets redacted (--config-used)', () => {
      expect(describeCredentials({token: SECRET, natsUser: 'amp', natsPassword: SECRET, etcdTlsCa: '/ca.pem'})).to.deep.equal([
        'token: <redacted>',
        'nats-user: amp',
        'nats-password: <redacted>',
        'etcd-tls-ca: /ca.pem',
      ])
      expect(describeCredentials({})).to.deep.equal([])
    })
  })

  describe('redactUrls', () => {
    it('hides user:password@ and token@ in URLs, leaving the rest', () => {
      expect(redactUrls(`nats://amp:${SECRET}@10.0.0.5:4222,nats://tok@n2:4222`)).to.equal('nats://<redacted>@10.0.0.5:4222,nats://<redacted>@n2:4222')
      expect(redactUrls(`cannot connect to https://root:${SECRET}@e1:2379/x: refused`)).to.equal('cannot connect to https://<redacted>@e1:2379/x: refused')
      expect(redactUrls('nats://127.0.0.1:4222 and a@b.c mail')).to.equal('nats://127.0.0.1:4222 and a@b.c mail')
    })
  })

  describe('readTlsFiles', () => {
    let dir: string
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'amp-creds-'))
      writeFileSync(join(dir, 'ca.pem'), 'CA')
      writeFileSync(join(dir, 'cert.pem'), 'CERT')
      writeFileSync(join(dir, 'key.pem'), 'KEY')
    })
    after(() => rmSync(dir, {recursive: true, force: true}))

    it('reads the files given, and nothing when none is', async () => {
      expect(await readTlsFiles('nats', {})).to.equal(undefined)
      const tls = await readTlsFiles('etcd', {ca: join(dir, 'ca.pem'), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem')})
      expect([tls?.ca, tls?.cert, tls?.key].map(String)).to.deep.equal(['CA', 'CERT', 'KEY'])
    })

    it('names the setting and the path of a missing file (exit 100), and wants a certificate and key together', async () => {
      const missing = await ampError(readTlsFiles('nats', {ca: join(dir, 'nope.pem')}))
      expect(missing.exit).to.equal(EXIT.config)
      expect(missing.message).to.equal(`cannot read the file of nats-tls-ca (${join(dir, 'nope.pem')}): no such file`)
      const half = await ampError(readTlsFiles('etcd', {cert: join(dir, 'cert.pem')}))
      expect(half.exit).to.equal(EXIT.usage)
      expect(half.message).to.contain('etcd-tls-cert and etcd-tls-key')
    })
  })
})
