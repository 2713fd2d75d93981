import {expect} from 'chai'
import {createServer, type IncomingMessage, type Server, ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {request} from 'undici'

import {accessFor, bearerToken, createAuthorizer, type AuthOptions} from '../../../src/runtime/listener/auth.js'
import {AmpError, HTTP_STATUS} from '../../../src/runtime/shared/errors.js'
import {publicSpec, storedFunction} from '../../../src/runtime/shared/function-spec.js'
import {createRequestHandler, RESULT_MEDIA_TYPE} from '../../../src/runtime/listener/http-api.js'
import {createLogger} from '../../../src/runtime/shared/logger.js'

const ADMIN = 'admin-Secret-7f3a9c'
const INVOKE = 'invoke-Secret-2b8e1d'
const SPEC = storedFunction({name: 'echo', image: 'busybox:1.36', createdAt: 'c', updatedAt: 'u'})

/** A request with only the Authorization header set, for the authorizer alone. */
function fakeRequest(authorization?: string): {req: IncomingMessage; res: ServerResponse} {
  const req = {headers: authorization === undefined ? {} : {authorization}} as IncomingMessage
  return {req, res: new ServerResponse(req)}
}

describe('auth', () => {
  describe('accessFor', () => {
    it('leaves the health checks open, guards the rest of /_amp/ as admin, and treats anything else as a call', () => {
      for (const path of ['/_amp/v1/health', '/_amp/v1/health/live', '/_amp/v1/health/ready']) expect(accessFor(path), path).to.equal('open')
      for (const path of ['/_amp/v1/functions', '/_amp/v1/functions/echo', '/_amp/v1/functions/echo/logs', '/_amp/v1/metrics', '/_amp/v1/nope', '/_amp/v1/health/other']) {
        expect(accessFor(path), path).to.equal('admin')
      }
      for (const path of ['/echo', '/', '/_amp']) expect(accessFor(path), path).to.equal('invoke')
    })
  })

  describe('bearerToken', () => {
    it('takes the token of "Bearer <token>", the scheme in any case', () => {
      expect(bearerToken('Bearer abc.DEF-1')).to.equal('abc.DEF-1')
      expect(bearerToken('bearer abc')).to.equal('abc')
      expect(bearerToken('BEARER  abc ')).to.equal('abc')
    })

    it('gives nothing for a missing, empty or other scheme', () => {
      for (const header of [undefined, '', 'Bearer', 'Bearer ', 'Basic YWRtaW46cw==', 'abc', 'Bearer a b', 'Token abc']) {
        expect(bearerToken(header), String(header)).to.equal(undefined)
      }
    })
  })

  describe('createAuthorizer', () => {
    const check = (options: AuthOptions, path: string, authorization?: string) => {
      const {req, res} = fakeRequest(authorization)
      try {
        createAuthorizer(options)(req, res, path)
        return {code: 'ok', header: res.getHeader('www-authenticate')}
      } catch (error) {
        expect(error).to.be.instanceOf(AmpError)
        return {code: (error as AmpError).code, message: (error as AmpError).message, header: res.getHeader('www-authenticate')}
      }
    }

    it('lets everything in without tokens', () => {
      for (const path of ['/_amp/v1/functions', '/echo', '/_amp/v1/metrics']) expect(check({}, path).code).to.equal('ok')
    })

    it('with a token: 401 with WWW-Authenticate when none or a malformed one is sent, 403 for a wrong one', () => {
      const missing = check({token: ADMIN}, '/_amp/v1/functions')
      expect(missing).to.include({code: 'unauthorized', header: 'Bearer realm="amp"'})
      expect(missing.message).to.contain('Authorization: Bearer <token>')
      expect(check({token: ADMIN}, '/_amp/v1/functions', `Basic ${ADMIN}`)).to.include({code: 'unauthorized', header: 'Bearer realm="amp"'})
      const wrong = check({token: ADMIN}, '/_amp/v1/metrics', 'Bearer nope')
      expect(wrong.code).to.equal('forbidden')
      expect(wrong.header).to.equal(undefined)
      // A prefix or an extension of the token is just as wrong.
      expect(check({token: ADMIN}, '/_amp/v1/functions', `Bearer ${ADMIN.slice(0, -1)}`).code).to.equal('forbidden')
      expect(check({token: ADMIN}, '/_amp/v1/functions', `Bearer ${ADMIN}x`).code).to.equal('forbidden')
      expect(check({token: ADMIN}, '/_amp/v1/functions', `Bearer ${ADMIN}`).code).to.equal('ok')
    })

    it('with only the admin token, calls and health checks stay open', () => {
      expect(check({token: ADMIN}, '/echo').code).to.equal('ok')
      expect(check({token: ADMIN}, '/_amp/v1/health/ready').code).to.equal('ok')
    })

    it('with an invoke token, calls take it or the admin token, and the function API refuses it', () => {
      const both = {token: ADMIN, invokeToken: INVOKE}
      expect(check(both, '/echo').code).to.equal('unauthorized')
      expect(check(both, '/echo', `Bearer ${INVOKE}`).code).to.equal('ok')
      expect(check(both, '/echo', `Bearer ${ADMIN}`).code).to.equal('ok')
      expect(check(both, '/echo', 'Bearer nope').code).to.equal('forbidden')
      const refused = check(both, '/_amp/v1/functions', `Bearer ${INVOKE}`)
      expect(refused.code).to.equal('forbidden')
      expect(refused.message).to.contain('may only call functions')
      expect(check(both, '/_amp/v1/health/live').code).to.equal('ok')
    })
  })

  describe('over HTTP', () => {
    let server: Server
    let base: string
    let lines: string[]
    let invoked: number

    before(async () => {
      lines = []
      invoked = 0
      const handler = createRequestHandler({
        registry: {
          get: async (name) => (name === 'echo' ? SPEC : undefined),
          list: async () => [SPEC],
          put: async () => ({spec: SPEC, created: true}),
          remove: async () => SPEC,
          update: async () => SPEC,
        },
        dispatcher: {
          call: async (callId, spec, input) => {
            invoked++
            return {callId, function: spec.name, exitCode: 0, stdout: Buffer.from(input), stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 1, worker: 'w'}
          },
        },
        maxBodyBytes: 1024 * 1024,
        // debug: everything the listener could log
        logger: createLogger({level: 'debug', write: (line) => lines.push(line)}),
        draining: () => false,
        authorize: createAuthorizer({token: ADMIN, invokeToken: INVOKE}),
      })
      server = createServer(handler)
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    })
    after(() => new Promise((resolve) => server.close(resolve)))

    const send = async (method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, token?: string, body?: string) => {
      const response = await request(`${base}${path}`, {
        method,
        body,
        headers: {...(token === undefined ? {} : {authorization: `Bearer ${token}`}), accept: RESULT_MEDIA_TYPE},
      })
      const text = await response.body.text()
      return {status: response.statusCode, headers: response.headers, text, json: () => JSON.parse(text)}
    }

    it('answers 401 and 403 with the usual error body and Amp-Error-Code, and never reaches the registry or a worker', async () => {
      const before = invoked
      const missing = await send('POST', '/echo', undefined, 'hi')
      expect(missing.status).to.equal(401)
      expect(missing.headers['www-authenticate']).to.equal('Bearer realm="amp"')
      expect(missing.headers['amp-error-code']).to.equal('unauthorized')
      const {error} = missing.json()
      expect(error).to.include({code: 'unauthorized', callId: missing.headers['amp-call-id']})
      expect(error.message).to.be.a('string').and.not.contain('\n')

      const wrong = await send('PUT', '/_amp/v1/functions/echo', 'not-it', '{"image":"busybox"}')
      expect(wrong.status).to.equal(403)
      expect(wrong.json().error.code).to.equal('forbidden')
      expect((await send('GET', '/_amp/v1/functions', INVOKE)).status).to.equal(403)
      // No route is revealed: an unknown /_amp/ path is 401 too, not 404.
      expect((await send('GET', '/_amp/v1/secret')).status).to.equal(401)
      expect(invoked).to.equal(before)
    })

    it('serves the right token, and the health checks without one', async () => {
      expect((await send('GET', '/_amp/v1/functions', ADMIN)).json()).to.deep.equal({functions: [publicSpec(SPEC)]})
      expect((await send('GET', '/_amp/v1/metrics', ADMIN)).status).to.equal(404) // no metrics in this context: past the gate
      const call = await send('POST', '/echo', INVOKE, 'hello')
      expect(call.status).to.equal(200)
      expect(Buffer.from(call.json().stdout, 'base64').toString()).to.equal('hello')
      expect((await send('POST', '/echo', ADMIN, 'x')).status).to.equal(200)
      expect((await send('GET', '/_amp/v1/health/live')).status).to.equal(200)
      expect((await send('GET', '/_amp/v1/health')).status).to.equal(200)
    })

    it('logs refusals without ever writing a token, right or wrong', async () => {
      lines.length = 0
      const wrong = 'wrong-Token-9d9d9d'
      await send('GET', '/_amp/v1/functions', wrong)
      await send('GET', '/_amp/v1/functions')
      await send('POST', '/echo', ADMIN, 'x')
      await send('POST', '/echo', INVOKE, 'x')
      await send('DELETE', '/_amp/v1/functions/echo', ADMIN)
      const log = lines.join('')
      expect(log).to.contain('request refused').and.contain('status=403').and.contain('status=401')
      for (const secret of [ADMIN, INVOKE, wrong]) expect(log).to.not.contain(secret)
    })
  })

  it('unauthorized and forbidden exit 110 and answer 401 and 403', () => {
    expect([new AmpError('unauthorized', 'x').exit, new AmpError('forbidden', 'x').exit]).to.deep.equal([110, 110])
    expect([HTTP_STATUS.unauthorized, HTTP_STATUS.forbidden]).to.deep.equal([401, 403])
  })
})
