/** The client's side of asynchronous calls (docs/async.md): what it sends, and every odd answer it refuses. */
import {expect} from 'chai'
import {type AmpClient, finalResult} from '../../../src/runtime/client/client.js'
import {EXIT} from '../../../src/runtime/shared/errors.js'
import type {CallRecord} from '../../../src/runtime/shared/http-contract.js'
import {ampError} from '../../helpers/amp-error.js'
import {useMockClient} from '../../helpers/mock-agent.js'

const JSON_HEADERS = {'content-type': 'application/json'}
const ID = '3f0c1a0e-6f5e-4d59-a8c8-2b51c1e4f3a2'
const ACCEPTED = {callId: ID, function: 'test', state: 'queued', statusUrl: `/_amp/v1/calls/${ID}`}
const RESULT = {
  callId: ID,
  function: 'test',
  exitCode: 3,
  stdout: Buffer.from('out').toString('base64'),
  stderr: Buffer.from('err').toString('base64'),
  stderrTruncated: false,
  durationMs: 12,
  worker: 'w1',
}
const QUEUED: CallRecord = {
  callId: ID,
  function: 'test',
  state: 'queued',
  attempts: 0,
  maxAttempts: 3,
  createdAt: '2025-01-31T14:05:09.123Z',
  deadLetter: false,
}
const SUCCEEDED: CallRecord = {...QUEUED, state: 'succeeded', attempts: 1, finishedAt: '2025-01-31T14:05:10.000Z', outcome: 'exited', result: RESULT}

describe('AmpClient: asynchronous calls', () => {
  const mock = useMockClient()
  const pool = () => mock.pool()
  let client: AmpClient
  beforeEach(() => {
    client = mock.client()
  })

  /** Answers the next call of "test" with 202 and keeps the request headers it came with. */
  const acceptNextCall = () => {
    const sent: {headers?: Record<string, string>} = {}
    pool()
      .intercept({path: '/test', method: 'POST'})
      .reply(202, (options) => {
        sent.headers = options.headers as Record<string, string>
        return ACCEPTED
      }, {headers: JSON_HEADERS})
    return sent
  }

  describe('invokeAsync', () => {
    it('sends Prefer: respond-async and the callback URL, and returns the call id', async () => {
      const sent = acceptNextCall()
      expect(await client.invokeAsync('test', Buffer.from('in'), {callbackUrl: 'https://hooks.example/amp?x=1'})).to.deep.equal(ACCEPTED)
      expect(sent.headers?.prefer).to.equal('respond-async')
      expect(sent.headers?.['amp-callback-url']).to.equal('https://hooks.example/amp?x=1')
    })

    it('refuses a callback URL that is not absolute http(s) before any request (exit 2)', async () => {
      for (const url of ['/relative', 'ftp://x/y', 'javascript:alert(1)', 'http://a b/', '']) {
        const error = await ampError(client.invokeAsync('test', Buffer.from('x'), {callbackUrl: url}))
        expect(error.exit, url).to.equal(EXIT.usage)
        expect(error.message).to.match(/^invalid callback URL/)
      }
    })

    it('says so when a listener without async calls ran the call synchronously (exit 109)', async () => {
      pool().intercept({path: '/test', method: 'POST'}).reply(200, {...RESULT, exitCode: 0}, {headers: {'content-type': 'application/vnd.amp.result+json'}})
      const error = await ampError(client.invokeAsync('test', Buffer.from('x')))
      expect(error.exit).to.equal(EXIT.badAnswer)
      expect(error.message).to.match(/ran call .* synchronously/)
    })

    it('keeps a 503 service_unavailable (JetStream could not store the call): exit 108, with the call id', async () => {
      pool()
        .intercept({path: '/test', method: 'POST'})
        .reply(503, {error: {code: 'service_unavailable', message: 'cannot queue the call: JetStream is unavailable', callId: ID}}, {headers: JSON_HEADERS})
      const error = await ampError(client.invokeAsync('test', Buffer.from('x')))
      expect(error.code).to.equal('service_unavailable')
      expect(error.exit).to.equal(EXIT.unavailable)
      expect(error.message).to.equal(`cannot queue the call: JetStream is unavailable (call ${ID})`)
    })

    const oddAccepted: Array<[string, number, unknown, Record<string, string>]> = [
      ['a 202 without a call id', 202, {function: 'test', state: 'queued', statusUrl: '/x'}, JSON_HEADERS],
      ['a 202 in another state', 202, {...ACCEPTED, state: 'running'}, JSON_HEADERS],
      ['a 202 that is not JSON', 202, 'queued', {'content-type': 'text/plain'}],
      ['a 202 with cut-off JSON', 202, '{"callId": "3f0c', JSON_HEADERS],
    ]
    for (const [what, status, body, headers] of oddAccepted) {
      it(`takes ${what} for a bad answer (exit 109)`, async () => {
        pool().intercept({path: '/test', method: 'POST'}).reply(status, body as object, {headers})
        expect((await ampError(client.invokeAsync('test', Buffer.from('x')))).exit).to.equal(EXIT.badAnswer)
      })
    }
  })

  describe('call (what amp function invoke sends)', () => {
    it('renders a 202 of a fire-and-forget function as accepted, without asking for async', async () => {
      const sent = acceptNextCall()
      expect(await client.call('test', Buffer.from('x'))).to.deep.equal({kind: 'accepted', accepted: ACCEPTED})
      expect(sent.headers).to.not.have.property('prefer')
    })

    it('invoke waits for the result of a fire-and-forget function', async () => {
      pool().intercept({path: '/test', method: 'POST'}).reply(202, ACCEPTED, {headers: JSON_HEADERS})
      pool().intercept({path: `/_amp/v1/calls/${ID}?wait=30000ms`, method: 'GET'}).reply(200, SUCCEEDED, {headers: JSON_HEADERS})
      const result = await client.invoke('test', Buffer.from('x'))
      expect(result.exitCode).to.equal(3)
      expect(result.stdout.toString()).to.equal('out')
    })
  })

  describe('getCall', () => {
    it('reads a record, asking the listener to hold the answer for waitMs (at most 30s)', async () => {
      pool().intercept({path: `/_amp/v1/calls/${ID}`, method: 'GET'}).reply(200, QUEUED, {headers: JSON_HEADERS})
      pool().intercept({path: `/_amp/v1/calls/${ID}?wait=1500ms`, method: 'GET'}).reply(200, SUCCEEDED, {headers: JSON_HEADERS})
      pool().intercept({path: `/_amp/v1/calls/${ID}?wait=30000ms`, method: 'GET'}).reply(200, SUCCEEDED, {headers: JSON_HEADERS})
      expect(await client.getCall(ID)).to.deep.equal(QUEUED)
      expect(await client.getCall(ID, {waitMs: 1500})).to.deep.equal(SUCCEEDED)
      expect(await client.getCall(ID, {waitMs: 5 * 60_000})).to.deep.equal(SUCCEEDED)
    })

    it('keeps 404 call_not_found: exit 102, with a hint about retention', async () => {
      pool()
        .intercept({path: `/_amp/v1/calls/${ID}`, method: 'GET'})
        .reply(404, {error: {code: 'call_not_found', message: `no call ${ID} (unknown, or past its retention)`}}, {headers: JSON_HEADERS})
      const error = await ampError(client.getCall(ID))
      expect(error.code).to.equal('call_not_found')
      expect(error.exit).to.equal(EXIT.notFound)
      expect(error.suggestions.join(' ')).to.include('kept for a limited time')
    })

    it('refuses a malformed call id before any request (exit 2)', async () => {
      for (const id of ['', 'a b', 'x'.repeat(65), `${ID}/../x`, '../../functions', 'id?wait=1']) {
        expect((await ampError(client.getCall(id))).exit, id).to.equal(EXIT.usage)
      }
    })

    it('keeps a 503 (exit 108)', async () => {
      pool()
        .intercept({path: `/_amp/v1/calls/${ID}`, method: 'GET'})
        .reply(503, {error: {code: 'service_unavailable', message: 'JetStream is unavailable'}}, {headers: JSON_HEADERS})
      expect((await ampError(client.getCall(ID))).exit).to.equal(EXIT.unavailable)
    })

    const odd: Array<[string, unknown]> = [
      ['a record without a state', {...QUEUED, state: undefined}],
      ['a record in an unknown state', {...QUEUED, state: 'done'}],
      ['a record without attempts', {...QUEUED, attempts: undefined}],
      ['a record with fractional attempts', {...QUEUED, attempts: 1.5}],
      ['a record without deadLetter', {...QUEUED, deadLetter: undefined}],
      ['a record with an unknown outcome', {...QUEUED, outcome: 'crashed'}],
      ['a record whose result lacks the exit code', {...SUCCEEDED, result: {...RESULT, exitCode: undefined}}],
      ['a record whose stdout is not base64', {...SUCCEEDED, result: {...RESULT, stdout: 'not base64!'}}],
      ['a record with a callback without state', {...QUEUED, callback: {attempts: 1}}],
      ['the record of another call', {...QUEUED, callId: '00000000-0000-4000-8000-000000000000'}],
      ['an array', [QUEUED]],
    ]
    for (const [what, body] of odd) {
      it(`takes ${what} for a bad answer (exit 109)`, async () => {
        pool().intercept({path: `/_amp/v1/calls/${ID}`, method: 'GET'}).reply(200, body as object, {headers: JSON_HEADERS})
        const error = await ampError(client.getCall(ID))
        expect(error.code).to.equal('bad_answer')
      })
    }

    it('takes a record as JSON text without the JSON content type for a bad answer', async () => {
      pool().intercept({path: `/_amp/v1/calls/${ID}`, method: 'GET'}).reply(200, JSON.stringify(QUEUED))
      expect((await ampError(client.getCall(ID))).message).to.include('expected JSON')
    })
  })

  describe('waitForCall', () => {
    it('asks again until the call is final', async () => {
      const running = {...QUEUED, state: 'running', attempts: 1}
      pool().intercept({path: `/_amp/v1/calls/${ID}?wait=30000ms`, method: 'GET'}).reply(200, running, {headers: JSON_HEADERS})
      pool().intercept({path: `/_amp/v1/calls/${ID}?wait=30000ms`, method: 'GET'}).reply(200, SUCCEEDED, {headers: JSON_HEADERS})
      expect(await client.waitForCall(ID, {timeoutMs: 60_000})).to.deep.equal(SUCCEEDED)
    })

    it('fails with function_timeout (exit 105) when the call is still not final after the timeout', async () => {
      const retrying = {...QUEUED, state: 'retrying', attempts: 2}
      pool().intercept({path: new RegExp(`^/_amp/v1/calls/${ID}\\?wait=\\d+ms$`), method: 'GET'}).reply(200, retrying, {headers: JSON_HEADERS}).persist()
      const error = await ampError(client.waitForCall(ID, {timeoutMs: 1500}))
      expect(error.exit).to.equal(EXIT.timeout)
      expect(error.message).to.equal(`call ${ID} is still retrying after 1500ms (attempt 2 of 3)`)
    })
  })

  describe('finalResult', () => {
    it('gives the result of a call whose container exited, whatever its exit code', () => {
      const failed: CallRecord = {...SUCCEEDED, state: 'failed', attempts: 3, deadLetter: true}
      expect(finalResult(failed)).to.include({exitCode: 3, worker: 'w1'})
    })

    it('fails as invoke would when no container exited: 105 after a timeout, 106 otherwise', () => {
      const base: CallRecord = {...QUEUED, state: 'failed', attempts: 3, deadLetter: true, error: 'ran past its timeout of 1s'}
      for (const [outcome, exit] of [['timeout', EXIT.timeout], ['failed', EXIT.cannotRun], [undefined, EXIT.cannotRun]] as const) {
        let thrown: unknown
        try {
          finalResult({...base, outcome})
        } catch (error) {
          thrown = error
        }
        expect(thrown).to.include({exit, message: `call ${ID} failed after 3 attempts: ran past its timeout of 1s`})
      }
    })
  })

  describe('deadLetters', () => {
    const LETTER = {callId: ID, function: 'test', attempts: 3, failedAt: '2025-01-31T14:06:00.000Z', error: 'exited 3', exitCode: 3}

    it('asks for one function and a limit, and returns the letters', async () => {
      pool().intercept({path: '/_amp/v1/dead-letters?function=test&limit=5', method: 'GET'}).reply(200, {deadLetters: [LETTER]}, {headers: JSON_HEADERS})
      pool().intercept({path: '/_amp/v1/dead-letters', method: 'GET'}).reply(200, {deadLetters: []}, {headers: JSON_HEADERS})
      expect(await client.deadLetters({function: 'test', limit: 5})).to.deep.equal([LETTER])
      expect(await client.deadLetters()).to.deep.equal([])
    })

    it('refuses a bad function name or limit before any request (exit 2)', async () => {
      for (const query of [{function: 'Bad_Name'}, {limit: 0}, {limit: 1001}, {limit: 2.5}]) {
        expect((await ampError(client.deadLetters(query))).exit, JSON.stringify(query)).to.equal(EXIT.usage)
      }
    })

    const odd: Array<[string, unknown]> = [
      ['a bare array', [LETTER]],
      ['a letter without its error', {deadLetters: [{...LETTER, error: undefined}]}],
      ['a letter with a text exit code', {deadLetters: [{...LETTER, exitCode: '3'}]}],
    ]
    for (const [what, body] of odd) {
      it(`takes ${what} for a bad answer (exit 109)`, async () => {
        pool().intercept({path: '/_amp/v1/dead-letters', method: 'GET'}).reply(200, body as object, {headers: JSON_HEADERS})
        expect((await ampError(client.deadLetters())).code).to.equal('bad_answer')
      })
    }

    it('keeps 403 forbidden (the invoke token may not list dead letters): exit 110', async () => {
      pool()
        .intercept({path: '/_amp/v1/dead-letters', method: 'GET'})
        .reply(403, {error: {code: 'forbidden', message: 'the invoke token may only call functions'}}, {headers: JSON_HEADERS})
      expect((await ampError(client.deadLetters())).exit).to.equal(EXIT.notAuthorized)
    })
  })
})
