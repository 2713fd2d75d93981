import {expect} from 'chai'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {type FakeListener, startFakeListener} from '../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../helpers/run-amp.js'

/** Global options before the command words (src/hooks/global-options-first.ts), as after them. */
describe('global options before the command', () => {
  const home = isolateEnvironment()
  let fakes: FakeListener[]
  beforeEach(async () => {
    fakes = await Promise.all([startFakeListener(), startFakeListener()])
    for (const fake of fakes) fake.add('echo')
  })
  afterEach(() => Promise.all(fakes.map((fake) => fake.close())))

  const writeConfig = (server: string) => {
    const path = join(home(), 'amp.yaml')
    writeFileSync(path, `server: ${server}\n`)
    return path
  }

  it('amp --server URL function ls, and --server=URL with the fn alias', async () => {
    const [fake] = fakes
    for (const args of [['--server', fake.url, 'function', 'ls'], [`--server=${fake.url}`, 'fn', 'ls']]) {
      const {exitCode, stdout, stderr} = await runAmp(args)
      expect(exitCode, `${args.join(' ')}: ${stderr}`).to.equal(0)
      expect(stdout).to.match(/^echo +busybox/m)
    }
    expect(fake.requests).to.have.length(2)
  })

  it('amp --use-config FILE fn ls, with the flag > env > file precedence', async () => {
    const [fromFile, fromEnv] = fakes
    const config = writeConfig(fromFile.url)
    expect((await runAmp(['--use-config', config, 'fn', 'ls'])).exitCode).to.equal(0)
    expect(fromFile.requests).to.have.length(1)
    process.env.AMP_SERVER = fromEnv.url
    expect((await runAmp(['--use-config', config, '--config-used', 'fn', 'ls'])).stderr).to.equal(`config file: ${config}\n`)
    expect(fromEnv.requests).to.have.length(1)
    expect((await runAmp(['--use-config', config, '--server', fromFile.url, 'fn', 'ls'])).exitCode).to.equal(0)
    expect(fromFile.requests).to.have.length(2)
    expect(fromEnv.requests).to.have.length(1)
  })

  it('takes the boolean ones (-v, --json) and --token, before and after the command words together', async () => {
    const [fake] = fakes
    fake.token = 'cmd-Secret-1a1a1a'
    const {exitCode, stdout, stderr} = await runAmp(['-v', '--json', '--token', fake.token, 'fn', 'inspect', 'echo', '--server', fake.url])
    expect(exitCode, stderr).to.equal(0)
    expect(JSON.parse(stdout)).to.include({name: 'echo'})
    expect(stderr).to.match(/level=debug msg=http method=GET path=\/_amp\/v1\/functions\/echo status=200/)
    expect(fake.requests.map((request) => request.headers.authorization)).to.deep.equal([`Bearer ${fake.token}`])
  })

  it('an option given twice, before and after, is the same usage error as given twice after', async () => {
    const [one, two] = fakes
    const before = await runAmp(['--server', one.url, 'fn', 'ls', '--server', two.url])
    const after = await runAmp(['fn', 'ls', '--server', one.url, '--server', two.url])
    expect(before.exitCode).to.equal(2)
    expect(before.error?.message).to.equal(after.error?.message).and.contain('--server')
  })

  it('an unknown option before the command: exit 2 and one line naming it (not its value) and the global options', async () => {
    for (const [args, name] of [
      [['--nope', 'fn', 'ls'], '--nope'],
      [['--tokn=cmd-Secret-2b2b2b', 'fn', 'ls'], '--tokn'],
      [['--server', fakes[0].url, '-q', 'fn', 'ls'], '-q'],
    ] as const) {
      const {exitCode, error} = await runAmp([...args])
      expect(exitCode, args.join(' ')).to.equal(2)
      expect(error?.message).to.match(new RegExp(`^unknown option ${name} before the command: amp takes .*--server.*--use-config.*-v`))
      expect(error?.message).to.not.contain('Secret').and.not.contain('\n')
    }
    expect(fakes[0].requests).to.have.length(0)
  })

  it('no command after them, or an unknown one: exit 2', async () => {
    const none = await runAmp(['--server', fakes[0].url])
    expect(none.exitCode).to.equal(2)
    expect(none.error?.message).to.match(/^give a command after the global options/)
    const noValue = await runAmp(['--server'])
    expect(noValue.exitCode).to.equal(2)
    expect(noValue.error?.message).to.equal('Flag --server expects a value')
    for (const args of [['nope'], ['--server', fakes[0].url, 'nope']]) {
      const unknown = await runAmp(args)
      expect(unknown.exitCode, args.join(' ')).to.equal(2)
      expect(unknown.error?.message).to.equal('command nope not found')
    }
  })

  it("a topic after them shows the topic's help, as the topic alone does", async () => {
    const alone = await runAmp(['function'])
    const after = await runAmp(['-v', 'function'])
    expect(after.exitCode).to.equal(0)
    expect(after.stdout).to.contain('function ls').and.equal(alone.stdout)
  })

  it('leaves --version, -V, --help, -h, help and amp alone as they were', async () => {
    for (const args of [['--version'], ['-V']]) expect((await runAmp(args)).stdout, args[0]).to.match(/^amp\/\d+\.\d+\.\d+ /)
    const root = await runAmp([], {exact: true})
    expect(root.stdout).to.contain('USAGE')
    for (const args of [['--help'], ['-h']]) expect((await runAmp(args)).stdout, args[0]).to.equal(root.stdout)
    expect((await runAmp(['help', 'fn', 'ls'])).stdout).to.contain('EXAMPLES')
  })
})
