import type {IncomingMessage} from 'node:http'
import {expect} from 'chai'

import {checkCallbackUrl, prefersAsync} from '../../../src/runtime/listener/http-api.js'
import {AmpError} from '../../../src/runtime/shared/errors.js'

const withPrefer = (prefer: string | string[] | undefined) => ({headers: prefer === undefined ? {} : {prefer}}) as unknown as IncomingMessage

describe('prefersAsync (RFC 7240 Prefer: respond-async)', () => {
  it('finds respond-async alone, among other preferences, with parameters, in any case', () => {
    for (const prefer of ['respond-async', 'wait=5, respond-async', 'respond-async, wait=10', ' Respond-Async ', 'respond-async; foo=bar', 'handling=lenient,respond-async']) {
      expect(prefersAsync(withPrefer(prefer)), prefer).to.equal(true)
    }
    expect(prefersAsync(withPrefer(['wait=5', 'respond-async']))).to.equal(true)
  })

  it('is false without the header, with other preferences, or with a look-alike token', () => {
    for (const prefer of [undefined, '', 'wait=5', 'return=minimal', 'respond-asynchronously', 'x-respond-async', 'wait=respond-async']) {
      expect(prefersAsync(withPrefer(prefer)), String(prefer)).to.equal(false)
    }
  })
})

describe('checkCallbackUrl (Amp-Callback-Url)', () => {
  it('takes absolute http and https URLs, normalized', () => {
    expect(checkCallbackUrl(undefined)).to.equal(undefined)
    expect(checkCallbackUrl('http://127.0.0.1:8080/hook?x=1')).to.equal('http://127.0.0.1:8080/hook?x=1')
    expect(checkCallbackUrl('HTTPS://Example.COM/a%20b')).to.equal('https://example.com/a%20b')
  })

  it('refuses other schemes, relative or malformed URLs and URLs over 2048 characters with bad_request', () => {
    const bad = ['', '/relative', 'example.com/hook', 'ftp://example.com/', 'file:///etc/passwd', 'javascript:alert(1)', 'http://', `https://example.com/${'a'.repeat(2048)}`]
    for (const value of bad) {
      expect(() => checkCallbackUrl(value), value.slice(0, 40))
        .to.throw(AmpError, 'Amp-Callback-Url')
        .with.property('code', 'bad_request')
    }
  })

  it('refuses the header given twice (Node joins the values with ", ") and any whitespace', () => {
    for (const value of [['http://a.example/', 'http://b.example/'], 'http://a.example/, http://b.example/', 'http://a.example/a b', ' http://a.example/']) {
      expect(() => checkCallbackUrl(value), String(value)).to.throw(AmpError, 'Amp-Callback-Url')
    }
  })
})
