import {expect} from 'chai'

import {AmpError} from '../../../src/runtime/shared/errors.js'
import {storedFunction} from '../../../src/runtime/shared/function-spec.js'
import {callHeaders, HEADER} from '../../../src/runtime/shared/protocol.js'
import {envLines} from '../../../src/runtime/shared/validate.js'
import {parseCallSettings, parseEnvHeader} from '../../../src/runtime/worker/call-headers.js'

const header = (text: string) => Buffer.from(text).toString('base64')
const SECRET = 'hunter2-very-secret'

describe('worker: the Amp-Env header', () => {
  it('decodes what the listener sends back to the same environment', () => {
    const env = {TOKEN: `${SECRET} = x`, EMPTY: '', UNICODE: 'héllo ✓'}
    expect(parseEnvHeader(header(envLines(env)))).to.deep.equal(env)
  })

  // What arrives over NATS is checked again before any of it reaches docker, and no error shows a value.
  const hostile: Array<[string, string]> = [
    ['not base64', `${SECRET}!`],
    ['base64 of lines without a final newline', header(`TOKEN=${SECRET}`)],
    ['a line without =', header(`${SECRET}\n`)],
    ['an empty name', header(`=${SECRET}\n`)],
    ['a name that is a docker flag', header(`--privileged=${SECRET}\n`)],
    ['a name given twice', header(`A=${SECRET}\nA=2\n`)],
    ['a carriage return in a value', header(`A=${SECRET}\r\n`)],
    ['a NUL in a value', header(`A=${SECRET}\0\n`)],
    ['more than the environment limit', header(`A=${'x'.repeat(40 * 1024)}\n`)],
  ]
  for (const [why, value] of hostile) {
    it(`refuses ${why}, without showing the value`, () => {
      let thrown: unknown
      try {
        parseEnvHeader(value)
      } catch (error) {
        thrown = error
      }
      expect(thrown, 'expected a throw').to.satisfy((error: unknown) => error instanceof TypeError || error instanceof AmpError)
      expect((thrown as Error).message).to.not.contain(SECRET)
    })
  }
})

describe('worker: the Amp-Prestart header', () => {
  const CALL = 'c0ffee00-0000-4000-8000-000000000002'
  const fn = (prestart?: number) => storedFunction({name: 'fn', image: 'busybox', timeoutMs: 5000, ...(prestart === undefined ? {} : {prestart})})

  it("carries the function's prestart to the worker (0 too), and the default for a function stored before it existed", () => {
    expect(parseCallSettings(callHeaders(CALL, fn(0), 0)).prestart).to.equal(0)
    expect(parseCallSettings(callHeaders(CALL, fn(7), 0)).prestart).to.equal(7)
    expect(parseCallSettings(callHeaders(CALL, fn(), 0)).prestart).to.equal(2)
  })

  it("leaves it out for an older listener's call (the worker's default applies), and refuses a bad one", () => {
    const h = callHeaders(CALL, fn(3), 0)
    h.delete(HEADER.prestart)
    expect(parseCallSettings(h)).to.not.have.property('prestart')
    for (const bad of ['17', '-1', '1.5', 'x']) {
      const hostile = callHeaders(CALL, fn(3), 0)
      hostile.set(HEADER.prestart, bad)
      expect(() => parseCallSettings(hostile), bad).to.throw()
    }
  })
})
