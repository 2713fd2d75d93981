import {expect} from 'chai'
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {CONFIG_KEYS} from '../../src/runtime/shared/config.js'
import {type FakeListener, startFakeListener} from '../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../helpers/run-amp.js'

/** Settings from flags, env, the config file and defaults, as every command sees them. */
describe('amp settings and config file', () => {
  const home = isolateEnvironment()
  let fakes: FakeListener[]
  beforeEach(async () => {
    fakes = await Promise.all([startFakeListener(), startFakeListener(), startFakeListener()])
  })
  afterEach(() => Promise.all(fakes.map((fake) => fake.close())))

  const writeConfig = (text: string, path = join(home(), 'amp.yaml')) => {
    writeFileSync(path, text)
    return path
  }
  const defaultConfig = (text: string) => {
    mkdirSync(join(home(), '.config/amp'), {recursive: true})
    return writeConfig(text, join(home(), '.config/amp/amp.yaml'))
  }
  const sentTimeout = (fake: FakeListener) => JSON.parse(fake.requests.at(-1)!.body.toString()).timeoutMs

  describe('precedence: flag, then env, then file, then default', () => {
    it('for --timeout', async () => {
      const [fake] = fakes
      const create = (...extra: string[]) => runAmp(['fn', 'create', 'test', 'busybox', '--replace', '--server', fake.url, ...extra])

      expect((await create()).exitCode).to.equal(0)
      expect(sentTimeout(fake)).to.equal(30_000)

      defaultConfig('timeout: 1m\n')
      await create()
      expect(sentTimeout(fake)).to.equal(60_000)

      process.env.AMP_TIMEOUT = '2m'
      await create()
      expect(sentTimeout(fake)).to.equal(120_000)

      await create('--timeout', '3m')
      expect(sentTimeout(fake)).to.equal(180_000)
    })

    it('for --server', async () => {
      const [fromFile, fromEnv, fromFlag] = fakes
      const config = writeConfig(`server: ${fromFile.url}\n`)
      process.env.AMP_CONFIG = config

      await runAmp(['fn', 'ls'])
      expect(fromFile.requests).to.have.length(1)

      process.env.AMP_SERVER = fromEnv.url
      await runAmp(['fn', 'ls'])
      expect(fromEnv.requests).to.have.length(1)

      await runAmp(['fn', 'ls', '--server', fromFlag.url])
      expect(fromFlag.requests).to.have.length(1)
      expect(fromFile.requests).to.have.length(1)
      expect(fromEnv.requests).to.have.length(1)
    })

    it('--use-config wins over AMP_CONFIG', async () => {
      const [one, two] = fakes
      process.env.AMP_CONFIG = writeConfig(`server: ${one.url}\n`, join(home(), 'one.yaml'))
      const other = writeConfig(`server: ${two.url}\n`, join(home(), 'two.yaml'))
      const {exitCode} = await runAmp(['fn', 'ls', '--use-config', other])
      expect(exitCode).to.equal(0)
      expect(one.requests).to.have.length(0)
      expect(two.requests).to.have.length(1)
    })
  })

  describe('a broken config file exits 100 before any request', () => {
    const broken: Array<[string, string, RegExp]> = [
      ['an unknown key', 'sever: http://x\n', /: unknown key "sever" \(known keys: /],
      ['a wrong type', 'port: "4242"\n', /: key "port": must be a whole number/],
      ['YAML that does not parse', 'server: [oops\n', / is not valid YAML: /],
      ['a bad duration', 'timeout: forever\n', /: key "timeout": invalid duration "forever"/],
    ]
    for (const [what, text, message] of broken) {
      it(`with ${what}, naming the file`, async () => {
        const [fake] = fakes
        const path = writeConfig(text)
        const {error, exitCode} = await runAmp(['fn', 'ls', '--use-config', path, '--server', fake.url])
        expect(exitCode).to.equal(100)
        expect(error?.message).to.match(message)
        expect(error?.message).to.include(path)
        expect(fake.requests).to.have.length(0)
      })
    }

    it('when it is the default file', async () => {
      const path = defaultConfig('colour: blue\n')
      const {error, exitCode} = await runAmp(['fn', 'ls', '--server', fakes[0].url])
      expect(exitCode).to.equal(100)
      expect(error?.message).to.equal(`config file ${path}: unknown key "colour" (known keys: ${CONFIG_KEYS.join(', ')})`)
      expect(CONFIG_KEYS.slice(0, 10)).to.deep.equal(['server', 'host', 'port', 'nats', 'etcd', 'concurrency', 'docker', 'pull', 'timeout', 'max-body'])
    })

    it('when a file given by AMP_CONFIG does not exist (a missing default file is fine)', async () => {
      expect((await runAmp(['fn', 'ls', '--server', fakes[0].url])).exitCode).to.equal(0)
      process.env.AMP_CONFIG = join(home(), 'nope.yaml')
      const {error, exitCode} = await runAmp(['fn', 'ls', '--server', fakes[0].url])
      expect(exitCode).to.equal(100)
      expect(error?.message).to.equal(`cannot read config file ${join(home(), 'nope.yaml')}: no such file (given by --use-config or AMP_CONFIG)`)
    })

    it('as a JSON error under --json', async () => {
      const path = writeConfig('port: high\n')
      const {stdout, exitCode} = await runAmp(['fn', 'ls', '--json', '--use-config', path])
      expect(exitCode).to.equal(100)
      expect(JSON.parse(stdout).error).to.include({code: 'config_invalid', exit: 100})
    })
  })

  describe('an empty --use-config or AMP_CONFIG', () => {
    it('--use-config= exits 2, as an empty --server= or --token= does', async () => {
      const [fake] = fakes
      defaultConfig(`server: ${fake.url}\n`)
      for (const args of [['--use-config='], ['--use-config', '']]) {
        const {error, exitCode} = await runAmp(['fn', 'ls', ...args], {exact: true})
        expect(exitCode, args.join(' ')).to.equal(2)
        expect(error?.message).to.equal('invalid --use-config "": give the path of a YAML config file, e.g. ./amp.yaml')
      }
      for (const flag of ['--server=', '--token=']) expect((await runAmp(['fn', 'ls', flag], {exact: true})).exitCode, flag).to.equal(2)
      expect(fake.requests).to.have.length(0)
    })

    it('an empty AMP_CONFIG is unset, as an empty AMP_SERVER is: the default file applies', async () => {
      const [fake] = fakes
      defaultConfig(`server: ${fake.url}\n`)
      process.env.AMP_CONFIG = ''
      process.env.AMP_SERVER = ''
      const {exitCode, stderr} = await runAmp(['fn', 'ls', '--config-used'])
      expect(exitCode).to.equal(0)
      expect(stderr).to.equal(`config file: ${join(home(), '.config/amp/amp.yaml')}\n`)
      expect(fake.requests).to.have.length(1)
    })
  })

  describe('--config-used', () => {
    it('names the file that was read, on stderr', async () => {
      const path = defaultConfig(`server: ${fakes[0].url}\n`)
      const {stderr, stdout, exitCode} = await runAmp(['fn', 'ls', '--config-used'])
      expect(exitCode).to.equal(0)
      expect(stderr).to.equal(`config file: ${path}\n`)
      expect(stdout).to.include('No functions')
    })

    it('says when none was read', async () => {
      const {stderr} = await runAmp(['fn', 'ls', '--config-used', '--server', fakes[0].url])
      expect(stderr).to.equal(`config file: none (no file at ${join(home(), '.config/amp/amp.yaml')})\n`)
    })
  })

  describe('--verbose', () => {
    it('logs each request on stderr, also with AMP_VERBOSE', async () => {
      const flag = await runAmp(['fn', 'ls', '-v', '--server', fakes[0].url])
      expect(flag.stderr).to.match(/level=debug msg=http method=GET path=\/_amp\/v1\/functions status=200 ms=\d+/)
      process.env.AMP_VERBOSE = 'true'
      const env = await runAmp(['fn', 'ls', '--server', fakes[0].url])
      expect(env.stderr).to.match(/msg=http method=GET/)
      delete process.env.AMP_VERBOSE
      const quiet = await runAmp(['fn', 'ls', '--server', fakes[0].url])
      expect(quiet.stderr).to.equal('')
    })
  })

  it('prints the version with -V', async () => {
    const {stdout} = await runAmp(['-V'])
    expect(stdout).to.match(/^amp\/\d+\.\d+\.\d+ /)
  })
})
