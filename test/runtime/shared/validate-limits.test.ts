/** Container limits and environment variables: what reaches docker, and what an error may show. */
import {expect} from 'chai'

import {
  checkCpus,
  checkEnv,
  checkFireAndForget,
  checkMemoryBytes,
  checkPidsLimit,
  checkRetries,
  checkReuse,
  checkReuseMaxCalls,
  envLines,
  MAX_ENV_BYTES,
  MAX_REUSE_MAX_CALLS,
  parseCpus,
  parseMemory,
  parsePidsLimit,
} from '../../../src/runtime/shared/validate.js'
import {badRequest} from '../../helpers/amp-error.js'

const MIB = 1024 * 1024

describe('validate: limits and environment', () => {
  it('takes memory from docker\'s minimum of 6 MiB up to 1 TiB, in whole bytes', () => {
    expect(checkMemoryBytes(6 * MIB)).to.equal(6 * MIB)
    expect(checkMemoryBytes(1024 * 1024 * MIB)).to.equal(1024 * 1024 * MIB)
    for (const bad of [6 * MIB - 1, 0, -1, 1.5 * MIB + 0.5, 1024 * 1024 * MIB + 1, '268435456', Number.NaN, null]) {
      expect(badRequest(() => checkMemoryBytes(bad)).message).to.match(/^memoryBytes must be a whole number of bytes from 6MiB/)
    }
  })

  it('parses memory as docker does (binary k, m, g) and as amp prints it (KiB, MiB, GiB)', () => {
    expect(parseMemory('512MiB')).to.equal(512 * MIB)
    expect(parseMemory('512m')).to.equal(512 * MIB)
    expect(parseMemory('1GiB')).to.equal(1024 * MIB)
    expect(parseMemory('1.5g')).to.equal(1536 * MIB)
    expect(parseMemory('6291456')).to.equal(6 * MIB)
    for (const bad of ['5MiB', '1MB', '-512MiB', 'lots', '', '2TiB', '--memory']) {
      expect(badRequest(() => parseMemory(bad)).message).to.match(/^invalid memory .*: use e\.g\. 256MiB or 1GiB, from 6MiB to 1TiB$/)
    }
  })

  it('takes 0.01 to 64 CPUs, fractions included', () => {
    expect(checkCpus(0.01)).to.equal(0.01)
    expect(checkCpus(64)).to.equal(64)
    expect(parseCpus('0.5')).to.equal(0.5)
    expect(parseCpus('2')).to.equal(2)
    for (const bad of [0, 0.009, 64.5, -1, Number.POSITIVE_INFINITY, Number.NaN, '1']) {
      badRequest(() => checkCpus(bad))
    }
    for (const bad of ['0', '1e1', '.5', '-1', 'half', '100']) badRequest(() => parseCpus(bad))
  })

  it('takes a pids limit of 16 to 32768 (never docker\'s "unlimited" 0 or -1)', () => {
    expect(checkPidsLimit(16)).to.equal(16)
    expect(parsePidsLimit('32768')).to.equal(32_768)
    for (const bad of [15, 0, -1, 32_769, 100.5]) badRequest(() => checkPidsLimit(bad))
    for (const bad of ['-1', '0', '1e3', 'many']) badRequest(() => parsePidsLimit(bad))
  })

  it('takes 0 to 10 retries, whole numbers only', () => {
    expect(checkRetries(0)).to.equal(0)
    expect(checkRetries(10)).to.equal(10)
    for (const bad of [-1, 11, 1.5, Number.NaN, '2', null, true]) {
      expect(badRequest(() => checkRetries(bad)).message).to.equal('retries must be a whole number from 0 to 10')
    }
  })

  it('takes fireAndForget as a JSON boolean only (not "true", 1 or null)', () => {
    expect(checkFireAndForget(true)).to.equal(true)
    expect(checkFireAndForget(false)).to.equal(false)
    for (const bad of ['true', 1, 0, null, undefined]) {
      expect(badRequest(() => checkFireAndForget(bad)).message).to.equal('fireAndForget must be true or false')
    }
  })

  it('takes reuse as a JSON boolean only (not "true", 1 or null)', () => {
    expect(checkReuse(true)).to.equal(true)
    expect(checkReuse(false)).to.equal(false)
    for (const bad of ['true', 1, 0, null, undefined]) {
      expect(badRequest(() => checkReuse(bad)).message).to.equal('reuse must be true or false')
    }
  })

  it('takes 1 to 1000000 calls per warm container, whole numbers only', () => {
    expect(MAX_REUSE_MAX_CALLS).to.equal(1_000_000)
    expect(checkReuseMaxCalls(1)).to.equal(1)
    expect(checkReuseMaxCalls(1_000_000)).to.equal(1_000_000)
    for (const bad of [0, -1, 1_000_001, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '1000', null, true]) {
      expect(badRequest(() => checkReuseMaxCalls(bad)).message).to.equal('reuseMaxCalls must be a whole number from 1 to 1000000')
    }
  })

  it('takes names of letters, digits and _ not starting with a digit, and any text value on one line', () => {
    const env = {LEVEL: 'debug', _x1: '', PATH_LIKE: 'a=b=c', UNICODE: 'héllo ✓ 𝄞', TAB: 'a\tb'}
    // As JSON.parse makes it from a request body: __proto__ is then an own key, and must stay a variable.
    const checked = checkEnv(JSON.parse(`${JSON.stringify(env).slice(0, -1)},"__proto__":"kept"}`))
    expect(Object.keys(checked)).to.include('__proto__')
    expect(checked.__proto__).to.equal('kept')
    expect(checked).to.include({LEVEL: 'debug', _x1: '', PATH_LIKE: 'a=b=c', UNICODE: 'héllo ✓ 𝄞', TAB: 'a\tb'})
  })

  it('refuses a bad name, naming it, and a bad value without ever showing the value', () => {
    for (const name of ['1ABC', 'A-B', 'A B', '', '--privileged', 'A=B', 'É']) {
      expect(badRequest(() => checkEnv({[name]: 'v'})).message).to.match(/^invalid environment variable name/)
    }
    const secret = 'hunter2-very-secret'
    for (const value of [`${secret}\n`, `${secret}\r`, `${secret}\0`, `\n${secret}`, `${secret}\ud800`]) {
      const error = badRequest(() => checkEnv({TOKEN: value}))
      expect(error.message).to.equal('environment variable TOKEN: the value must be valid text without NUL, CR or newline characters')
      expect(error.message).to.not.contain(secret)
    }
    expect(badRequest(() => checkEnv({TOKEN: 42})).message).to.not.contain('42')
    for (const bad of [null, [], 'A=B', 3]) badRequest(() => checkEnv(bad))
  })

  it('bounds the whole environment at 32 KiB of KEY=VALUE lines', () => {
    const fits = {A: 'x'.repeat(MAX_ENV_BYTES - 3)} // "A=" + value + "\n"
    expect(Buffer.byteLength(envLines(checkEnv(fits)))).to.equal(MAX_ENV_BYTES)
    const error = badRequest(() => checkEnv({A: 'x'.repeat(MAX_ENV_BYTES - 2)}))
    expect(error.message).to.equal(`the environment is too large: ${MAX_ENV_BYTES + 1} bytes as KEY=VALUE lines, at most 32768 (32KiB)`)
    // Multi-byte characters count as their UTF-8 bytes.
    badRequest(() => checkEnv({A: '✓'.repeat(MAX_ENV_BYTES / 3)}))
  })

  it('writes the env-file lines sorted by name, one per variable', () => {
    expect(envLines({B: '2', A: 'x=1'})).to.equal('A=x=1\nB=2\n')
    expect(envLines({})).to.equal('')
  })
})
