import {expect} from 'chai'

import {
  applyPatch,
  checkClientInput,
  checkFunctionInput,
  checkFunctionPatch,
  DEFAULT_CPUS,
  DEFAULT_MEMORY_BYTES,
  DEFAULT_PIDS_LIMIT,
  DEFAULT_PRESTART,
  DEFAULT_RETRIES,
  DEFAULT_REUSE_MAX_CALLS,
  envFromFlags,
  envPatch,
  type FunctionInput,
  publicSpec,
  storedFunction,
} from '../../../src/runtime/shared/function-spec.js'
import {MAX_ENV_BYTES} from '../../../src/runtime/shared/validate.js'
import {badRequest} from '../../helpers/amp-error.js'

const SECRET = 'hunter2-very-secret'
const TIME = '2025-01-31T14:05:09.123Z'

describe('function-spec', () => {
  it('gives a new function the default limits (256 MiB, 1 CPU, 256 pids), no environment, sync calls and 2 retries', () => {
    expect(checkFunctionInput('fn', {image: 'busybox:1.36'})).to.deep.equal({
      name: 'fn',
      image: 'busybox:1.36',
      timeoutMs: 30_000,
      network: 'none',
      memoryBytes: 256 * 1024 * 1024,
      cpus: 1,
      pidsLimit: 256,
      env: {},
      fireAndForget: false,
      retries: 2,
      prestart: 2,
      reuse: false,
      reuseMaxCalls: 1000,
    })
  })

  it('keeps prestart given on create or patch (0 opts out), and refuses values outside 0-16 as 400s', () => {
    expect(checkFunctionInput('fn', {image: 'busybox', prestart: 0}).prestart).to.equal(0)
    expect(checkFunctionInput('fn', {image: 'busybox', prestart: 16}).prestart).to.equal(16)
    expect(checkFunctionPatch({prestart: 5})).to.deep.equal({prestart: 5})
    for (const bad of [17, -1, 1.5, '2', null]) {
      badRequest(() => checkFunctionInput('fn', {image: 'busybox', prestart: bad}))
      badRequest(() => checkFunctionPatch({prestart: bad}))
    }
  })

  it('keeps reuse and reuseMaxCalls given on create or patch, and refuses bad ones as 400s', () => {
    expect(checkFunctionInput('fn', {image: 'busybox', reuse: true, reuseMaxCalls: 1})).to.include({reuse: true, reuseMaxCalls: 1, prestart: 2})
    expect(checkFunctionInput('fn', {image: 'busybox', reuse: true, prestart: 1}).reuseMaxCalls).to.equal(DEFAULT_REUSE_MAX_CALLS)
    expect(checkFunctionInput('fn', {image: 'busybox', reuseMaxCalls: 1_000_000}).reuseMaxCalls).to.equal(1_000_000)
    expect(checkFunctionPatch({reuse: false, reuseMaxCalls: 50})).to.deep.equal({reuse: false, reuseMaxCalls: 50})
    for (const bad of ['true', 1, null]) {
      expect(badRequest(() => checkFunctionInput('fn', {image: 'busybox', reuse: bad})).message).to.equal('reuse must be true or false')
      badRequest(() => checkFunctionPatch({reuse: bad}))
    }
    for (const bad of [0, -1, 1_000_001, 2.5, '10', null]) {
      expect(badRequest(() => checkFunctionInput('fn', {image: 'busybox', reuseMaxCalls: bad})).message).to.match(/^reuseMaxCalls must be/)
      badRequest(() => checkFunctionPatch({reuseMaxCalls: bad}))
    }
  })

  it('refuses reuse with prestart 0 on create (no warm container to keep), but keeps reuseMaxCalls without reuse', () => {
    const error = badRequest(() => checkFunctionInput('fn', {image: 'busybox', reuse: true, prestart: 0}))
    expect(error.message).to.equal('reuse needs prestart of at least 1 (the most warm containers a worker keeps)')
    expect(checkFunctionInput('fn', {image: 'busybox', reuse: false, prestart: 0})).to.include({reuse: false, prestart: 0})
    expect(checkFunctionInput('fn', {image: 'busybox', prestart: 0, reuseMaxCalls: 5})).to.include({reuse: false, prestart: 0, reuseMaxCalls: 5})
    expect(badRequest(() => checkFunctionPatch({reuse: true, prestart: 0})).message).to.match(/^reuse needs prestart of at least 1/)
  })

  it('keeps fireAndForget and retries given on create (PUT), and refuses bad ones as 400s', () => {
    expect(checkFunctionInput('fn', {image: 'busybox', fireAndForget: true, retries: 0})).to.include({fireAndForget: true, retries: 0})
    expect(checkFunctionInput('fn', {image: 'busybox', retries: 10}).retries).to.equal(10)
    badRequest(() => checkFunctionInput('fn', {image: 'busybox', fireAndForget: 'true'}))
    badRequest(() => checkFunctionInput('fn', {image: 'busybox', retries: 11}))
    badRequest(() => checkFunctionInput('fn', {image: 'busybox', retries: -1}))
  })

  it('keeps given limits and environment, and refuses bad ones as 400s', () => {
    const input = {image: 'busybox', memoryBytes: 8 * 1024 * 1024, cpus: 0.25, pidsLimit: 32, env: {TOKEN: SECRET}}
    expect(checkFunctionInput('fn', input)).to.include({memoryBytes: 8 * 1024 * 1024, cpus: 0.25, pidsLimit: 32})
    expect(checkFunctionInput('fn', input).env).to.deep.equal({TOKEN: SECRET})
    badRequest(() => checkFunctionInput('fn', {image: 'busybox', memoryBytes: 1}))
    badRequest(() => checkFunctionInput('fn', {image: 'busybox', cpus: 100}))
    badRequest(() => checkFunctionInput('fn', {image: 'busybox', pidsLimit: 0}))
    badRequest(() => checkFunctionInput('fn', {image: 'busybox', env: ['A=1']}))
  })

  it('refuses unknown keys on create (PUT) and on the client as a PATCH does, naming them and the settings it takes', () => {
    const message = /^unknown setting "privileged": use image, timeoutMs, network, .* reuse or reuseMaxCalls$/
    expect(badRequest(() => checkFunctionInput('fn', {image: 'x:1', privileged: true})).message).to.match(message)
    expect(badRequest(() => checkClientInput({image: 'x:1', privileged: true} as FunctionInput)).message).to.match(message)
    expect(badRequest(() => checkFunctionPatch({image: 'x:1', privileged: true})).message).to.match(message)
    // The same words for all three: a misspelt setting, or what a GET answers but no create takes.
    const create = badRequest(() => checkFunctionInput('fn', {image: 'busybox', timeout: 5, envKeys: []})).message
    expect(create).to.equal(badRequest(() => checkFunctionPatch({timeout: 5, envKeys: []})).message)
    expect(create).to.match(/^unknown setting "timeout", "envKeys": use /)
  })

  it('reads a function stored before limits and env existed with the defaults', () => {
    const old = {name: 'fn', image: 'busybox', timeoutMs: 5000, network: 'bridge', createdAt: TIME, updatedAt: TIME}
    expect(storedFunction(old)).to.deep.equal({
      ...old,
      memoryBytes: DEFAULT_MEMORY_BYTES,
      cpus: DEFAULT_CPUS,
      pidsLimit: DEFAULT_PIDS_LIMIT,
      env: {},
      fireAndForget: false,
      retries: DEFAULT_RETRIES,
      prestart: DEFAULT_PRESTART,
      reuse: false,
      reuseMaxCalls: DEFAULT_REUSE_MAX_CALLS,
    })
  })

  it('shows the names of the variables, sorted, and never their values', () => {
    const stored = storedFunction({name: 'fn', image: 'busybox', env: {ZED: SECRET, ALPHA: SECRET}, createdAt: TIME, updatedAt: TIME})
    const shown = publicSpec(stored)
    expect(shown.envKeys).to.deep.equal(['ALPHA', 'ZED'])
    expect(JSON.stringify(shown)).to.not.contain(SECRET)
    expect(shown).to.not.have.property('env')
  })

  it('shows reuse and reuseMaxCalls as stored', () => {
    const stored = storedFunction({name: 'fn', image: 'busybox', reuse: true, reuseMaxCalls: 7, createdAt: TIME, updatedAt: TIME})
    expect(publicSpec(stored)).to.include({reuse: true, reuseMaxCalls: 7})
  })

  describe('patches', () => {
    const stored = () => storedFunction({name: 'fn', image: 'busybox', env: {KEEP: 'k', DROP: 'd', CHANGE: 'old'}, createdAt: TIME, updatedAt: TIME})

    it('sets, replaces and removes (null) variables, keeping the others', () => {
      const patch = checkFunctionPatch({env: {CHANGE: 'new', DROP: null, ADD: 'a'}})
      const updated = applyPatch(stored(), patch, '2025-02-01T00:00:00.000Z')
      expect(updated.env).to.deep.equal({KEEP: 'k', CHANGE: 'new', ADD: 'a'})
      expect(updated.updatedAt).to.equal('2025-02-01T00:00:00.000Z')
      expect(updated.image).to.equal('busybox')
    })

    it('changes limits alone, leaving the environment as it was', () => {
      const updated = applyPatch(stored(), checkFunctionPatch({memoryBytes: 64 * 1024 * 1024, cpus: 2, pidsLimit: 1024}), TIME)
      expect(updated).to.include({memoryBytes: 64 * 1024 * 1024, cpus: 2, pidsLimit: 1024})
      expect(updated.env).to.deep.equal(stored().env)
    })

    it('changes fireAndForget and retries alone (PATCH), keeping the other settings', () => {
      const patch = checkFunctionPatch({fireAndForget: true, retries: 7})
      expect(patch).to.deep.equal({fireAndForget: true, retries: 7})
      const updated = applyPatch(stored(), patch, TIME)
      expect(updated).to.include({fireAndForget: true, retries: 7, image: 'busybox'})
      expect(updated.env).to.deep.equal(stored().env)
      // false is a change too, not "nothing to change".
      expect(applyPatch(updated, checkFunctionPatch({fireAndForget: false}), TIME)).to.include({fireAndForget: false, retries: 7})
      expect(publicSpec(updated)).to.include({fireAndForget: true, retries: 7})
    })

    it('refuses a PATCH with a bad fireAndForget or retries, and names them among the settings it knows', () => {
      badRequest(() => checkFunctionPatch({fireAndForget: 'yes'}))
      badRequest(() => checkFunctionPatch({retries: 1.5}))
      badRequest(() => checkFunctionPatch({retries: 11}))
      expect(badRequest(() => checkFunctionPatch({retry: 1})).message).to.match(/fireAndForget, retries, prestart, reuse or reuseMaxCalls$/)
      expect(badRequest(() => checkFunctionPatch({reuseMaxCall: 5})).message).to.match(/^unknown setting "reuseMaxCall"/)
    })

    it('turns reuse on and off and changes reuseMaxCalls alone, keeping the other settings', () => {
      const on = applyPatch(stored(), checkFunctionPatch({reuse: true, reuseMaxCalls: 20}), TIME)
      expect(on).to.include({reuse: true, reuseMaxCalls: 20, prestart: DEFAULT_PRESTART, image: 'busybox'})
      expect(on.env).to.deep.equal(stored().env)
      // false is a change too, not "nothing to change"; reuseMaxCalls stays for next time.
      expect(applyPatch(on, checkFunctionPatch({reuse: false}), TIME)).to.include({reuse: false, reuseMaxCalls: 20})
    })

    it('refuses a patch that leaves reuse on with prestart 0, checked on the function after the patch', () => {
      const warm = applyPatch(stored(), checkFunctionPatch({reuse: true}), TIME)
      const message = /^reuse needs prestart of at least 1 \(the most warm containers a worker keeps\)$/
      expect(badRequest(() => applyPatch(warm, checkFunctionPatch({prestart: 0}), TIME)).message).to.match(message)
      const cold = applyPatch(stored(), checkFunctionPatch({prestart: 0}), TIME)
      expect(badRequest(() => applyPatch(cold, checkFunctionPatch({reuse: true}), TIME)).message).to.match(message)
      // Turning reuse off and prestart to 0 at once is fine, and so is reuse with prestart raised from 0.
      expect(applyPatch(warm, checkFunctionPatch({reuse: false, prestart: 0}), TIME)).to.include({reuse: false, prestart: 0})
      expect(applyPatch(cold, checkFunctionPatch({reuse: true, prestart: 1}), TIME)).to.include({reuse: true, prestart: 1})
    })

    it('refuses an environment that the patch makes too large', () => {
      const big = 'x'.repeat(MAX_ENV_BYTES / 2)
      const once = applyPatch(stored(), checkFunctionPatch({env: {A: big}}), TIME)
      expect(badRequest(() => applyPatch(once, checkFunctionPatch({env: {B: big}}), TIME)).message).to.match(/^the environment is too large/)
    })

    it('refuses an empty env patch, bad names and bad values, never showing a value', () => {
      badRequest(() => checkFunctionPatch({env: {}}))
      badRequest(() => checkFunctionPatch({env: {'A-B': null}}))
      badRequest(() => checkFunctionPatch({env: {A: 3}}))
      expect(badRequest(() => checkFunctionPatch({env: {A: `${SECRET}\n`}})).message).to.not.contain(SECRET)
      expect(badRequest(() => checkFunctionPatch({envKeys: ['A']})).message).to.match(/^unknown setting "envKeys"/)
    })
  })

  describe('envFromFlags', () => {
    it('reads NAME=VALUE (the value may hold =) and NAME from the environment; the last of a name wins', () => {
      expect(envFromFlags(['A=1', 'B=x=y', 'FROM_ENV', 'A=2', 'E='], {FROM_ENV: SECRET})).to.deep.equal({
        A: '2',
        B: 'x=y',
        FROM_ENV: SECRET,
        E: '',
      })
    })

    it('never repeats what it was given when it cannot use it', () => {
      for (const item of [SECRET, `=${SECRET}`, `${SECRET} with spaces`]) {
        const error = badRequest(() => envFromFlags(['A=1', item], {}))
        expect(error.message).to.equal("--env number 2 is neither NAME=VALUE nor the NAME of a variable set in amp's environment")
      }
    })

    it('builds the PATCH env of update: null for --unset-env, and refuses a name given to both', () => {
      expect(envPatch([], [], {})).to.equal(undefined)
      expect(envPatch(['A=1'], ['B'], {})).to.deep.equal({A: '1', B: null})
      expect(badRequest(() => envPatch(['A=1'], ['A'], {})).message).to.equal('--env and --unset-env both name A: give one of them')
      badRequest(() => envPatch([], ['not-a-name'], {}))
    })
  })
})
