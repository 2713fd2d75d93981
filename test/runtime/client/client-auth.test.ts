import {expect} from 'chai'
import {MockAgent} from 'undici'

import {AmpClient, RESULT_MEDIA_TYPE} from '../../../src/runtime/client/client.js'
import {createLogger} from '../../../src/runtime/shared/logger.js'
import {ampError} from '../../helpers/amp-error.js'

const SERVER = 'http://amp.test:4242'
const TOKEN = 'cli-Secret-5e5e5e'
const JSON_HEADERS = {'content-type': 'application/json'}
const SPEC = {name: 'test', image: 'busybox:1.36', timeoutMs: 30_000, network: 'none', createdAt: 'c', updatedAt: 'u'}
const ENVELOPE = {callId: 'c1', function: 'test', exitCode: 0, stdout: '', stderr: '', stderrTruncated: false, durationMs: 1, worker: 'w'}

describe('AmpClient with a token', () => {
  let agent: MockAgent
  let lines: string[]
  let client: AmpClient
  beforeEach(() => {
    agent = new MockAgent()
    agent.disableNetConnect()
    lines = []
    client = new AmpClient({server: SERVER, dispatcher: agent, token: TOKEN, logger: createLogger({level: 'debug', write: (line) => lines.push(line)})})
  })
  afterEach(() => agent.close())
  const pool = () => agent.get(SERVER)
  const bearer = {authorization: `Bearer ${TOKEN}`}

  it('sends it as a bearer token on API requests, calls and log reads, and never logs it', async () => {
    // An intercept only matches when the header is there.
    pool().intercept({path: '/_amp/v1/functions', method: 'GET', headers: bearer}).reply(200, {functions: [SPEC]}, {headers: JSON_HEADERS})
    pool().intercept({path: '/_amp/v1/functions/test', method: 'PUT', headers: bearer}).reply(201, SPEC, {headers: JSON_HEADERS})
    pool().intercept({path: '/test', method: 'POST', headers: bearer}).reply(200, ENVELOPE, {headers: {'content-type': RESULT_MEDIA_TYPE}})
    pool()
      .intercept({path: '/_amp/v1/functions/test/logs', method: 'GET', headers: bearer})
      .reply(200, '', {headers: {'content-type': 'application/x-ndjson'}})
    expect(await client.listFunctions()).to.have.length(1)
    expect((await client.createFunction('test', {image: 'busybox:1.36'})).replaced).to.equal(false)
    expect((await client.invoke('test', Buffer.from('hi'))).callId).to.equal('c1')
    for await (const _line of await client.logs('test')) expect.fail('no lines expected')
    expect(lines.join('')).to.contain('status=200').and.not.contain(TOKEN)
  })

  it('sends no Authorization header without a token', async () => {
    const open = new AmpClient({server: SERVER, dispatcher: agent})
    let sent: unknown = 'not called'
    pool()
      .intercept({path: '/_amp/v1/functions', method: 'GET'})
      .reply(200, (options) => {
        sent = (options.headers as Record<string, string>).authorization
        return {functions: []}
      }, {headers: JSON_HEADERS})
    await open.listFunctions()
    expect(sent).to.equal(undefined)
  })

  it('turns 401 and 403 into exit 110 with one line that says to set --token or AMP_TOKEN', async () => {
    const refuse = (status: number, code: string, message: string) =>
      pool().intercept({path: '/_amp/v1/functions', method: 'GET'}).reply(status, {error: {code, message, callId: 'c9'}}, {headers: JSON_HEADERS})

    refuse(401, 'unauthorized', 'this listener requires a token: send "Authorization: Bearer <token>"')
    const missing = await ampError(client.listFunctions())
    expect(missing).to.include({code: 'unauthorized', exit: 110})
    expect(missing.message).to.contain('--token or AMP_TOKEN').and.not.contain('\n')

    refuse(403, 'forbidden', 'the token is not valid for this listener')
    const wrong = await ampError(client.listFunctions())
    expect(wrong).to.include({code: 'forbidden', exit: 110})
    expect(wrong.message).to.equal('the token is not valid for this listener; check --token or AMP_TOKEN')
    expect(wrong.message + wrong.suggestions.join(' ')).to.not.contain(TOKEN)
  })
})
