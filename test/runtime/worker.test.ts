import {expect} from 'chai'

import {AmpError} from '../../src/runtime/errors.js'
import {envLines} from '../../src/runtime/validate.js'
import {parseEnvHeader} from '../../src/runtime/worker.js'

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
