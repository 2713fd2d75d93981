import {expect} from 'chai'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {AmpClient, RESULT_MEDIA_TYPE} from '../../../src/runtime/client/client.js'
import type {FunctionInput, FunctionPatch} from '../../../src/runtime/shared/function-spec.js'
import {AmpError, EXIT} from '../../../src/runtime/shared/errors.js'
import {ampError} from '../../helpers/amp-error.js'
import {MOCK_SERVER, useMockClient} from '../../helpers/mock-agent.js'

const SERVER = MOCK_SERVER
const SPEC = {
  name: 'test',
  image: 'busybox:1.36',
  timeoutMs: 30_000,
  network: 'none',
  memoryBytes: 268_435_456,
  cpus: 1,
  pidsLimit: 256,
  envKeys: [],
  fireAndForget: false,
  retries: 2,
  prestart: 2,
  reuse: false,
  reuseMaxCalls: 1000,
  createdAt: '2025-01-31T14:05:09.123Z',
  updatedAt: '2025-01-31T14:05:09.123Z',
}
const JSON_HEADERS = {'content-type': 'application/json'}


describe('AmpClient', () => {
  const mock = useMockClient()
  const pool = () => mock.pool()
  let client: AmpClient
  beforeEach(() => {
    client = mock.client()
  })

  describe('function API', () => {
    it('creates a function with PUT and tells created from replaced', async () => {
      let sent: unknown
      pool()
        .intercept({path: '/_amp/v1/functions/test', method: 'PUT'})
        .reply(201, (options) => {
          sent = JSON.parse(String(options.body))
          return SPEC
        }, {headers: JSON_HEADERS})
      const created = await client.createFunction('test', {image: 'busybox:1.36', timeoutMs: 30_000, network: 'none'})
      expect(sent).to.deep.equal({image: 'busybox:1.36', timeoutMs: 30_000, network: 'none'})
      expect(created).to.deep.equal({function: SPEC, replaced: false})

      pool().intercept({path: '/_amp/v1/functions/test?replace=true', method: 'PUT'}).reply(200, SPEC, {headers: JSON_HEADERS})
      expect((await client.createFunction('test', {image: 'busybox:1.36'}, {replace: true})).replaced).to.equal(true)
    })

    it('sends limits and environment on create, and reads back only the names of the variables', async () => {
      let sent: unknown
      const answer = {...SPEC, memoryBytes: 6 * 1024 * 1024, cpus: 0.5, pidsLimit: 16, envKeys: ['TOKEN']}
      pool()
        .intercept({path: '/_amp/v1/functions/test', method: 'PUT'})
        .reply(201, (options) => {
          sent = JSON.parse(String(options.body))
          return answer
        }, {headers: JSON_HEADERS})
      const input = {image: 'busybox:1.36', memoryBytes: 6 * 1024 * 1024, cpus: 0.5, pidsLimit: 16, env: {TOKEN: 't0k'}}
      const created = await client.createFunction('test', input)
      expect(sent).to.deep.equal(input)
      expect(created.function).to.deep.equal(answer)
    })

    it('reads a function from a listener older than limits, env and async settings with the defaults the workers apply', async () => {
      const {memoryBytes, cpus, pidsLimit, envKeys, fireAndForget, retries, prestart, reuse, reuseMaxCalls, ...older} = SPEC
      pool().intercept({path: '/_amp/v1/functions/test', method: 'GET'}).reply(200, older, {headers: JSON_HEADERS})
      expect(await client.getFunction('test')).to.deep.equal({...older, memoryBytes, cpus, pidsLimit, envKeys, fireAndForget, retries, prestart, reuse, reuseMaxCalls})
    })

    const sentAndReadBack: Array<[string, FunctionInput, FunctionPatch]> = [
      ['fireAndForget and retries', {image: 'busybox:1.36', fireAndForget: true, retries: 5}, {fireAndForget: false}],
      ['reuse and reuseMaxCalls', {image: 'busybox:1.36', reuse: true, reuseMaxCalls: 50}, {reuse: false}],
    ]
    for (const [what, input, patch] of sentAndReadBack) {
      it(`sends ${what} on create and update, and reads them back`, async () => {
        const sent: unknown[] = []
        const {image: _image, ...settings} = input
        const answer = {...SPEC, ...settings}
        pool()
          .intercept({path: '/_amp/v1/functions/test', method: 'PUT'})
          .reply(201, (options) => {
            sent.push(JSON.parse(String(options.body)))
            return answer
          }, {headers: JSON_HEADERS})
        pool()
          .intercept({path: '/_amp/v1/functions/test', method: 'PATCH'})
          .reply(200, (options) => {
            sent.push(JSON.parse(String(options.body)))
            return {...answer, ...patch}
          }, {headers: JSON_HEADERS})
        expect((await client.createFunction('test', input)).function).to.deep.equal(answer)
        expect(await client.updateFunction('test', patch)).to.deep.equal({...answer, ...patch})
        expect(sent).to.deep.equal([input, patch])
      })
    }

    it('refuses a function whose fireAndForget, retries, reuse or reuseMaxCalls has the wrong type (bad answer)', async () => {
      for (const wrong of [{fireAndForget: 'yes'}, {retries: '2'}, {reuse: 'true'}, {reuseMaxCalls: '1000'}]) {
        pool().intercept({path: '/_amp/v1/functions/test', method: 'GET'}).reply(200, {...SPEC, ...wrong}, {headers: JSON_HEADERS})
        expect((await ampError(client.getFunction('test'))).code, JSON.stringify(wrong)).to.equal('bad_answer')
      }
    })

    it('keeps a path prefix of --server (a listener behind a proxy)', async () => {
      const prefixed = new AmpClient({server: `${SERVER}/amp/`, dispatcher: mock.agent()})
      pool().intercept({path: '/amp/_amp/v1/functions', method: 'GET'}).reply(200, {functions: [SPEC]}, {headers: JSON_HEADERS})
      expect(await prefixed.listFunctions()).to.deep.equal([SPEC])
    })

    it('refuses bad names, images, networks and timeouts before any request (exit 2)', async () => {
      // disableNetConnect and no intercept: any request would fail with another error
      for (const attempt of [
        () => client.createFunction('Bad_Name', {image: 'busybox'}),
        () => client.createFunction('ok', {image: '--privileged'}),
        () => client.createFunction('ok', {image: 'busybox', network: 'host'}),
        () => client.createFunction('ok', {image: 'busybox', timeoutMs: 0}),
        () => client.createFunction('ok', {image: 'busybox', memoryBytes: 1024}),
        () => client.createFunction('ok', {image: 'busybox', cpus: 65}),
        () => client.createFunction('ok', {image: 'busybox', pidsLimit: 8}),
        () => client.createFunction('ok', {image: 'busybox', env: {'BAD-NAME': 'x'}}),
        () => client.createFunction('ok', {image: 'busybox', env: {A: 'line\nbreak'}}),
        () => client.createFunction('ok', {image: 'busybox', retries: 11}),
        () => client.createFunction('ok', {image: 'busybox', retries: 1.5}),
        () => client.createFunction('ok', {image: 'busybox', reuseMaxCalls: 0}),
        () => client.createFunction('ok', {image: 'busybox', reuse: true, prestart: 0}),
        () => client.updateFunction('ok', {reuse: true, prestart: 0}),
        () => client.updateFunction('ok', {reuseMaxCalls: 1_000_001}),
        () => client.updateFunction('ok', {retries: -1}),
        () => client.updateFunction('ok', {env: {A: 'x\0y'}}),
        () => client.invoke('-rf', Buffer.from('x')),
        () => client.removeFunctions(['ok', 'NOT OK']),
        () => client.getFunction('../_amp'),
      ]) {
        const error = await ampError(attempt())
        expect(error.code).to.equal('bad_request')
        expect(error.exit).to.equal(EXIT.usage)
      }
    })

    it('refuses a --server that is no http(s) URL (exit 2)', () => {
      for (const server of ['localhost:4242', 'ftp://x', 'http://x/?a=1', 'nonsense']) {
        expect(() => new AmpClient({server}), server).to.throw(AmpError, /invalid server URL/)
      }
    })

    it('updates a function with PATCH, sending only the settings to change', async () => {
      let sent: unknown
      const updated = {...SPEC, image: 'busybox:2', updatedAt: '2025-02-01T00:00:00.000Z'}
      pool()
        .intercept({path: '/_amp/v1/functions/test', method: 'PATCH'})
        .reply(200, (options) => {
          sent = JSON.parse(String(options.body))
          return updated
        }, {headers: JSON_HEADERS})
      expect(await client.updateFunction('test', {image: 'busybox:2', timeoutMs: undefined})).to.deep.equal(updated)
      expect(sent).to.deep.equal({image: 'busybox:2'})
    })

    it('refuses an update with nothing to change or a bad value before any request (exit 2)', async () => {
      for (const patch of [{}, {image: '--privileged'}, {network: 'host'}, {timeoutMs: -1}]) {
        const error = await ampError(client.updateFunction('test', patch))
        expect(error.code, JSON.stringify(patch)).to.equal('bad_request')
      }
      expect((await ampError(client.updateFunction('Bad_Name', {image: 'busybox'}))).exit).to.equal(EXIT.usage)
    })

    it('says how to find the functions when the one to update does not exist (exit 102)', async () => {
      pool()
        .intercept({path: '/_amp/v1/functions/test', method: 'PATCH'})
        .reply(404, {error: {code: 'function_not_found', message: 'no function named "test"', callId: 'c'}}, {headers: JSON_HEADERS})
      const error = await ampError(client.updateFunction('test', {image: 'busybox:2'}))
      expect(error.exit).to.equal(EXIT.notFound)
      expect(error.suggestions.join(' ')).to.include('amp function ls')
    })

    it('lists, gets and removes functions', async () => {
      pool().intercept({path: '/_amp/v1/functions', method: 'GET'}).reply(200, {functions: [SPEC]}, {headers: JSON_HEADERS})
      pool().intercept({path: '/_amp/v1/functions/test', method: 'GET'}).reply(200, SPEC, {headers: JSON_HEADERS})
      pool().intercept({path: '/_amp/v1/functions/test', method: 'DELETE'}).reply(200, SPEC, {headers: JSON_HEADERS})
      expect(await client.listFunctions()).to.deep.equal([SPEC])
      expect(await client.getFunction('test')).to.deep.equal(SPEC)
      expect(await client.removeFunction('test')).to.deep.equal(SPEC)
    })

    it('removes all the functions that exist and reports the others', async () => {
      const notFound = {error: {code: 'function_not_found', message: 'no function named b', callId: 'c1'}}
      pool().intercept({path: '/_amp/v1/functions/a', method: 'DELETE'}).reply(200, {...SPEC, name: 'a'}, {headers: JSON_HEADERS})
      pool().intercept({path: '/_amp/v1/functions/b', method: 'DELETE'}).reply(404, notFound, {headers: JSON_HEADERS})
      pool().intercept({path: '/_amp/v1/functions/c', method: 'DELETE'}).reply(200, {...SPEC, name: 'c'}, {headers: JSON_HEADERS})
      const result = await client.removeFunctions(['a', 'b', 'c', 'a'])
      expect(result.removed.map((spec) => spec.name)).to.deep.equal(['a', 'c'])
      expect(result.missing).to.deep.equal(['b'])
    })
  })

  describe('error bodies', () => {
    const cases: Array<[number, string, number]> = [
      [400, 'bad_request', EXIT.usage],
      [404, 'function_not_found', EXIT.notFound],
      [409, 'function_exists', EXIT.exists],
      [503, 'no_worker', EXIT.noWorker],
      [504, 'function_timeout', EXIT.timeout],
      [502, 'function_failed_to_run', EXIT.cannotRun],
      [413, 'input_too_large', EXIT.tooLarge],
      [503, 'registry_unavailable', EXIT.unavailable],
      [500, 'internal', EXIT.badAnswer],
      [429, 'overloaded', EXIT.overloaded],
    ]
    for (const [status, code, exit] of cases) {
      it(`keeps the listener's ${code} (HTTP ${status}) and its message: exit ${exit}`, async () => {
        pool()
          .intercept({path: '/test', method: 'POST'})
          .reply(status, {error: {code, message: `it went wrong: ${code}`, callId: 'call-7'}}, {headers: JSON_HEADERS})
        const error = await ampError(client.invoke('test', Buffer.from('in')))
        expect(error.code).to.equal(code)
        expect(error.exit).to.equal(exit)
        expect(error.message).to.equal(`it went wrong: ${code} (call call-7)`)
      })
    }

    it('gives suggestions that say what to do', async () => {
      pool()
        .intercept({path: '/test', method: 'POST'})
        .reply(503, {error: {code: 'no_worker', message: 'no worker is running', callId: 'c'}}, {headers: JSON_HEADERS})
      const error = await ampError(client.invoke('test', Buffer.alloc(0)))
      expect(error.suggestions.join(' ')).to.include('amp worker start')
    })

    it('adds the call id to errors of calls only', async () => {
      pool()
        .intercept({path: '/_amp/v1/functions/test', method: 'PUT'})
        .reply(409, {error: {code: 'function_exists', message: 'function test already exists', callId: 'c5'}}, {headers: JSON_HEADERS})
      const error = await ampError(client.createFunction('test', {image: 'busybox'}))
      expect(error.message).to.equal('function test already exists')
      expect(error.suggestions).to.deep.equal(['Overwrite it with: amp function create test IMAGE --replace'])
    })

    it('takes an error code it does not know for a bad answer', async () => {
      pool()
        .intercept({path: '/_amp/v1/functions', method: 'GET'})
        .reply(500, {error: {code: 'config_invalid', message: 'odd'}}, {headers: JSON_HEADERS})
      const error = await ampError(client.listFunctions())
      expect(error.code).to.equal('bad_answer')
      expect(error.message).to.include('config_invalid: odd')
    })
  })

  describe('odd answers (exit 109)', () => {
    const odd: Array<[string, () => void, () => Promise<unknown>]> = [
      [
        "a proxy's HTML 502 page",
        () => pool().intercept({path: '/test', method: 'POST'}).reply(502, '<html><body>Bad Gateway</body></html>', {headers: {'content-type': 'text/html'}}),
        () => client.invoke('test', Buffer.from('x')),
      ],
      [
        'a 200 with raw stdout instead of the JSON result',
        () => pool().intercept({path: '/test', method: 'POST'}).reply(200, 'raw', {headers: {'content-type': 'application/octet-stream'}}),
        () => client.invoke('test', Buffer.from('x')),
      ],
      [
        'a cut-off result JSON',
        () => pool().intercept({path: '/test', method: 'POST'}).reply(200, '{"callId":"c1","stdo', {headers: {'content-type': RESULT_MEDIA_TYPE}}),
        () => client.invoke('test', Buffer.from('x')),
      ],
      [
        'a result without an exit code',
        () =>
          pool()
            .intercept({path: '/test', method: 'POST'})
            .reply(200, {callId: 'c', function: 'test', stdout: '', stderr: '', stderrTruncated: false, durationMs: 1, worker: 'w'}, {
              headers: {'content-type': RESULT_MEDIA_TYPE},
            }),
        () => client.invoke('test', Buffer.from('x')),
      ],
      [
        'a result whose stdout is not base64',
        () =>
          pool()
            .intercept({path: '/test', method: 'POST'})
            .reply(
              200,
              {callId: 'c', function: 'test', exitCode: 0, stdout: 'not base64!', stderr: '', stderrTruncated: false, durationMs: 1, worker: 'w'},
              {headers: {'content-type': RESULT_MEDIA_TYPE}},
            ),
        () => client.invoke('test', Buffer.from('x')),
      ],
      [
        'a list that is not {functions: [...]}',
        () => pool().intercept({path: '/_amp/v1/functions', method: 'GET'}).reply(200, [SPEC], {headers: JSON_HEADERS}),
        () => client.listFunctions(),
      ],
      [
        'a function without its image',
        () => pool().intercept({path: '/_amp/v1/functions/test', method: 'GET'}).reply(200, {...SPEC, image: undefined}, {headers: JSON_HEADERS}),
        () => client.getFunction('test'),
      ],
      [
        'JSON without the JSON content type',
        () => pool().intercept({path: '/_amp/v1/functions', method: 'GET'}).reply(200, JSON.stringify({functions: []})),
        () => client.listFunctions(),
      ],
      [
        'an empty 404 from some other web server',
        () => pool().intercept({path: '/_amp/v1/functions/test', method: 'DELETE'}).reply(404, ''),
        () => client.removeFunction('test'),
      ],
    ]
    for (const [what, intercept, call] of odd) {
      it(`takes ${what} for a bad answer`, async () => {
        intercept()
        const error = await ampError(call())
        expect(error.code).to.equal('bad_answer')
        expect(error.exit).to.equal(EXIT.badAnswer)
        expect(error.message).to.match(/^unexpected answer from http:\/\/amp\.test:4242: HTTP \d+/)
      })
    }
  })

  describe('invoke', () => {
    it('sends the input as is, asks for the JSON result and decodes both outputs', async () => {
      const input = Buffer.from([0, 1, 2, 255, 254, 10, 13])
      let seen: {body?: unknown; headers?: unknown} = {}
      pool()
        .intercept({path: '/test', method: 'POST'})
        .reply(
          500,
          (options) => {
            seen = {body: options.body, headers: options.headers}
            return {
              callId: 'c9',
              function: 'test',
              exitCode: 3,
              stdout: Buffer.from([255, 0, 7]).toString('base64'),
              stderr: Buffer.from('log line\n').toString('base64'),
              stderrTruncated: true,
              durationMs: 42,
              worker: 'w1',
            }
          },
          {headers: {'content-type': `${RESULT_MEDIA_TYPE}; charset=utf-8`}},
        )
      const result = await client.invoke('test', input)
      expect(Buffer.from(seen.body as Uint8Array).equals(input)).to.equal(true)
      expect((seen.headers as Record<string, string>).accept).to.equal(RESULT_MEDIA_TYPE)
      expect(result).to.deep.include({callId: 'c9', function: 'test', exitCode: 3, stderrTruncated: true, durationMs: 42, worker: 'w1'})
      expect([...result.stdout]).to.deep.equal([255, 0, 7])
      expect(result.stderr.toString()).to.equal('log line\n')
    })
  })

  describe('network failures (exit 101)', () => {
    it('says it cannot reach the listener when the connection is refused', async () => {
      // A real refused connection: a port that was just free.
      const server: Server = createServer()
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const {port} = server.address() as AddressInfo
      await new Promise<void>((resolve) => server.close(() => resolve()))
      const error = await ampError(new AmpClient({server: `http://127.0.0.1:${port}`}).listFunctions())
      expect(error.code).to.equal('listener_unreachable')
      expect(error.exit).to.equal(EXIT.unreachable)
      expect(error.message).to.equal(`cannot reach the listener at http://127.0.0.1:${port}: ECONNREFUSED`)
      expect(error.suggestions.join('\n')).to.match(/amp up/).and.match(/--server/)
    })

    it('says so for an unknown host', async () => {
      pool()
        .intercept({path: '/_amp/v1/functions', method: 'GET'})
        .replyWithError(Object.assign(new Error('getaddrinfo ENOTFOUND amp.test'), {code: 'ENOTFOUND'}))
      const error = await ampError(client.listFunctions())
      expect(error.code).to.equal('listener_unreachable')
      expect(error.message).to.equal(`cannot reach the listener at ${SERVER}: ENOTFOUND`)
    })

    it('says so when the listener does not answer in time', async () => {
      const server: Server = createServer(() => {
        // never answers
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      try {
        const {port} = server.address() as AddressInfo
        const slow = new AmpClient({server: `http://127.0.0.1:${port}`, requestTimeoutMs: 200})
        const error = await ampError(slow.listFunctions())
        expect(error.code).to.equal('listener_unreachable')
        expect(error.message).to.match(/no answer in time \(UND_ERR_HEADERS_TIMEOUT\)$/)
      } finally {
        server.closeAllConnections()
        server.close()
      }
    })

    it('says the listener closed the connection when it cuts off a request, hinting at --max-body for big inputs', async () => {
      pool()
        .intercept({path: '/test', method: 'POST'})
        .replyWithError(Object.assign(new Error('write EPIPE'), {code: 'EPIPE'}))
      const error = await ampError(client.invoke('test', Buffer.alloc(2 * 1024 * 1024)))
      expect(error.code).to.equal('listener_unreachable')
      expect(error.message).to.equal(`the listener at ${SERVER} closed the connection before answering (EPIPE)`)
      expect(error.suggestions[0]).to.match(/2097152 bytes of input are more than the listener's --max-body/)
    })

    it('takes an answer that breaks off for a bad answer', async () => {
      const server: Server = createServer((_req, res) => {
        res.writeHead(200, {'content-type': 'application/json', 'content-length': '1000'})
        res.write('{"functions": [')
        setTimeout(() => res.destroy(), 20)
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      try {
        const {port} = server.address() as AddressInfo
        const error = await ampError(new AmpClient({server: `http://127.0.0.1:${port}`}).listFunctions())
        expect(error.code).to.equal('bad_answer')
        expect(error.message).to.match(/broke off its answer to GET \/_amp\/v1\/functions/)
      } finally {
        server.close()
      }
    })

    it('takes a server that does not speak HTTP for a bad answer', async () => {
      const {createServer: createTcpServer} = await import('node:net')
      const server = createTcpServer((socket) => socket.end('SSH-2.0-OpenSSH_9.6\r\n'))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      try {
        const {port} = server.address() as AddressInfo
        const error = await ampError(new AmpClient({server: `http://127.0.0.1:${port}`}).listFunctions())
        expect(error.code).to.equal('bad_answer')
        expect(error.message).to.match(/does not speak HTTP/)
      } finally {
        server.close()
      }
    })
  })
})
