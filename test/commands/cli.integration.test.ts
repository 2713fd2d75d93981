import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {startListener, type Listener} from '../../src/runtime/listener/listener.js'
import {silentLogger} from '../../src/runtime/shared/logger.js'
import {EXIT} from '../../src/runtime/shared/errors.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {startNats, type ServiceHandle} from '../helpers/services.js'
import {startTestStack, type TestStack} from '../helpers/stack.js'

const DEV = fileURLToPath(new URL('../../bin/dev.js', import.meta.url))

/**
 * The CLI as users run it, as a process, against a real listener, worker, NATS, etcd and Docker:
 * what reaches stdout, stderr and the exit code.
 */
describe('amp CLI against a running stack', function () {
  this.timeout(180_000)
  let stack: TestStack
  let etcd: ServiceHandle
  let listener: Listener
  let dir: string

  const amp = async (args: string[], options: {input?: string | Buffer; inputFile?: string; server?: string} = {}) => {
    const res = await execa('node', [DEV, ...args], {
      reject: false,
      encoding: 'buffer',
      stripFinalNewline: false,
      ...(options.inputFile ? {inputFile: options.inputFile} : {input: options.input ?? ''}),
      env: {AMP_SERVER: options.server ?? listener.url, HOME: dir, NODE_EXTRA_CA_CERTS: ''},
    })
    const raw = Buffer.from(res.stdout)
    return {exitCode: res.exitCode, raw, stdout: raw.toString('utf8'), stderr: Buffer.from(res.stderr).toString('utf8')}
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'amp-cli-'))
    stack = await startTestStack()
    ;({etcd, listener} = stack)
  })

  after(async () => {
    await stack?.stop()
    rmSync(dir, {recursive: true, force: true})
  })

  it('creates, lists and removes functions, with the fn alias and --json', async () => {
    const created = await amp(['function', 'create', 'title', TEST_IMAGES.title, '--timeout', '20s'])
    expect(created.exitCode, created.stderr).to.equal(0)
    expect(created.stdout).to.contain('title')

    const again = await amp(['fn', 'create', 'title', TEST_IMAGES.title])
    expect(again.exitCode).to.equal(EXIT.exists)
    expect(again.stderr).to.contain('already exists')

    const replaced = await amp(['fn', 'create', 'title', TEST_IMAGES.title, '--timeout', '1m', '--replace'])
    expect(replaced.exitCode, replaced.stderr).to.equal(0)

    const listed = await amp(['fn', 'ls', '--json'])
    expect(listed.exitCode).to.equal(0)
    const functions = JSON.parse(listed.stdout)
    const title = (Array.isArray(functions) ? functions : functions.functions).find((f: {name: string}) => f.name === 'title')
    expect(title).to.include({image: TEST_IMAGES.title, timeoutMs: 60_000})

    expect((await amp(['fn', 'create', 'scratch', TEST_IMAGES.cat])).exitCode).to.equal(0)
    const removed = await amp(['fn', 'rm', 'scratch', 'never-was'])
    expect(removed.exitCode).to.equal(EXIT.notFound)
    expect(removed.stderr).to.contain('never-was')
    const after = JSON.parse((await amp(['fn', 'ls', '--json'])).stdout)
    expect(JSON.stringify(after)).not.to.contain('"scratch"')
  })

  it('invoke: stdin in, stdout out, stderr to stderr, exit 0', async () => {
    const input = path.join(dir, 'in.txt')
    writeFileSync(input, 'hello amp functions\n')
    const res = await amp(['function', 'invoke', 'title'], {inputFile: input})
    expect(res.exitCode, res.stderr).to.equal(0)
    expect(res.stdout).to.equal('Hello Amp Functions\n')
    expect(res.stderr).to.contain('hello amp functions')
  })

  it('invoke: binary input and output survive byte for byte', async () => {
    expect((await amp(['fn', 'create', 'cat', TEST_IMAGES.cat, '--replace'])).exitCode).to.equal(0)
    const input = randomBytes(2 * 1024 * 1024)
    const file = path.join(dir, 'in.bin')
    writeFileSync(file, input)
    const res = await amp(['fn', 'invoke', 'cat'], {inputFile: file})
    expect(res.exitCode).to.equal(0)
    expect(res.raw.equals(input)).to.equal(true)
  })

  it("invoke: exits with the function's own exit code and still writes its stdout and stderr", async () => {
    expect((await amp(['fn', 'create', 'fail', TEST_IMAGES.fail, '--replace'])).exitCode).to.equal(0)
    const res = await amp(['fn', 'invoke', 'fail'], {input: 'partial'})
    expect(res.exitCode).to.equal(3)
    expect(res.stdout).to.equal('partial')
    expect(res.stderr).to.contain('boom')
  })

  it('invoke --json: the whole outcome, script-safe', async () => {
    const res = await amp(['fn', 'invoke', 'fail', '--json'], {input: 'x'})
    expect(res.exitCode).to.equal(3)
    const json = JSON.parse(res.stdout)
    expect(json).to.include({function: 'fail', exitCode: 3})
    expect(Buffer.from(json.stdout, 'base64').toString()).to.equal('x')
    expect(json.callId).to.match(/^[0-9a-f-]{36}$/)
  })

  it("amp's own failures: one line on stderr and a distinct exit code each", async () => {
    expect((await amp(['fn', 'create', 'hang', TEST_IMAGES.sleep, '--timeout', '1s', '--replace'])).exitCode).to.equal(0)
    expect((await amp(['fn', 'create', 'ghost', 'amp-test/not-built:1', '--replace'])).exitCode).to.equal(0)
    const tooBig = path.join(dir, 'big.bin')
    writeFileSync(tooBig, Buffer.alloc(8 * 1024 * 1024 + 1))

    const cases: Array<[string, Promise<Awaited<ReturnType<typeof amp>>>, number, RegExp]> = [
      ['unknown function', amp(['fn', 'invoke', 'nosuch']), EXIT.notFound, /nosuch/],
      ['timeout', amp(['fn', 'invoke', 'hang']), EXIT.timeout, /timed out/],
      ['missing image', amp(['fn', 'invoke', 'ghost']), EXIT.cannotRun, /not-built|No such image/i],
      ['too large', amp(['fn', 'invoke', 'cat'], {inputFile: tooBig}), EXIT.tooLarge, /8 MiB/],
      ['unreachable', amp(['fn', 'ls'], {server: 'http://127.0.0.1:1'}), EXIT.unreachable, /127\.0\.0\.1:1/],
      ['bad name', amp(['fn', 'create', 'Bad_Name', TEST_IMAGES.cat]), EXIT.usage, /invalid function name/],
      ['flag as image', amp(['fn', 'create', 'evil', '--', '--privileged']), EXIT.usage, /invalid image/],
    ]
    for (const [what, pending, exit, message] of cases) {
      const res = await pending
      expect(res.exitCode, `${what}: ${res.stderr}`).to.equal(exit)
      expect(res.stderr, what).to.match(message)
      expect(res.stdout, what).to.equal('')
    }
    // Every kind of failure has its own code (the two usage errors share 2).
    const codes = new Set(cases.map(([, , exit]) => exit))
    expect(codes.size).to.equal(cases.length - 1)
  })

  it('invoke with no worker running exits 104 at once', async () => {
    const idleNats = await startNats()
    const lonely = await startListener({host: '127.0.0.1', port: 0, nats: idleNats.url, etcd: [etcd.url], logger: silentLogger})
    try {
      const res = await amp(['fn', 'invoke', 'cat'], {input: 'x', server: lonely.url})
      expect(res.exitCode, res.stderr).to.equal(EXIT.noWorker)
      expect(res.stderr).to.match(/worker/)
    } finally {
      await lonely.close()
      await idleNats.stop()
    }
  })

  it('reads settings from the config file, and reports which file it used', async () => {
    const config = path.join(dir, 'amp.yaml')
    writeFileSync(config, `server: ${listener.url}\n`)
    const res = await execa('node', [DEV, 'fn', 'ls', '--use-config', config, '--config-used'], {
      reject: false,
      env: {HOME: dir, NODE_EXTRA_CA_CERTS: '', AMP_SERVER: ''},
    })
    expect(res.exitCode, res.stderr).to.equal(0)
    expect(res.stderr).to.contain(config)
    writeFileSync(config, 'server: [unclosed\n')
    const broken = await execa('node', [DEV, 'fn', 'ls', '--use-config', config], {reject: false, env: {HOME: dir, NODE_EXTRA_CA_CERTS: ''}})
    expect(broken.exitCode).to.equal(EXIT.config)
    expect(readFileSync(config, 'utf8')).to.contain('unclosed')
  })
})
