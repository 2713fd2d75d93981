import {expect} from 'chai'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {EXIT} from '../../../src/runtime/shared/errors.js'
import type {CallRecord, DeadLetter} from '../../../src/runtime/shared/http-contract.js'
import {containers} from '../../helpers/containers.js'
import {TEST_IMAGES} from '../../helpers/images.js'
import {ampPiped, cleanEnv} from '../../helpers/run-amp-process.js'
import {startTestStack, type TestStack} from '../../helpers/stack.js'

/**
 * Asynchronous calls through the CLI as a script uses them, against a real listener, worker, NATS
 * (JetStream), etcd and Docker: invoke --async prints the id, call get --wait gives the function's
 * output and exit code, a fire-and-forget function that keeps failing ends in the dead letters.
 */
describe('asynchronous calls through the CLI against a running stack', function () {
  this.timeout(180_000)
  let stack: TestStack
  let home: string

  const amp = (args: string[], input = '') => ampPiped(args, cleanEnv(home, {AMP_SERVER: stack.listener.url}), input)

  before(async () => {
    home = mkdtempSync(path.join(tmpdir(), 'amp-async-cli-'))
    stack = await startTestStack({docker: true, worker: {concurrency: 2, async: {leaseMs: 6000, retryBaseMs: 200}}})
  })

  after(async () => {
    await stack?.stop()
    if (home) rmSync(home, {recursive: true, force: true})
  })

  it('invoke --async prints only the call id; call get --wait prints the output and exits with the exit code', async () => {
    expect((await amp(['fn', 'create', 'echo', TEST_IMAGES.cat])).exitCode).to.equal(0)
    const queued = await amp(['fn', 'invoke', 'echo', '--async'], 'later, please\n')
    expect(queued.exitCode, queued.stderr).to.equal(0)
    const id = queued.stdout.trim()
    expect(id).to.match(/^[0-9a-f-]{36}$/)
    expect(queued.stderr).to.contain(`amp call get ${id} --wait`)

    const got = await amp(['call', 'get', id, '--wait', '--timeout', '60s'])
    expect(got.exitCode, got.stderr).to.equal(0)
    expect(got.stdout).to.equal('later, please\n')

    const json = await amp(['call', 'get', id, '--json'])
    const record = JSON.parse(json.stdout) as CallRecord
    expect(record).to.include({callId: id, function: 'echo', state: 'succeeded', attempts: 1, maxAttempts: 3, deadLetter: false})
    expect(Buffer.from(record.result!.stdout, 'base64').toString()).to.equal('later, please\n')
  })

  it('a fire-and-forget function that always fails is tried retries+1 times, then listed in the dead letters', async () => {
    const created = await amp(['fn', 'create', 'doomed', TEST_IMAGES.fail, '--fire-and-forget', '--retries', '1'])
    expect(created.exitCode, created.stderr).to.equal(0)
    // No --async: the function itself is fire-and-forget.
    const queued = await amp(['fn', 'invoke', 'doomed'], 'x')
    expect(queued.exitCode, queued.stderr).to.equal(0)
    const id = queued.stdout.trim()

    const got = await amp(['call', 'get', id, '--wait', '--timeout', '60s'])
    expect(got.exitCode, 'the function exit code, as invoke gives it').to.equal(3)
    const record = JSON.parse((await amp(['call', 'get', id, '--json'])).stdout) as CallRecord
    expect(record).to.include({state: 'failed', attempts: 2, maxAttempts: 2, deadLetter: true, outcome: 'exited'})
    expect(record.result?.exitCode).to.equal(3)

    const listed = await amp(['call', 'dead-letters', '--function', 'doomed', '--json'])
    expect(listed.exitCode, listed.stderr).to.equal(0)
    const letters = (JSON.parse(listed.stdout) as {deadLetters: DeadLetter[]}).deadLetters
    expect(letters.map((letter) => letter.callId)).to.deep.equal([id])
    expect(letters[0]).to.include({function: 'doomed', attempts: 2, exitCode: 3})
    const table = await amp(['call', 'dead-letters'])
    expect(table.stdout).to.contain(id)
    expect(await containers(`label=amp.function=doomed`)).to.deep.equal([])
  })

  it('call get of an unknown id exits 102 with one line', async () => {
    const got = await amp(['call', 'get', '00000000-0000-4000-8000-000000000000'])
    expect(got.exitCode).to.equal(EXIT.notFound)
    expect(got.stderr.trim().split('\n')[0]).to.contain('00000000-0000-4000-8000-000000000000')
  })
})
