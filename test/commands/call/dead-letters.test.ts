import {expect} from 'chai'

import type {DeadLetter} from '../../../src/runtime/shared/http-contract.js'
import {type FakeListener, startFakeListener} from '../../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'

const LETTERS: DeadLetter[] = [
  {callId: '3f0c1a0e-6f5e-4d59-a8c8-2b51c1e4f3a2', function: 'test', attempts: 3, failedAt: '2025-01-31T14:06:00.000Z', error: 'exited 3', exitCode: 3},
  {callId: '9b2d7c44-0d1e-4f7a-9e55-61c0a8f1b2c3', function: 'other', attempts: 1, failedAt: '2025-01-31T14:07:30.500Z', error: 'ran past its timeout of 1s'},
]

describe('amp call dead-letters', () => {
  isolateEnvironment()
  let fake: FakeListener
  beforeEach(async () => {
    fake = await startFakeListener()
  })
  afterEach(() => fake.close())

  it('prints a table, newest last', async () => {
    fake.deadLetters.push(...LETTERS)
    const {stdout, stderr, exitCode} = await runAmp(['call', 'dead-letters', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stderr).to.equal('')
    expect(stdout).to.equal(
      [
        'CALL ID                               FUNCTION  ATTEMPTS  FAILED AT             ERROR',
        '3f0c1a0e-6f5e-4d59-a8c8-2b51c1e4f3a2  test      3         2025-01-31 14:06:00Z  exited 3',
        '9b2d7c44-0d1e-4f7a-9e55-61c0a8f1b2c3  other     1         2025-01-31 14:07:30Z  ran past its timeout of 1s',
        '',
      ].join('\n'),
    )
  })

  it('sends --function and --limit', async () => {
    fake.deadLetters.push(...LETTERS)
    const {stdout, exitCode} = await runAmp(['call', 'dead-letters', '--function', 'other', '--limit', '5', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(fake.requests[0].path).to.equal('/_amp/v1/dead-letters?function=other&limit=5')
    expect(stdout).to.contain('9b2d7c44').and.not.contain('3f0c1a0e')
  })

  it('prints nothing on stdout and a note on stderr when there are none, exit 0', async () => {
    const {stdout, stderr, exitCode} = await runAmp(['call', 'dead-letters', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('')
    expect(stderr).to.equal('No dead letters.\n')
  })

  it('prints {"deadLetters": [...]} with --json, also when empty, and nothing on stderr', async () => {
    const empty = await runAmp(['call', 'dead-letters', '--json', '--server', fake.url])
    expect(empty.stderr).to.equal('')
    expect(JSON.parse(empty.stdout)).to.deep.equal({deadLetters: []})
    fake.deadLetters.push(...LETTERS)
    const full = await runAmp(['call', 'dead-letters', '--json', '--server', fake.url])
    expect(full.exitCode).to.equal(0)
    expect(JSON.parse(full.stdout)).to.deep.equal({deadLetters: LETTERS})
  })

  for (const [flags, message] of [
    [['--limit', '0'], /greater than or equal to 1/],
    [['--limit', '1001'], /less than or equal to 1000/],
    [['--function', 'Bad_Name'], /invalid function name "Bad_Name"/],
  ] as const) {
    it(`exits 2 on ${flags.join(' ')} without asking the listener`, async () => {
      const {error, exitCode} = await runAmp(['call', 'dead-letters', ...flags, '--server', fake.url])
      expect(exitCode).to.equal(2)
      expect(error?.message).to.match(message)
      expect(fake.requests).to.deep.equal([])
    })
  }

  it('exits 110 when the token is refused', async () => {
    fake.token = 'admin'
    const {error, exitCode} = await runAmp(['call', 'dead-letters', '--token', 'wrong', '--server', fake.url])
    expect(exitCode).to.equal(110)
    expect(error?.message).to.match(/^the token is not valid/)
  })
})
