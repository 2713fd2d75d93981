import {expect} from 'chai'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {type FakeListener, startFakeListener} from '../helpers/fake-listener.js'
import {ampOnTerminal, ampPiped, ANSI_ESCAPE, cleanEnv, hasScript} from '../helpers/run-amp-process.js'

/**
 * Scripts and CI read amp's output from pipes: no colour, no spinner, no cursor movement may reach
 * them. On a terminal oclif does colour (checked too, so the pipe checks can fail).
 */
describe('output on pipes and on a terminal', function () {
  this.timeout(120_000)
  let fake: FakeListener
  let home: string
  beforeEach(async () => {
    fake = await startFakeListener()
    fake.add('test', 'my/image:1')
    home = mkdtempSync(path.join(tmpdir(), 'amp-tty-'))
  })
  afterEach(async () => {
    await fake.close()
    rmSync(home, {recursive: true, force: true})
  })

  it('prints no escape sequence on pipes: help, tables, JSON, usage errors and failures', async () => {
    const env = cleanEnv(home, {AMP_SERVER: fake.url})
    const runs: Array<[string[], number]> = [
      [['--help'], 0],
      [['function', 'ls'], 0],
      [['function', 'inspect', 'test', '--json'], 0],
      [['function', 'update', 'test'], 2],
      [['function', 'inspect', 'nope'], 102],
      [['function', 'ls', '--server', 'http://127.0.0.1:1'], 101],
    ]
    const results = await Promise.all(runs.map(([args]) => ampPiped(args, env)))
    for (const [index, [args, exit]] of runs.entries()) {
      const {exitCode, stdout, stderr} = results[index]
      const what = `amp ${args.join(' ')}`
      expect(exitCode, `${what}: ${stderr}`).to.equal(exit)
      expect(stdout, what).to.not.match(ANSI_ESCAPE)
      expect(stderr, what).to.not.match(ANSI_ESCAPE)
    }
  })

  describe('on a terminal', function () {
    before(async function () {
      if (!(await hasScript())) this.skip()
    })

    it('colours help and errors, but never JSON', async () => {
      const env = cleanEnv(home, {AMP_SERVER: fake.url})
      const help = ampOnTerminal(['--help'], env)
      const error = ampOnTerminal(['function', 'inspect', 'nope'], env)
      const json = ampOnTerminal(['function', 'inspect', 'test', '--json'], env)
      await Promise.all([help.child, error.child, json.child])
      expect(help.output()).to.match(ANSI_ESCAPE)
      expect(error.output()).to.match(ANSI_ESCAPE).and.contain('no function named nope')
      expect(json.output()).to.not.match(ANSI_ESCAPE)
      expect(JSON.parse(json.output()).name).to.equal('test')
    })

    it('honours NO_COLOR', async () => {
      const run = ampOnTerminal(['function', 'inspect', 'nope'], cleanEnv(home, {AMP_SERVER: fake.url, NO_COLOR: '1'}))
      await run.child
      expect(run.output()).to.contain('no function named nope').and.not.match(ANSI_ESCAPE)
    })
  })
})
