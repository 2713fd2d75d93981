import {expect} from 'chai'

import {type FakeListener, startFakeListener} from '../../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'

describe('amp function rm', () => {
  isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
  })
  afterEach(() => fake.close())

  it('removes a function', async () => {
    fake.add('test')
    const {stdout, exitCode} = await runAmp(['function', 'rm', 'test', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('Removed function test\n')
    expect(fake.functions.has('test')).to.equal(false)
  })

  it('removes every existing one, names the missing ones and exits 102', async () => {
    fake.add('a')
    fake.add('c')
    const {stdout, error, exitCode} = await runAmp(['fn', 'rm', 'a', 'b', 'c', 'd', '--server', fake.url])
    expect(exitCode).to.equal(102)
    expect(stdout).to.equal('Removed function a\nRemoved function c\n')
    expect(error?.message).to.equal('no function named b, d')
    expect([...fake.functions.keys()]).to.deep.equal([])
  })

  it('reports removed and missing names as JSON, still exiting 102', async () => {
    const spec = fake.add('a')
    const {stdout, exitCode} = await runAmp(['fn', 'rm', 'a', 'b', '--json', '--server', fake.url])
    expect(exitCode).to.equal(102)
    expect(JSON.parse(stdout)).to.deep.equal({removed: [spec], missing: ['b']})
  })

  it('refuses a bad name with exit 2 before removing anything', async () => {
    fake.add('a')
    const {error, exitCode} = await runAmp(['fn', 'rm', 'a', 'B', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.match(/invalid function name "B"/)
    expect(fake.requests).to.have.length(0)
    expect(fake.functions.has('a')).to.equal(true)
  })

  it('needs at least one name (exit 2)', async () => {
    const {exitCode} = await runAmp(['fn', 'rm', '--server', fake.url])
    expect(exitCode).to.equal(2)
  })
})
