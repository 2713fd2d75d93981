/** The table of function settings (function-fields.ts): every direction it drives agrees with every entry. */
import {expect} from 'chai'

import {
  answeredSettings,
  FUNCTION_FIELDS,
  type FunctionSettings,
  SETTING_HEADERS,
  SETTING_KEYS,
  type SettingKey,
  settingHeaders,
  settingsFromHeaders,
  shownSettings,
  storedSettings,
} from '../../../src/runtime/shared/function-fields.js'
import {checkClientInput, checkFunctionInput, checkFunctionPatch, publicSpec, storedFunction} from '../../../src/runtime/shared/function-spec.js'
import {HEADER} from '../../../src/runtime/shared/protocol.js'
import {badRequest} from '../../helpers/amp-error.js'

/** A value other than the default for every setting: typed, so a new setting must be added here. */
const SAMPLE: FunctionSettings = {
  image: 'ghcr.io/acme/fn:1',
  timeoutMs: 1500,
  network: 'bridge',
  memoryBytes: 64 * 1024 * 1024,
  cpus: 0.5,
  pidsLimit: 32,
  env: {LEVEL: 'debug', TOKEN: 's3cret=x'},
  fireAndForget: true,
  retries: 5,
  prestart: 3,
  reuse: true,
  reuseMaxCalls: 25,
}

/** A value of the wrong JSON type for a setting, which its check must refuse. */
const WRONG_TYPE = {string: 42, number: 'x', boolean: 'yes', env: ['A=1']} as const

const field = (key: SettingKey) => FUNCTION_FIELDS[key] as {json: keyof typeof WRONG_TYPE; default?: unknown; header?: {name: string; absent: string}}
const headerKeys = SETTING_KEYS.filter((key) => field(key).header)
/** What the table sends and reads back of a function, as a NATS header map would carry it. */
const asHeaders = (fn: FunctionSettings) => new Map(settingHeaders(fn))

describe('function fields: one table for every setting of a function', () => {
  it('lists every setting in the order the API checks, stores and shows them', () => {
    expect(SETTING_KEYS).to.deep.equal(['image', 'timeoutMs', 'network', 'memoryBytes', 'cpus', 'pidsLimit', 'env', 'fireAndForget', 'retries', 'prestart', 'reuse', 'reuseMaxCalls'])
    expect(Object.keys(SAMPLE)).to.deep.equal(SETTING_KEYS)
  })

  describe('call headers', () => {
    it('every setting with a header round-trips through the headers, and only those', () => {
      const back = settingsFromHeaders((name) => asHeaders(SAMPLE).get(name))
      expect(back).to.deep.equal(Object.fromEntries(headerKeys.map((key) => [key, SAMPLE[key]])))
      // The listener's own settings of an async call never reach a worker.
      expect(headerKeys).to.not.include.members(['fireAndForget', 'retries'])
    })

    it('gives each such setting a header of its own, which HEADER names under the setting\'s key', () => {
      const names = headerKeys.map((key) => field(key).header!.name)
      expect(new Set(names).size).to.equal(names.length)
      for (const key of headerKeys) {
        expect(SETTING_HEADERS).to.have.property(key, field(key).header!.name)
        expect(HEADER).to.have.property(key, field(key).header!.name)
      }
      expect(names.every((name) => /^Amp-[A-Z][A-Za-z-]+$/.test(name))).to.equal(true)
    })

    it('leaves out the headers of an empty environment and of reuse off (reuseMaxCalls too)', () => {
      const cold = asHeaders({...SAMPLE, env: {}, reuse: false})
      expect([...cold.keys()]).to.deep.equal(['Amp-Image', 'Amp-Timeout-Ms', 'Amp-Network', 'Amp-Memory-Bytes', 'Amp-Cpus', 'Amp-Pids-Limit', 'Amp-Prestart'])
      const back = settingsFromHeaders((name) => cold.get(name))
      expect(back.env).to.deep.equal({})
      expect(back).to.not.have.property('reuse')
      expect(back).to.not.have.property('reuseMaxCalls')
    })

    it('reads a call without a header as the table says: the default, left out, or refused', () => {
      for (const key of headerKeys) {
        const {header} = field(key)
        const without = asHeaders(SAMPLE)
        without.delete(header!.name)
        const read = () => settingsFromHeaders((name) => without.get(name))
        if (header!.absent === 'required') {
          expect(read, key).to.throw()
        } else if (header!.absent === 'default') {
          expect(read(), key).to.have.deep.property(key, field(key).default)
        } else {
          expect(read(), key).to.not.have.property(key)
        }
      }
    })

    it('checks every header again on arrival: a value of the wrong kind is refused', () => {
      for (const key of headerKeys.filter((item) => item !== 'reuse')) {
        const hostile = asHeaders(SAMPLE)
        hostile.set(field(key).header!.name, 'x; rm -rf /')
        expect(() => settingsFromHeaders((name) => hostile.get(name)), key).to.throw()
      }
    })
  })

  describe('what a client sends', () => {
    it('sends every setting it is given, checked, as given', () => {
      expect(checkClientInput(SAMPLE)).to.deep.equal(SAMPLE)
      expect(checkClientInput({image: 'busybox:1.36'})).to.deep.equal({image: 'busybox:1.36'})
    })

    it('checks every setting before it leaves the machine, with the listener\'s own message', () => {
      for (const key of SETTING_KEYS) {
        const bad = {...SAMPLE, [key]: WRONG_TYPE[field(key).json]}
        const onClient = badRequest(() => checkClientInput(bad)).message
        expect(badRequest(() => checkFunctionInput('fn', bad)).message, key).to.equal(onClient)
        const onPatch = badRequest(() => checkFunctionPatch({[key]: WRONG_TYPE[field(key).json]})).message
        // A PATCH's env has its own check (null removes a variable), with its own message.
        if (key !== 'env') expect(onPatch, key).to.equal(onClient)
      }
    })

    it('lets a PATCH change every setting, and names them all when it changes none', () => {
      for (const key of SETTING_KEYS) expect(checkFunctionPatch({[key]: SAMPLE[key]}), key).to.deep.equal({[key]: SAMPLE[key]})
      expect(badRequest(() => checkFunctionPatch({})).message).to.equal(
        'nothing to change: give image, timeoutMs, network, memoryBytes, cpus, pidsLimit, env, fireAndForget, retries, prestart, reuse or reuseMaxCalls',
      )
    })
  })

  describe('defaults, storage and answers', () => {
    it('gives a function created with its image alone, or stored before a setting existed, each setting\'s default', () => {
      const defaults = Object.fromEntries(SETTING_KEYS.filter((key) => key !== 'image').map((key) => [key, field(key).default]))
      const {name, ...created} = checkFunctionInput('fn', {image: 'busybox:1.36'})
      expect(name).to.equal('fn')
      expect(created).to.deep.equal({image: 'busybox:1.36', ...defaults})
      expect(storedSettings({image: 'busybox:1.36'})).to.deep.equal(created)
      expect(storedSettings(SAMPLE)).to.deep.equal(SAMPLE)
    })

    it('never lets two functions share a default environment', () => {
      const one = storedSettings({image: 'busybox'})
      one.env.CHANGED = '1'
      expect(storedSettings({image: 'busybox'}).env).to.deep.equal({})
    })

    it('shows every setting, the environment by its names alone, and the client reads back what the API shows', () => {
      const stored = storedFunction({name: 'fn', ...SAMPLE, createdAt: 'c', updatedAt: 'u'})
      const shown = publicSpec(stored)
      expect(Object.keys(shown)).to.deep.equal(['name', ...SETTING_KEYS.map((key) => (key === 'env' ? 'envKeys' : key)), 'createdAt', 'updatedAt'])
      expect(shown.envKeys).to.deep.equal(['LEVEL', 'TOKEN'])
      expect(JSON.stringify(shown)).to.not.contain('s3cret')
      expect(answeredSettings(JSON.parse(JSON.stringify(shown)))).to.deep.equal(shownSettings(SAMPLE))
    })

    it('takes an answer without a setting older listeners lack as its default, and refuses one without image, timeoutMs or network', () => {
      const shown = shownSettings(SAMPLE) as unknown as Record<string, unknown>
      for (const key of SETTING_KEYS) {
        const shownKey = key === 'env' ? 'envKeys' : key
        const {[shownKey]: _left, ...without} = shown
        const read = answeredSettings(without)
        if (['image', 'timeoutMs', 'network'].includes(key)) expect(read, key).to.equal(undefined)
        else expect(read?.[shownKey as keyof typeof read], key).to.deep.equal(key === 'env' ? [] : field(key).default)
        expect(answeredSettings({...shown, [shownKey]: key === 'env' ? [1] : WRONG_TYPE[field(key).json]}), key).to.equal(undefined)
      }
    })
  })
})
