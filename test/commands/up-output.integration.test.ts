import {expect} from 'chai'
import {execa} from 'execa'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {ampOnTerminal, ANSI_ESCAPE, cleanEnv, DEV, hasScript} from '../helpers/run-amp-process.js'
import {DOCKER, requireDocker, startEtcd, startNats, type ServiceHandle} from '../helpers/services.js'
import {waitUntil} from '../helpers/wait.js'

/** How `amp up` reports its start: listr2 progress on a terminal, plain lines on pipes. */
describe('amp up: progress on a terminal only', function () {
  this.timeout(120_000)
  let nats: ServiceHandle
  let etcd: ServiceHandle
  let home: string
  let args: string[]

  before(async () => {
    await requireDocker()
    ;[nats, etcd] = await Promise.all([startNats(), startEtcd()])
    home = mkdtempSync(path.join(tmpdir(), 'amp-up-output-'))
    // NATS and etcd already run, so amp up only starts a listener and a worker: quick.
    args = ['up', '--port', '0', '--nats', nats.url, '--etcd', etcd.url, '--docker', DOCKER]
  })
  after(async () => {
    await Promise.all([nats?.stop(), etcd?.stop()])
    if (home) rmSync(home, {recursive: true, force: true})
  })

  const until = (what: string, output: () => string, pattern: RegExp) => waitUntil(() => `the ${what} in:\n${output()}`, () => pattern.test(output()), 60_000)

  it('on pipes: plain lines, no spinner, no escape sequence', async () => {
    const child = execa('node', [DEV, ...args], {reject: false, extendEnv: false, env: cleanEnv(home), stdin: 'ignore'})
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    await until('ready line', () => output, /Press Ctrl-C to stop/)
    child.kill('SIGINT')
    const {exitCode} = await child
    expect(exitCode, output).to.equal(0)
    expect(output).to.match(/^amp is up:\n {2}listener {2}http:\/\/127\.0\.0\.1:\d+\n/m)
    expect(output).to.not.match(ANSI_ESCAPE)
    expect(output).to.not.match(/[✔✖⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/)
  })

  it('on a terminal: a listr2 task that ends ticked "amp is up"', async function () {
    if (!(await hasScript())) this.skip()
    const run = ampOnTerminal(args, cleanEnv(home), {columns: 120})
    await until('ready line', run.output, /Press Ctrl-C to stop/)
    run.signal('SIGINT')
    await run.child
    const output = run.output()
    expect(output).to.match(ANSI_ESCAPE)
    expect(output).to.match(/✔.*amp is up/)
    expect(output).to.contain('listener  http://127.0.0.1:')
  })

  it('on a terminal that reports no width: plain lines rather than a progress display broken one letter per line', async function () {
    if (!(await hasScript())) this.skip()
    const run = ampOnTerminal(args, cleanEnv(home))
    await until('ready line', run.output, /Press Ctrl-C to stop/)
    run.signal('SIGINT')
    await run.child
    expect(run.output()).to.not.contain('✔')
    expect(run.output()).to.match(/^amp is up:\r?\n/m)
  })
})
