import {expect} from 'chai'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import type {AmpClient} from '../../../src/runtime/client/client.js'
import {EXIT} from '../../../src/runtime/shared/errors.js'
import type {FunctionSpec} from '../../../src/runtime/shared/function-spec.js'
import type {Listener} from '../../../src/runtime/listener/listener.js'
import {containers} from '../../helpers/containers.js'
import {TEST_IMAGES} from '../../helpers/images.js'
import {ampPiped, cleanEnv} from '../../helpers/run-amp-process.js'
import {startTestStack, type TestStack} from '../../helpers/stack.js'
import {waitFor} from '../../helpers/wait.js'

/** Ids of the running containers of a function (amp labels each with amp.function=<name>). */
function runningContainers(name: string): Promise<string[]> {
  return containers(`label=amp.function=${name}`, {running: true})
}

/**
 * A function's lifecycle through the CLI, against a real listener, worker, NATS, etcd and Docker:
 * inspect, update in place while a call runs, ls -q, and the --json shapes of docs/json.md.
 */
describe('function lifecycle against a running stack', function () {
  this.timeout(180_000)
  let stack: TestStack
  let listener: Listener
  let client: AmpClient
  let home: string

  const amp = (args: string[], input = '') => ampPiped(args, cleanEnv(home, {AMP_SERVER: listener.url}), input)

  before(async () => {
    home = mkdtempSync(path.join(tmpdir(), 'amp-lifecycle-'))
    stack = await startTestStack()
    ;({listener, client} = stack)
  })

  after(async () => {
    await stack?.stop()
    if (home) rmSync(home, {recursive: true, force: true})
  })

  it('update: a running call finishes with the old image, the next call uses the new one', async () => {
    // --prestart 0: this test counts the containers running calls, and idle pre-started ones would be among them.
    const created = await amp(['fn', 'create', 'roll', TEST_IMAGES.slow, '--prestart', '0', '--json'])
    expect(created.exitCode, created.stderr).to.equal(0)
    const before = (JSON.parse(created.stdout) as {function: FunctionSpec}).function

    // The slow image sleeps 2 s, then copies its input: the title image would capitalise it.
    let settled = false
    const running = client.invoke('roll', Buffer.from('hello amp\n')).finally(() => (settled = true))
    await waitFor('the first call to run', async () => ((await runningContainers('roll')).length > 0 ? true : undefined))

    // In-process, so the update surely lands while that call still runs.
    const updated = await client.updateFunction('roll', {image: TEST_IMAGES.title})
    expect(settled, 'the first call was still running when the update was stored').to.equal(false)
    expect(await runningContainers('roll')).to.have.length(1)
    expect(updated).to.include({name: 'roll', image: TEST_IMAGES.title, timeoutMs: before.timeoutMs, createdAt: before.createdAt})

    // The next call, through the CLI, runs the new image; the first one ends with the old.
    const next = await amp(['fn', 'invoke', 'roll'], 'hello amp\n')
    const first = await running
    expect(first.exitCode).to.equal(0)
    expect(first.stdout.toString()).to.equal('hello amp\n')
    expect(first.durationMs).to.be.at.least(1900)
    expect(next.exitCode, next.stderr).to.equal(0)
    expect(next.stdout).to.equal('Hello Amp\n')
    expect(next.stderr).to.contain('hello amp')
  })

  it('inspect shows the function as updated; ls -q lists names only', async () => {
    const inspected = await amp(['fn', 'inspect', 'roll', '--json'])
    expect(inspected.exitCode, inspected.stderr).to.equal(0)
    const spec = JSON.parse(inspected.stdout) as FunctionSpec
    expect(spec).to.include({name: 'roll', image: TEST_IMAGES.title, timeoutMs: 30_000, network: 'none'})
    expect(spec.updatedAt > spec.createdAt).to.equal(true)

    const human = await amp(['fn', 'inspect', 'roll'])
    expect(human.stdout).to.match(new RegExp(`^Image: +${TEST_IMAGES.title}$`, 'm')).and.match(new RegExp(`^Call: +POST ${listener.url}/roll$`, 'm'))

    expect((await amp(['fn', 'create', 'other', TEST_IMAGES.cat])).exitCode).to.equal(0)
    const names = await amp(['fn', 'ls', '-q'])
    expect(names.exitCode).to.equal(0)
    expect(names.stdout).to.equal('other\nroll\n')
  })

  it('update --timeout applies to the next call; a missing function or bad value changes nothing', async () => {
    const updated = await amp(['fn', 'update', 'roll', '--image', TEST_IMAGES.sleep, '--timeout', '1s'])
    expect(updated.exitCode, updated.stderr).to.equal(0)
    expect(updated.stdout).to.contain('timeout 1s')
    const started = Date.now()
    const timedOut = await amp(['fn', 'invoke', 'roll'])
    expect(timedOut.exitCode, timedOut.stderr).to.equal(EXIT.timeout)
    expect(timedOut.stderr).to.contain('1s')
    expect(Date.now() - started).to.be.below(15_000)

    const missing = await amp(['fn', 'update', 'nope', '--image', TEST_IMAGES.cat])
    expect(missing.exitCode).to.equal(EXIT.notFound)
    expect((await amp(['fn', 'inspect', 'nope'])).exitCode).to.equal(EXIT.notFound)

    const refused = await amp(['fn', 'update', 'roll', '--network', 'host'])
    expect(refused.exitCode).to.equal(EXIT.usage)
    expect((await client.getFunction('roll')).network).to.equal('none')
  })

  it("the real listener's log lines have the fields docs/json.md documents for amp function logs --json", async () => {
    await client.updateFunction('roll', {image: TEST_IMAGES.title, timeoutMs: 30_000})
    const call = await client.invoke('roll', Buffer.from('log me\n'))
    const doc = readFileSync(new URL('../../../docs/json.md', import.meta.url), 'utf8')
    const documented = JSON.parse(/## `amp function logs NAME --json`[\s\S]*?```json\n(.*)\n```/.exec(doc)![1])
    const lines = await waitFor('the call log', async () => {
      const run = await amp(['fn', 'logs', 'roll', '--call', call.callId, '--json'])
      expect(run.exitCode, run.stderr).to.equal(0)
      const parsed = run.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line))
      return parsed.length > 0 ? parsed : undefined
    })
    for (const line of lines) {
      expect(Object.keys(line)).to.deep.equal(Object.keys(documented))
      expect(line).to.include({function: 'roll', callId: call.callId, worker: call.worker})
      expect(Number.isNaN(Date.parse(line.time))).to.equal(false)
    }
    expect(lines.map((line) => line.line).join('\n')).to.contain('log me')
  })
})
