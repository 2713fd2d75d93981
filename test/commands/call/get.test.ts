import {expect} from 'chai'

import type {CallRecord} from '../../../src/runtime/shared/http-contract.js'
import {type FakeListener, startFakeListener} from '../../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'

const ID = '3f0c1a0e-6f5e-4d59-a8c8-2b51c1e4f3a2'
const QUEUED: CallRecord = {callId: ID, function: 'test', state: 'queued', attempts: 0, maxAttempts: 3, createdAt: '2025-01-31T14:05:09.123Z', deadLetter: false}
const envelope = (exitCode: number, stdout: string, stderr: string) => ({
  callId: ID,
  function: 'test',
  exitCode,
  stdout: Buffer.from(stdout).toString('base64'),
  stderr: Buffer.from(stderr).toString('base64'),
  stderrTruncated: false,
  durationMs: 12,
  worker: 'w1',
})
const final = (exitCode: number, stdout = 'out', stderr = 'log\n'): CallRecord => ({
  ...QUEUED,
  state: exitCode === 0 ? 'succeeded' : 'failed',
  attempts: exitCode === 0 ? 1 : 3,
  deadLetter: exitCode !== 0,
  outcome: 'exited',
  finishedAt: '2025-01-31T14:05:10.000Z',
  result: envelope(exitCode, stdout, stderr),
})

describe('amp call get', () => {
  isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
  })
  afterEach(() => fake.close())

  it('prints "<id> <state> (attempt N of M)" for a call not yet ended, exit 0, asking once without waiting', async () => {
    fake.calls.set(ID, {...QUEUED, state: 'retrying', attempts: 2})
    const {stdout, stderr, exitCode} = await runAmp(['call', 'get', ID, '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal(`${ID} retrying (attempt 2 of 3)\n`)
    expect(stderr).to.equal('')
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).to.deep.equal([`GET /_amp/v1/calls/${ID}`])
  })

  it('prints the result of an ended call as invoke does: stdout, stderr, exit 0', async () => {
    fake.calls.set(ID, final(0, 'hello\n', 'a log line\n'))
    const {stdout, stderr, exitCode} = await runAmp(['call', 'get', ID, '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('hello\n')
    expect(stderr).to.equal('a log line\n')
  })

  it("exits with the function's exit code when its last attempt exited non-zero", async () => {
    fake.calls.set(ID, final(3, 'partial', 'boom\n'))
    const {stdout, stderr, error, exitCode} = await runAmp(['call', 'get', ID, '--server', fake.url])
    expect(error).to.equal(undefined)
    expect(exitCode).to.equal(3)
    expect(stdout).to.equal('partial')
    expect(stderr).to.equal('boom\n')
  })

  const noResult: Array<[CallRecord['outcome'], number]> = [
    ['timeout', 105],
    ['failed', 106],
  ]
  for (const [outcome, exit] of noResult) {
    it(`exits ${exit} when the call failed for good without a result (outcome ${outcome})`, async () => {
      fake.calls.set(ID, {...QUEUED, state: 'failed', attempts: 3, deadLetter: true, outcome, error: 'the container did not finish'})
      const {stdout, error, exitCode} = await runAmp(['call', 'get', ID, '--server', fake.url])
      expect(exitCode).to.equal(exit)
      expect(stdout).to.equal('')
      expect(error?.message).to.equal(`call ${ID} failed after 3 attempts: the container did not finish`)
    })
  }

  it('--wait asks with ?wait=30000ms until the call has ended, then prints its result', async () => {
    let asked = 0
    fake.calls.set(ID, QUEUED)
    fake.onGetCall = (record) => (++asked < 3 ? {...record, state: 'running', attempts: 1} : final(0, 'done\n', ''))
    const {stdout, exitCode} = await runAmp(['call', 'get', ID, '--wait', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('done\n')
    expect(fake.requests.map((r) => r.path)).to.deep.equal(Array.from({length: 3}, () => `/_amp/v1/calls/${ID}?wait=30000ms`))
  })

  it('--wait --timeout exits 105 when the call has not ended in time', async () => {
    fake.calls.set(ID, {...QUEUED, state: 'running', attempts: 1})
    const {error, stdout, exitCode} = await runAmp(['call', 'get', ID, '--wait', '--timeout', '1s', '--server', fake.url])
    expect(exitCode).to.equal(105)
    expect(stdout).to.equal('')
    expect(error?.message).to.equal(`call ${ID} is still running after 1s (attempt 1 of 3)`)
  })

  it('refuses --timeout without --wait (exit 2)', async () => {
    const {exitCode, error} = await runAmp(['call', 'get', ID, '--timeout', '1m', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.match(/--wait/)
    expect(fake.requests).to.deep.equal([])
  })

  it('exits 102 for an unknown or expired call, with a hint', async () => {
    const {error, exitCode} = await runAmp(['call', 'get', ID, '--server', fake.url])
    expect(exitCode).to.equal(102)
    expect(error?.message).to.equal(`no call ${ID}: unknown, or past its retention`)
    expect(error?.suggestions?.join()).to.include('kept for a limited time')
  })

  it('exits 2 on a malformed call id without asking the listener', async () => {
    const {exitCode} = await runAmp(['call', 'get', '../functions', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(fake.requests).to.deep.equal([])
  })

  it('exits 109 on a record with missing fields', async () => {
    fake.calls.set(ID, QUEUED)
    fake.onGetCall = () => ({raw: {status: 200, contentType: 'application/json', body: JSON.stringify({callId: ID, state: 'queued'})}})
    const {error, exitCode} = await runAmp(['call', 'get', ID, '--server', fake.url])
    expect(exitCode).to.equal(109)
    expect(error?.message).to.match(/expected a call record/)
  })

  describe('--json', () => {
    it('prints the record as returned, and exits as without --json (the function exited 3)', async () => {
      const record = final(3)
      fake.calls.set(ID, record)
      const {stdout, stderr, exitCode} = await runAmp(['call', 'get', ID, '--json', '--server', fake.url])
      expect(exitCode).to.equal(3)
      expect(stderr).to.equal('')
      expect(JSON.parse(stdout)).to.deep.equal(record)
    })

    it('prints the record of a call not yet ended, exit 0, and of one that timed out for good, exit 105', async () => {
      fake.calls.set(ID, QUEUED)
      const queued = await runAmp(['call', 'get', ID, '--json', '--server', fake.url])
      expect(queued.exitCode).to.equal(0)
      expect(JSON.parse(queued.stdout)).to.deep.equal(QUEUED)
      const timedOut: CallRecord = {...QUEUED, state: 'failed', attempts: 3, deadLetter: true, outcome: 'timeout', error: 'ran past 1s'}
      fake.calls.set(ID, timedOut)
      const failed = await runAmp(['call', 'get', ID, '--json', '--server', fake.url])
      expect(failed.exitCode).to.equal(105)
      expect(JSON.parse(failed.stdout)).to.deep.equal(timedOut)
    })

    it('prints the error object for an unknown call, exit 102', async () => {
      const {stdout, exitCode} = await runAmp(['call', 'get', ID, '--json', '--server', fake.url])
      expect(exitCode).to.equal(102)
      expect(JSON.parse(stdout).error).to.include({code: 'call_not_found', exit: 102})
    })
  })
})
