import {expect} from 'chai'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {type FakeListener, startFakeListener} from '../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../helpers/run-amp.js'

const TOKEN = 'cmd-Secret-3c3c3c'

/** The CLI's --token / AMP_TOKEN / config token: sent to the listener, never shown. */
describe('amp --token', () => {
  const home = isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
    fake.token = TOKEN
    fake.add('echo')
  })
  afterEach(() => fake.close())

  it('sends the config file token on every request and shows it redacted with --config-used and -v', async () => {
    const config = join(home(), 'amp.yaml')
    writeFileSync(config, `server: ${fake.url}\ntoken: ${TOKEN}\n`)
    const ls = await runAmp(['fn', 'ls', '--use-config', config, '--config-used', '-v'])
    expect(ls.exitCode, ls.stderr).to.equal(0)
    expect(ls.stderr).to.contain(`config file: ${config}\ntoken: <redacted>\n`)
    expect(ls.stderr).to.contain('status=200')
    const invoke = await runAmp(['fn', 'invoke', 'echo', '--use-config', config, '--json', '-v'])
    expect(invoke.exitCode, invoke.stderr).to.equal(0)
    expect(fake.requests.map((request) => request.headers.authorization)).to.deep.equal([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`])
    expect(ls.stdout + ls.stderr + invoke.stdout + invoke.stderr).to.not.contain(TOKEN)
  })

  it('takes AMP_TOKEN, and --token over it', async () => {
    process.env.AMP_TOKEN = 'wrong-one'
    const refused = await runAmp(['fn', 'ls', '--server', fake.url])
    expect(refused.exitCode).to.equal(110)
    expect(refused.error?.message).to.equal('the token is not valid for this listener; check --token or AMP_TOKEN')
    expect((await runAmp(['fn', 'ls', '--server', fake.url, '--token', TOKEN])).exitCode).to.equal(0)
  })

  it('without a token: exit 110 and one line saying to set --token or AMP_TOKEN, also in --json', async () => {
    const missing = await runAmp(['fn', 'rm', 'echo', '--server', fake.url])
    expect(missing.exitCode).to.equal(110)
    expect(missing.error?.message).to.contain('requires a token').and.contain('set it with --token or AMP_TOKEN').and.not.contain('\n')
    const json = await runAmp(['fn', 'ls', '--server', fake.url, '--json'])
    expect(json.exitCode).to.equal(110)
    expect(JSON.parse(json.stdout).error).to.include({code: 'unauthorized', exit: 110})
    expect(fake.functions.has('echo')).to.equal(true)
  })
})
