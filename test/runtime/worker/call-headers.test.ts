/** A call's headers from the listener's callHeaders to the worker's parseCallSettings: Amp-Reuse, Amp-Reuse-Max-Calls, and every setting the table (function-fields.ts) carries. */
import {expect} from 'chai'

import {parseCallSettings} from '../../../src/runtime/worker/call-headers.js'
import {FUNCTION_FIELDS, SETTING_KEYS} from '../../../src/runtime/shared/function-fields.js'
import {storedFunction} from '../../../src/runtime/shared/function-spec.js'
import {callHeaders, HEADER} from '../../../src/runtime/shared/protocol.js'

const CALL = 'c0ffee00-0000-4000-8000-000000000003'
const fn = (settings: {reuse?: boolean; reuseMaxCalls?: number} = {}) =>
  storedFunction({name: 'fn', image: 'busybox', timeoutMs: 5000, ...settings})

describe('call headers: Amp-Reuse and Amp-Reuse-Max-Calls', () => {
  it('sends Amp-Reuse: true and the function\'s reuseMaxCalls when reuse is on, and the worker reads them back', () => {
    const h = callHeaders(CALL, fn({reuse: true, reuseMaxCalls: 25}), 0)
    expect(h.get(HEADER.reuse)).to.equal('true')
    expect(h.get(HEADER.reuseMaxCalls)).to.equal('25')
    expect(parseCallSettings(h)).to.include({reuse: true, reuseMaxCalls: 25})
    expect(parseCallSettings(callHeaders(CALL, fn({reuse: true}), 0)).reuseMaxCalls).to.equal(1000)
  })

  it('sends neither when reuse is off (reuseMaxCalls set or not): the worker runs a fresh container per call', () => {
    for (const spec of [fn(), fn({reuse: false, reuseMaxCalls: 25})]) {
      const h = callHeaders(CALL, spec, 0)
      expect(h.has(HEADER.reuse)).to.equal(false)
      expect(h.has(HEADER.reuseMaxCalls)).to.equal(false)
      const settings = parseCallSettings(h)
      expect(settings).to.not.have.property('reuse')
      expect(settings).to.not.have.property('reuseMaxCalls')
    }
  })

  it('turns reuse on only for the exact value true', () => {
    for (const value of ['TRUE', 'True', '1', 'yes', 'false', '']) {
      const h = callHeaders(CALL, fn(), 0)
      h.set(HEADER.reuse, value)
      expect(parseCallSettings(h), JSON.stringify(value)).to.not.have.property('reuse')
    }
  })

  it('refuses a call whose Amp-Reuse-Max-Calls is not a whole number from 1 to 1000000', () => {
    for (const bad of ['0', '-1', '1000001', '1.5', 'x', '']) {
      const hostile = callHeaders(CALL, fn({reuse: true}), 0)
      hostile.set(HEADER.reuseMaxCalls, bad)
      expect(() => parseCallSettings(hostile), JSON.stringify(bad)).to.throw(/reuseMaxCalls must be a whole number/)
    }
  })

  it('carries every setting that has a header from the listener to the worker unchanged', () => {
    const spec = storedFunction({
      name: 'fn', image: 'ghcr.io/acme/fn:1', timeoutMs: 1500, network: 'bridge', memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pidsLimit: 32,
      env: {LEVEL: 'debug', EMPTY: ''}, fireAndForget: true, retries: 5, prestart: 3, reuse: true, reuseMaxCalls: 25,
    })
    const carried = SETTING_KEYS.filter((key) => 'header' in FUNCTION_FIELDS[key])
    expect(carried).to.have.length(10)
    const settings = parseCallSettings(callHeaders(CALL, spec, 7)) as unknown as Record<string, unknown>
    expect(settings).to.deep.equal({callId: CALL, function: 'fn', ...Object.fromEntries(carried.map((key) => [key, spec[key]]))})
  })
})
