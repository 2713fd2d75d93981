import {expect} from 'chai'

import {AmpError} from '../../../src/runtime/shared/errors.js'
import {
  checkImage,
  checkName,
  checkNetwork,
  checkTimeoutMs,
  formatDuration,
  MAX_TIMEOUT_MS,
  parseDuration,
} from '../../../src/runtime/shared/validate.js'

/** Asserts that `fn` throws an AmpError with code bad_request (so the CLI exits 2 and the API answers 400). */
function expectBadRequest(fn: () => unknown, message?: RegExp): void {
  let thrown: unknown
  try {
    fn()
  } catch (error) {
    thrown = error
  }
  expect(thrown, 'expected a throw').to.be.instanceOf(AmpError)
  expect((thrown as AmpError).code).to.equal('bad_request')
  expect((thrown as AmpError).exit).to.equal(2)
  if (message) expect((thrown as AmpError).message).to.match(message)
}

describe('validate', () => {
  describe('checkName', () => {
    for (const name of ['a', '0', 'test', 'my-fn', 'a1-b2-c3', 'x'.repeat(63), '9lives']) {
      it(`accepts ${JSON.stringify(name.length > 20 ? `${name.length} chars` : name)}`, () => {
        expect(checkName(name)).to.equal(name)
      })
    }

    const refused: Array<[string, unknown]> = [
      ['64 characters', 'x'.repeat(64)],
      ['uppercase', 'MyFn'],
      ['underscore', 'my_fn'],
      ['dots', 'my.fn'],
      ['leading -', '-fn'],
      ['trailing -', 'fn-'],
      ['slash', 'a/b'],
      ['space', 'a b'],
      ['NATS wildcard', 'a*'],
      ['newline', 'fn\n'],
      ['empty', ''],
      ['not a string', 42],
      ['undefined', undefined],
      ['the API prefix', '_amp'],
    ]
    for (const [why, name] of refused) {
      it(`refuses ${why}`, () => expectBadRequest(() => checkName(name)))
    }

    it('says what a valid name looks like', () => {
      expectBadRequest(() => checkName('Bad_Name'), /lowercase letters, digits and '-'/)
    })
  })

  describe('checkImage', () => {
    const valid = [
      'busybox',
      'busybox:1.36',
      'library/busybox:latest',
      'ghcr.io/acme/fn:1',
      `localhost:5000/a/b@sha256:${'a'.repeat(64)}`,
      `busybox:1.36@sha256:${'0123456789abcdef'.repeat(4)}`,
      'amp-test/cat:1',
      'registry.example.com:443/team/my_fn__v2:2024.01-rc1',
    ]
    for (const image of valid) {
      it(`accepts ${image.length > 60 ? image.slice(0, 40) + '…' : image}`, () => {
        expect(checkImage(image)).to.equal(image)
      })
    }

    const hostile: Array<[string, unknown]> = [
      ['a long flag', '--privileged'],
      ['a short flag with a value', '-v/:/host'],
      ['a flag disguised by a registry-like value', '-H=tcp://evil:2375/x'],
      ['a space', 'a b'],
      ['a shell command', 'img;rm -rf /'],
      ['command substitution', '$(id)'],
      ['backticks', '`id`'],
      ['a newline inside', 'busybox\n--privileged'],
      ['a trailing newline', 'busybox\n'],
      ['300 characters', 'a'.repeat(300)],
      ['256 characters', 'a'.repeat(256)],
      ['empty', ''],
      ['uppercase repository', 'BusyBox'],
      ['a flag as the tag', 'busybox:-x'],
      ['a short digest', 'busybox@sha256:abc'],
      ['not a string', ['busybox']],
      ['null', null],
    ]
    for (const [why, image] of hostile) {
      it(`refuses ${why}`, () => expectBadRequest(() => checkImage(image)))
    }

    it('accepts 255 characters (the limit) and nothing beyond', () => {
      const image = `r/${'a'.repeat(253)}`
      expect(image).to.have.length(255)
      expect(checkImage(image)).to.equal(image)
      expectBadRequest(() => checkImage(`${image}a`))
    })

    it('gives an example of a valid reference', () => {
      expectBadRequest(() => checkImage('--privileged'), /busybox:1\.36/)
    })
  })

  describe('checkNetwork', () => {
    for (const network of ['none', 'bridge', 'my-net', 'team_net.1']) {
      it(`accepts ${network}`, () => expect(checkNetwork(network)).to.equal(network))
    }
    const refused: Array<[string, unknown]> = [
      ['host (shares the host network)', 'host'],
      ['container:<id> (shares another container network)', 'container:abc'],
      ['a flag', '--privileged'],
      ['a space', 'a b'],
      ['empty', ''],
      ['not a string', 1],
    ]
    for (const [why, network] of refused) {
      it(`refuses ${why}`, () => expectBadRequest(() => checkNetwork(network), /"host" is not allowed/))
    }
  })

  describe('parseDuration', () => {
    const cases: Array<[string, number]> = [
      ['500ms', 500],
      ['30s', 30_000],
      ['2m', 120_000],
      ['1h', 3_600_000],
      ['1m30s', 90_000],
      ['1h2m3s4ms', 3_723_004],
      ['1.5s', 1500],
      ['45', 45_000],
      ['0.25', 250],
      [' 30s ', 30_000],
      ['24h', MAX_TIMEOUT_MS],
    ]
    for (const [text, ms] of cases) {
      it(`parses ${JSON.stringify(text)} as ${ms} ms`, () => expect(parseDuration(text)).to.equal(ms))
    }

    const refused = ['0', '0s', '0ms', '-1s', '-5', 'abc', '', '   ', '30x', '30 s', 's', '1.2.3s', '1e3', '30s!', '24h1ms', '25h', '1000000']
    for (const text of refused) {
      it(`refuses ${JSON.stringify(text)}`, () => expectBadRequest(() => parseDuration(text)))
    }

    it('names the accepted forms', () => {
      expectBadRequest(() => parseDuration('soon'), /500ms, 30s, 2m/)
      expectBadRequest(() => parseDuration('48h'), /at most 24h/)
    })
  })

  describe('formatDuration', () => {
    const cases: Array<[number, string]> = [
      [500, '500ms'],
      [1500, '1500ms'],
      [30_000, '30s'],
      [90_000, '90s'],
      [120_000, '2m'],
      [3_600_000, '1h'],
      [5_400_000, '90m'],
    ]
    for (const [ms, text] of cases) {
      it(`formats ${ms} as ${text}`, () => expect(formatDuration(ms)).to.equal(text))
    }

    it('round-trips through parseDuration', () => {
      for (const ms of [1, 999, 1000, 1001, 59_999, 60_000, 61_000, 3_599_999, 3_600_000, MAX_TIMEOUT_MS]) {
        expect(parseDuration(formatDuration(ms)), String(ms)).to.equal(ms)
      }
      for (const text of ['500ms', '30s', '2m', '1h', '1m30s']) {
        expect(formatDuration(parseDuration(text)), text).to.equal(
          text === '1m30s' ? '90s' : text,
        )
      }
    })
  })

  describe('checkTimeoutMs', () => {
    it('accepts whole milliseconds up to 24h', () => {
      expect(checkTimeoutMs(1)).to.equal(1)
      expect(checkTimeoutMs(MAX_TIMEOUT_MS)).to.equal(MAX_TIMEOUT_MS)
    })
    for (const value of [0, -1, 1.5, MAX_TIMEOUT_MS + 1, Number.NaN, '30000', null]) {
      it(`refuses ${String(value)}`, () => expectBadRequest(() => checkTimeoutMs(value)))
    }
  })
})
