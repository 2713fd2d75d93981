import {expect} from 'chai'
import {mkdtempSync, mkdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {
  DEFAULTS,
  defaultConfigPath,
  isSet,
  loadConfig,
  parseConfig,
  parseSize,
  resolveSettings,
} from '../../../src/runtime/shared/config.js'
import {MIB} from '../../../src/runtime/shared/bytes.js'
import {AmpError, EXIT} from '../../../src/runtime/shared/errors.js'
import {ampError} from '../../helpers/amp-error.js'

function thrown(fn: () => unknown): AmpError {
  try {
    fn()
  } catch (error) {
    expect(error).to.be.instanceOf(AmpError)
    return error as AmpError
  }
  throw new Error('expected an AmpError')
}

/** The error a promise rejects with. */
async function rejected(promise: Promise<unknown>): Promise<AmpError> {
  try {
    await promise
  } catch (error) {
    expect(error).to.be.instanceOf(AmpError)
    return error as AmpError
  }
  throw new Error('expected a rejection')
}


describe('config', () => {
  describe('parseConfig', () => {
    it('reads every key into the types the runtime takes', async () => {
      const settings = await parseConfig(
        [
          'server: https://amp.example.com:8443',
          'host: 0.0.0.0',
          'port: 8080',
          'nats: nats://n1:4222,nats://n2:4222',
          'etcd: [http://e1:2379, http://e2:2379]',
          'concurrency: 16',
          'docker: /usr/local/bin/docker',
          'pull: never',
          'timeout: 2m',
          'max-body: 16MiB',
        ].join('\n'),
        'amp.yaml',
      )
      expect(settings).to.deep.equal({
        server: 'https://amp.example.com:8443',
        host: '0.0.0.0',
        port: 8080,
        nats: 'nats://n1:4222,nats://n2:4222',
        etcd: ['http://e1:2379', 'http://e2:2379'],
        concurrency: 16,
        docker: '/usr/local/bin/docker',
        pull: 'never',
        timeoutMs: 120_000,
        maxBodyBytes: 16 * MIB,
      })
    })

    it('takes etcd as a comma-separated string, a bare timeout as seconds and max-body in bytes', async () => {
      expect(await parseConfig('etcd: "http://a:2379, http://b:2379"\ntimeout: 45\nmax-body: 1000', 'f')).to.deep.equal({
        etcd: ['http://a:2379', 'http://b:2379'],
        timeoutMs: 45_000,
        maxBodyBytes: 1000,
      })
    })

    it('reads the asynchronous call settings as durations: flag or env over file over default', async () => {
      const file = await parseConfig('async-lease: 6s\nasync-retry-base: 200ms\nasync-retention: 2h', 'f')
      expect(file).to.deep.equal({asyncLeaseMs: 6000, asyncRetryBaseMs: 200, asyncRetentionMs: 7_200_000})
      expect(resolveSettings({}, {})).to.include({asyncLeaseMs: 30_000, asyncRetryBaseMs: 1000, asyncRetentionMs: 86_400_000})
      expect(resolveSettings({}, file)).to.include({asyncLeaseMs: 6000, asyncRetryBaseMs: 200, asyncRetentionMs: 7_200_000})
      expect(resolveSettings({'async-lease': '1m', 'async-retention': '30m'}, file)).to.include({asyncLeaseMs: 60_000, asyncRetentionMs: 1_800_000})
      expect(thrown(() => resolveSettings({'async-lease': 'soon'}, {})).exit).to.equal(EXIT.usage)
      expect((await rejected(parseConfig('async-retention: forever', 'f'))).message).to.match(/key "async-retention"/)
    })

    it('reads log-format (logfmt or json), which the daemons and -v use', async () => {
      expect(await parseConfig('log-format: json', 'f')).to.deep.equal({logFormat: 'json'})
      expect(DEFAULTS.logFormat).to.equal('logfmt')
      expect(resolveSettings({}, await parseConfig('log-format: json', 'f')).logFormat).to.equal('json')
      expect(resolveSettings({'log-format': 'logfmt'}, await parseConfig('log-format: json', 'f')).logFormat).to.equal('logfmt')
      expect(thrown(() => resolveSettings({'log-format': 'xml'}, {})).exit).to.equal(EXIT.usage)
    })

    it('accepts an empty file or one with only comments', async () => {
      expect(await parseConfig('', 'f')).to.deep.equal({})
      expect(await parseConfig('# nothing yet\n', 'f')).to.deep.equal({})
    })

    const broken: Array<[string, string, RegExp]> = [
      ['an unknown key', 'sever: http://x', /config file \/etc\/amp\.yaml: unknown key "sever" \(known keys: server, host/],
      // A key with a newline and a control character (as a fuzzed file had): shown escaped, on one line.
      ['an unknown key with a newline in it', '"se\\nver\\u0007": 1', /: unknown key "se\\nver\\u0007" \(known keys: /],
      ['a string port', 'port: "4242"', /key "port": must be a whole number from 0 to 65535, got "4242"/],
      ['a port out of range', 'port: 70000', /key "port": must be a whole number/],
      ['a fractional concurrency', 'concurrency: 1.5', /key "concurrency": must be a whole number from 1 to 1024/],
      ['an unknown pull policy', 'pull: sometimes', /key "pull": must be one of missing, never, always/],
      ['a bad duration', 'timeout: 5x', /key "timeout": invalid duration "5x"/],
      ['a bad size', 'max-body: lots', /key "max-body": invalid size "lots"/],
      ['a max-inflight of 0', 'max-inflight: 0', /key "max-inflight": must be a whole number from 1 to 100000, got 0/],
      ['an unknown log format', 'log-format: xml', /key "log-format": must be one of logfmt, json, got "xml"/],
      ['a server that is no URL', 'server: localhost:4242', /key "server": invalid server URL "localhost:4242"/],
      ['an empty docker', 'docker: ""', /key "docker": must be a non-empty string/],
      ['a list of numbers for etcd', 'etcd: [1, 2]', /key "etcd": must be a URL/],
      ['a list at the top', '- server', /must be a mapping of settings/],
      ['broken YAML', 'server: [unclosed', /config file \/etc\/amp\.yaml is not valid YAML: /],
      ['a duplicate key', 'port: 1\nport: 2', /is not valid YAML: /],
    ]
    for (const [what, text, message] of broken) {
      it(`refuses ${what} with one line naming the file and key (exit 100)`, async () => {
        const error = await rejected(parseConfig(text, '/etc/amp.yaml'))
        expect(error.code).to.equal('config_invalid')
        expect(error.exit).to.equal(EXIT.config)
        expect(error.message).to.match(message)
        expect(error.message).not.to.include('\n')
      })
    }
  })

  describe('loadConfig', () => {
    let dir: string
    let savedHome: string | undefined
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'amp-config-'))
      savedHome = process.env.HOME
      process.env.HOME = dir
    })
    afterEach(() => {
      process.env.HOME = savedHome
      rmSync(dir, {recursive: true, force: true})
    })

    it('is fine without the default file', async () => {
      const config = await loadConfig()
      expect(config).to.deep.equal({path: join(dir, '.config/amp/amp.yaml'), found: false, settings: {}})
      expect(defaultConfigPath()).to.equal(join(dir, '.config/amp/amp.yaml'))
    })

    it('reads the default file under $HOME', async () => {
      mkdirSync(join(dir, '.config/amp'), {recursive: true})
      writeFileSync(join(dir, '.config/amp/amp.yaml'), 'port: 9000\n')
      const config = await loadConfig()
      expect(config.found).to.equal(true)
      expect(config.settings).to.deep.equal({port: 9000})
    })

    it('fails with exit 100 when a file given explicitly does not exist', async () => {
      const error = await ampError(loadConfig(join(dir, 'missing.yaml')))
      expect(error.code).to.equal('config_invalid')
      expect(error.message).to.equal(
        `cannot read config file ${join(dir, 'missing.yaml')}: no such file (given by --use-config or AMP_CONFIG)`,
      )
    })

    it('fails with exit 2 when the path given is empty (--use-config=), instead of reading the default file', async () => {
      mkdirSync(join(dir, '.config/amp'), {recursive: true})
      writeFileSync(join(dir, '.config/amp/amp.yaml'), 'port: 9000\n')
      const error = await ampError(loadConfig(''))
      expect(error.code).to.equal('bad_request')
      expect(error.exit).to.equal(2)
    })

    it('quotes a path with a newline in it, so the error stays one line', async () => {
      const error = await ampError(loadConfig(join(dir, 'a\nb.yaml')))
      expect(error.message).to.equal(
        `cannot read config file ${JSON.stringify(join(dir, 'a\nb.yaml'))}: no such file (given by --use-config or AMP_CONFIG)`,
      )
    })

    it('fails with exit 100 when the path is a directory', async () => {
      const error = await ampError(loadConfig(dir))
      expect(error.code).to.equal('config_invalid')
      expect(error.message).to.include('EISDIR')
    })

    it('names the file in errors about its content', async () => {
      const file = join(dir, 'amp.yaml')
      writeFileSync(file, 'colour: blue\n')
      const error = await ampError(loadConfig(file))
      expect(error.message).to.match(new RegExp(`^config file ${file}: unknown key "colour"`))
    })
  })

  describe('resolveSettings', () => {
    it('uses the defaults when nothing is given', () => {
      expect(resolveSettings({}, {})).to.deep.equal(DEFAULTS)
      expect(DEFAULTS).to.include({server: 'http://localhost:4242', host: '127.0.0.1', port: 4242, concurrency: 4, pull: 'missing'})
      expect(DEFAULTS.maxBodyBytes).to.equal(8 * MIB)
      expect(DEFAULTS.timeoutMs).to.equal(30_000)
    })

    it('prefers the file to the default and the flag (or env) to the file', async () => {
      const file = await parseConfig('server: http://file:1\nport: 1111\ntimeout: 1m\nmax-body: 1MiB\netcd: http://file:2379', 'f')
      const fromFile = resolveSettings({}, file)
      expect(fromFile).to.include({server: 'http://file:1', port: 1111, timeoutMs: 60_000, maxBodyBytes: MIB})
      expect(fromFile.etcd).to.deep.equal(['http://file:2379'])
      const fromFlags = resolveSettings(
        {server: 'http://flag:1', port: 2222, timeout: '500ms', 'max-body': '2MiB', etcd: ['http://a:1,http://b:1', 'http://c:1']},
        file,
      )
      expect(fromFlags).to.include({server: 'http://flag:1', port: 2222, timeoutMs: 500, maxBodyBytes: 2 * MIB})
      expect(fromFlags.etcd).to.deep.equal(['http://a:1', 'http://b:1', 'http://c:1'])
      // oclif hands a multiple flag's env value over as one string
      expect(resolveSettings({etcd: 'http://x:1,http://y:1'}, file).etcd).to.deep.equal(['http://x:1', 'http://y:1'])
    })

    it('refuses bad flag values as usage errors (exit 2)', () => {
      for (const given of [{timeout: 'soon'}, {'max-body': '0'}, {server: 'ftp://x'}, {pull: 'sometimes'}, {etcd: ','}]) {
        const error = thrown(() => resolveSettings(given, {}))
        expect(error.code, JSON.stringify(given)).to.equal('bad_request')
        expect(error.exit).to.equal(EXIT.usage)
      }
    })

    it('takes max-inflight from flag, env or file, 64 by default', async () => {
      expect(resolveSettings({}, {}).maxInFlight).to.equal(64)
      expect(resolveSettings({}, await parseConfig('max-inflight: 200', 'f')).maxInFlight).to.equal(200)
      expect(resolveSettings({'max-inflight': 8}, {maxInFlight: 200}).maxInFlight).to.equal(8)
    })

    it('tells whether a setting was given at all', () => {
      expect(isSet('nats', {}, {})).to.equal(false)
      expect(isSet('nats', {nats: 'nats://x:1'}, {})).to.equal(true)
      expect(isSet('nats', {}, {nats: 'nats://x:1'})).to.equal(true)
      expect(isSet('max-body', {}, {maxBodyBytes: 5})).to.equal(true)
    })
  })

  describe('parseSize', () => {
    it('knows binary and decimal units', () => {
      expect(parseSize('8MiB')).to.equal(8 * MIB)
      expect(parseSize('512KiB')).to.equal(512 * 1024)
      expect(parseSize('1MB')).to.equal(1_000_000)
      expect(parseSize('1.5k')).to.equal(1536)
      expect(parseSize('42')).to.equal(42)
    })

    it('refuses nonsense, zero and more than 1GiB', () => {
      for (const text of ['', 'MiB', '8 potatoes', '0', '2GiB', '-1']) {
        expect(thrown(() => parseSize(text)).code, text).to.equal('bad_request')
      }
    })
  })
})
