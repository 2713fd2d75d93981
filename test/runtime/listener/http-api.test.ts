import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {createServer, request, type IncomingHttpHeaders, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {Readable} from 'node:stream'
import {request as undiciRequest} from 'undici'

import type {CallResult} from '../../../src/runtime/listener/dispatcher.js'
import {AmpError} from '../../../src/runtime/shared/errors.js'
import {applyPatch, type FunctionPatch, publicSpec, type NewFunction, type StoredFunction, storedFunction} from '../../../src/runtime/shared/function-spec.js'
import {createRequestHandler, RESULT_MEDIA_TYPE, type ApiContext} from '../../../src/runtime/listener/http-api.js'
import {createLogger} from '../../../src/runtime/shared/logger.js'
import {waitUntil} from '../../helpers/wait.js'

const MAX_BODY = 1024 * 1024
const CALL_ID = /^[0-9a-f-]{36}$/

/** An in-memory registry with the same contract as the etcd one; `down` makes every operation fail like etcd would. */
class MemoryRegistry {
  readonly specs = new Map<string, StoredFunction>()
  readonly ops: string[] = []
  down = false
  private clock = 0

  private check(op: string): void {
    this.ops.push(op)
    if (this.down) throw new AmpError('registry_unavailable', 'function registry (etcd) unavailable: connection refused')
  }

  async get(name: string) {
    this.check(`get ${name}`)
    return this.specs.get(name)
  }

  async list() {
    this.check('list')
    return [...this.specs.values()].sort((a, b) => a.name.localeCompare(b.name))
  }

  async put(spec: NewFunction, replace: boolean) {
    this.check(`put ${spec.name} replace=${replace}`)
    const now = new Date(Date.UTC(2024, 0, 1, 0, 0, ++this.clock)).toISOString()
    const previous = this.specs.get(spec.name)
    if (previous && !replace) throw new AmpError('function_exists', `function ${spec.name} already exists`)
    const stored = {...spec, createdAt: previous?.createdAt ?? now, updatedAt: now}
    this.specs.set(spec.name, stored)
    return {spec: stored, created: !previous}
  }

  async update(name: string, patch: FunctionPatch) {
    this.check(`update ${name} ${JSON.stringify(patch)}`)
    const previous = this.specs.get(name)
    if (!previous) return undefined
    const stored = applyPatch(previous, patch, new Date(Date.UTC(2024, 0, 1, 0, 0, ++this.clock)).toISOString())
    this.specs.set(name, stored)
    return stored
  }

  async remove(name: string) {
    this.check(`remove ${name}`)
    const previous = this.specs.get(name)
    this.specs.delete(name)
    return previous
  }

  add(name: string, image = 'busybox:1.36', env: Record<string, string> = {}): StoredFunction {
    const spec = storedFunction({name, image, env, createdAt: 'c', updatedAt: 'u'})
    this.specs.set(name, spec)
    return spec
  }
}

interface DispatchedCall {
  callId: string
  spec: StoredFunction
  input: Buffer
}

/** A dispatcher whose answer each test sets, recording what it was asked. */
class ScriptedDispatcher {
  readonly calls: DispatchedCall[] = []
  answer: (call: DispatchedCall) => Promise<CallResult> = async (call) => result(call, {stdout: call.input})

  async call(callId: string, spec: StoredFunction, input: Uint8Array): Promise<CallResult> {
    const call = {callId, spec, input: Buffer.from(input)}
    this.calls.push(call)
    return this.answer(call)
  }
}

function result(call: DispatchedCall, overrides: Partial<CallResult> = {}): CallResult {
  return {
    callId: call.callId,
    function: call.spec.name,
    exitCode: 0,
    stdout: Buffer.alloc(0),
    stderr: Buffer.alloc(0),
    stderrTruncated: false,
    durationMs: 12,
    worker: 'worker-1',
    ...overrides,
  }
}

interface Reply {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  json: () => any // eslint-disable-line @typescript-eslint/no-explicit-any
}

interface SendOptions {
  headers?: Record<string, string | number>
  body?: Buffer | string
  /** Sent with Transfer-Encoding: chunked, one write per element. */
  chunks?: Buffer[]
}

describe('http-api', () => {
  let server: Server
  let base: string
  let registry: MemoryRegistry
  let dispatcher: ScriptedDispatcher
  let draining: boolean
  /** Every line the listener logged, debug included. */
  let logged: string[]
  /** Functions the API reported changed (the listener tells the workers, to drop their pre-started containers). */
  let changed: string[]

  beforeEach(async () => {
    logged = []
    changed = []
    registry = new MemoryRegistry()
    dispatcher = new ScriptedDispatcher()
    draining = false
    const ctx: ApiContext = {
      registry,
      dispatcher,
      maxBodyBytes: MAX_BODY,
      logger: createLogger({level: 'debug', write: (line) => logged.push(line)}),
      draining: () => draining,
      functionChanged: (name) => changed.push(name),
    }
    server = createServer(createRequestHandler(ctx))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  afterEach(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  function send(method: string, path: string, options: SendOptions = {}): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const headers = {...options.headers}
      // Frame a fixed body explicitly: node does not for GET or DELETE.
      if (options.body !== undefined) headers['content-length'] ??= Buffer.byteLength(options.body)
      const req = request(`${base}${path}`, {method, headers, agent: false}, (res) => {
        const parts: Buffer[] = []
        res.on('data', (chunk: Buffer) => parts.push(chunk))
        res.on('error', reject)
        res.on('end', () => {
          const body = Buffer.concat(parts)
          resolve({status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8'))})
        })
      })
      // The server may answer (413) and close before all of a large body is written; the answer is what counts.
      req.on('error', (error) => reject(error))
      if (options.chunks) {
        for (const chunk of options.chunks) req.write(chunk)
        req.end()
      } else {
        req.end(options.body)
      }
    })
  }

  /** Checks the error envelope: status, JSON body with code and the call id that is also in the header. */
  function expectError(reply: Reply, status: number, code: string): {code: string; message: string; callId: string} {
    expect(reply.status, reply.body.toString()).to.equal(status)
    expect(reply.headers['content-type']).to.equal('application/json')
    expect(reply.headers['amp-error-code']).to.equal(code)
    expect(reply.headers['amp-call-id']).to.match(CALL_ID)
    const {error} = reply.json()
    expect(error.code).to.equal(code)
    expect(error.callId).to.equal(reply.headers['amp-call-id'])
    expect(error.message).to.be.a('string').and.not.contain('\n')
    expect(reply.headers).to.not.have.property('amp-exit-code')
    return error
  }

  describe('GET /_amp/v1/health', () => {
    it('answers 200 ok, with a call id', async () => {
      const reply = await send('GET', '/_amp/v1/health')
      expect(reply.status).to.equal(200)
      expect(reply.json()).to.deep.equal({status: 'ok'})
      expect(reply.headers['amp-call-id']).to.match(CALL_ID)
    })

    it('answers HEAD too', async () => {
      expect((await send('HEAD', '/_amp/v1/health')).status).to.equal(200)
    })

    it('answers 503 while draining, so load balancers stop sending', async () => {
      draining = true
      const reply = await send('GET', '/_amp/v1/health')
      expect(reply.status).to.equal(503)
      expect(reply.json()).to.deep.equal({status: 'draining'})
    })

    it('answers 405 with Allow to other methods', async () => {
      const reply = await send('POST', '/_amp/v1/health')
      expectError(reply, 405, 'method_not_allowed')
      expect(reply.headers.allow).to.equal('GET, HEAD')
    })
  })

  describe('function API', () => {
    it('GET /_amp/v1/functions lists the functions sorted by name', async () => {
      registry.add('zeta')
      registry.add('alpha')
      registry.add('a-b')
      const reply = await send('GET', '/_amp/v1/functions')
      expect(reply.status).to.equal(200)
      expect(reply.headers['content-type']).to.equal('application/json')
      expect(reply.json().functions.map((spec: {name: string}) => spec.name)).to.deep.equal(['a-b', 'alpha', 'zeta'])
    })

    it('GET /_amp/v1/functions answers 405 to POST', async () => {
      const reply = await send('POST', '/_amp/v1/functions', {body: '{}'})
      expectError(reply, 405, 'method_not_allowed')
      expect(reply.headers.allow).to.equal('GET')
    })

    it('GET /_amp/v1/functions/<name> returns the spec, or 404', async () => {
      const spec = registry.add('echo')
      const found = await send('GET', '/_amp/v1/functions/echo')
      expect(found.status).to.equal(200)
      expect(found.json()).to.deep.equal(publicSpec(spec))
      const error = expectError(await send('GET', '/_amp/v1/functions/nope'), 404, 'function_not_found')
      expect(error.message).to.contain('nope')
    })

    it('answers 404 for an invalid name without asking the registry', async () => {
      expectError(await send('GET', '/_amp/v1/functions/Bad_Name'), 404, 'function_not_found')
      expectError(await send('DELETE', '/_amp/v1/functions/a%20b'), 404, 'function_not_found')
      expect(registry.ops).to.deep.equal([])
    })

    it('PUT creates a function with the default timeout and network: 201', async () => {
      const reply = await send('PUT', '/_amp/v1/functions/echo', {body: JSON.stringify({image: 'amp-test/cat:1'})})
      expect(reply.status).to.equal(201)
      const spec = reply.json()
      expect(spec).to.include({name: 'echo', image: 'amp-test/cat:1', timeoutMs: 30_000, network: 'none'})
      expect(spec.createdAt).to.equal(spec.updatedAt)
      expect(registry.ops).to.deep.equal(['put echo replace=false'])
      expect(publicSpec(registry.specs.get('echo')!)).to.deep.equal(spec)
    })

    it('PUT keeps the given timeout and network', async () => {
      const body = JSON.stringify({image: 'busybox', timeoutMs: 1500, network: 'bridge'})
      const reply = await send('PUT', '/_amp/v1/functions/echo', {body})
      expect(reply.status).to.equal(201)
      expect(reply.json()).to.include({timeoutMs: 1500, network: 'bridge'})
    })

    it('PUT keeps reuse and reuseMaxCalls, and gives a function without them a fresh container per call', async () => {
      const warm = await send('PUT', '/_amp/v1/functions/warm', {body: JSON.stringify({image: 'busybox', reuse: true, reuseMaxCalls: 10, prestart: 1})})
      expect(warm.status).to.equal(201)
      expect(warm.json()).to.include({reuse: true, reuseMaxCalls: 10, prestart: 1})
      expect(registry.specs.get('warm')).to.include({reuse: true, reuseMaxCalls: 10, prestart: 1})
      const plain = await send('PUT', '/_amp/v1/functions/plain', {body: JSON.stringify({image: 'busybox'})})
      expect(plain.json()).to.include({reuse: false, reuseMaxCalls: 1000})
    })

    it('PUT answers 400 for reuse with prestart 0, storing nothing, also when replacing', async () => {
      registry.add('echo')
      const body = JSON.stringify({image: 'busybox', reuse: true, prestart: 0})
      for (const path of ['/_amp/v1/functions/warm', '/_amp/v1/functions/echo?replace=true']) {
        const error = expectError(await send('PUT', path, {body}), 400, 'bad_request')
        expect(error.message).to.equal('reuse needs prestart of at least 1 (the most warm containers a worker keeps)')
      }
      expect(registry.ops).to.deep.equal([])
      expect(registry.specs.get('echo')).to.include({reuse: false, prestart: 2})
    })

    it('PUT on an existing name answers 409 unless ?replace=true, which answers 200', async () => {
      const body = JSON.stringify({image: 'busybox:1'})
      expect((await send('PUT', '/_amp/v1/functions/echo', {body})).status).to.equal(201)
      const conflict = expectError(
        await send('PUT', '/_amp/v1/functions/echo', {body: JSON.stringify({image: 'busybox:2'})}),
        409,
        'function_exists',
      )
      expect(conflict.message).to.contain('echo')
      expect(registry.specs.get('echo')?.image).to.equal('busybox:1')

      const replaced = await send('PUT', '/_amp/v1/functions/echo?replace=true', {body: JSON.stringify({image: 'busybox:2'})})
      expect(replaced.status).to.equal(200)
      expect(replaced.json().image).to.equal('busybox:2')
      expect(registry.ops.at(-1)).to.equal('put echo replace=true')
    })

    const badPuts: Array<[string, string, string]> = [
      ['a body that is not JSON', 'echo', '{image:'],
      ['a body that is not an object', 'echo', '["busybox"]'],
      ['a missing image', 'echo', '{}'],
      ['an image that is a docker flag', 'echo', JSON.stringify({image: '--privileged'})],
      ['an image with a shell command', 'echo', JSON.stringify({image: 'img;rm -rf /'})],
      ['the host network', 'echo', JSON.stringify({image: 'busybox', network: 'host'})],
      ['a timeout that is not whole milliseconds', 'echo', JSON.stringify({image: 'busybox', timeoutMs: '30s'})],
      ['a timeout over 24h', 'echo', JSON.stringify({image: 'busybox', timeoutMs: 25 * 3_600_000})],
      ['a reuse that is not a boolean', 'echo', JSON.stringify({image: 'busybox', reuse: 'true'})],
      ['a reuseMaxCalls of 0', 'echo', JSON.stringify({image: 'busybox', reuseMaxCalls: 0})],
      ['an invalid name', 'Bad_Name', JSON.stringify({image: 'busybox'})],
    ]
    for (const [why, name, body] of badPuts) {
      it(`PUT answers 400 for ${why}, storing nothing`, async () => {
        expectError(await send('PUT', `/_amp/v1/functions/${name}`, {body}), 400, 'bad_request')
        expect(registry.ops).to.deep.equal([])
      })
    }

    it('PUT answers 400 for an unknown key, as PATCH does, storing nothing (it was dropped with 201)', async () => {
      registry.add('echo')
      const body = JSON.stringify({image: 'x:1', privileged: true})
      for (const [method, path] of [['PUT', '/_amp/v1/functions/new'], ['PUT', '/_amp/v1/functions/echo?replace=true'], ['PATCH', '/_amp/v1/functions/echo']] as const) {
        const error = expectError(await send(method, path, {body}), 400, 'bad_request')
        expect(error.message, `${method} ${path}`).to.match(/^unknown setting "privileged": use image, timeoutMs, network, memoryBytes, cpus, pidsLimit, env, /)
      }
      expect(registry.ops).to.deep.equal([])
      expect(registry.specs.has('new')).to.equal(false)
    })

    it('PUT and PATCH answer 400 for an image docker would refuse, naming the rule, storing nothing (#15)', async () => {
      registry.add('echo')
      const cases: Array<[string, RegExp]> = [
        ['UPPER/x', /^invalid image reference "UPPER\/x": the repository name must be lowercase$/],
        ['busybox:', /: the tag may hold at most 128 characters/],
        ['busybox@sha256:abc', /: a digest is algorithm:hex/],
        ['a//b', /: the repository name has an empty part/],
      ]
      for (const [image, message] of cases) {
        const body = JSON.stringify({image})
        for (const [method, path] of [['PUT', '/_amp/v1/functions/new'], ['PUT', '/_amp/v1/functions/echo?replace=true'], ['PATCH', '/_amp/v1/functions/echo']] as const) {
          expect(expectError(await send(method, path, {body}), 400, 'bad_request').message, `${method} ${path} ${image}`).to.match(message)
        }
      }
      expect(registry.ops).to.deep.equal([])
      expect(registry.specs.get('echo')?.image).to.equal('busybox:1.36')
    })

    it('PUT answers 413 for a definition over 64 KiB', async () => {
      const body = JSON.stringify({image: 'busybox', pad: 'x'.repeat(70 * 1024)})
      expectError(await send('PUT', '/_amp/v1/functions/echo', {body}), 413, 'input_too_large')
      expect(registry.ops).to.deep.equal([])
    })

    it('DELETE returns the removed spec, then 404', async () => {
      const spec = registry.add('echo')
      const removed = await send('DELETE', '/_amp/v1/functions/echo')
      expect(removed.status).to.equal(200)
      expect(removed.json()).to.deep.equal(publicSpec(spec))
      expect(registry.specs.has('echo')).to.equal(false)
      expectError(await send('DELETE', '/_amp/v1/functions/echo'), 404, 'function_not_found')
    })

    it('reports a function replaced, updated or removed as changed (not one created, nor a failed change)', async () => {
      expect((await send('PUT', '/_amp/v1/functions/echo', {body: '{"image":"busybox"}'})).status).to.equal(201)
      expect(changed).to.deep.equal([])
      expect((await send('PUT', '/_amp/v1/functions/echo?replace=true', {body: '{"image":"busybox:2"}'})).status).to.equal(200)
      expect((await send('PATCH', '/_amp/v1/functions/echo', {body: '{"prestart":0}'})).status).to.equal(200)
      expectError(await send('PATCH', '/_amp/v1/functions/echo', {body: '{"prestart":99}'}), 400, 'bad_request')
      expect((await send('DELETE', '/_amp/v1/functions/echo')).status).to.equal(200)
      expectError(await send('DELETE', '/_amp/v1/functions/echo'), 404, 'function_not_found')
      expect(changed).to.deep.equal(['echo', 'echo', 'echo'])
    })

    it('answers 405 with Allow for other methods on a function', async () => {
      const reply = await send('POST', '/_amp/v1/functions/echo', {body: '{}'})
      expectError(reply, 405, 'method_not_allowed')
      expect(reply.headers.allow).to.equal('GET, PUT, PATCH, DELETE')
    })

    it('PATCH changes only the given settings and answers 200 with the function as stored', async () => {
      const before = registry.add('echo')
      const reply = await send('PATCH', '/_amp/v1/functions/echo', {body: JSON.stringify({image: 'busybox:2', timeoutMs: 1500})})
      expect(reply.status).to.equal(200)
      expect(reply.headers['content-type']).to.equal('application/json')
      const spec = reply.json()
      expect(spec).to.deep.equal({...publicSpec(before), image: 'busybox:2', timeoutMs: 1500, updatedAt: spec.updatedAt})
      expect(spec.updatedAt).to.not.equal(before.updatedAt)
      expect(publicSpec(registry.specs.get('echo')!)).to.deep.equal(spec)
      expect(registry.ops).to.deep.equal(['update echo {"image":"busybox:2","timeoutMs":1500}'])
    })

    it('keeps env values for the workers but never answers or logs them: only their names', async () => {
      const secret = 'hunter2-very-secret'
      const body = JSON.stringify({image: 'busybox', memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pidsLimit: 32, env: {TOKEN: secret, LEVEL: 'debug'}})
      const created = await send('PUT', '/_amp/v1/functions/echo', {body})
      expect(created.status).to.equal(201)
      expect(created.json()).to.include({memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pidsLimit: 32})
      expect(created.json().envKeys).to.deep.equal(['LEVEL', 'TOKEN'])
      expect(registry.specs.get('echo')?.env).to.deep.equal({TOKEN: secret, LEVEL: 'debug'})

      const patched = await send('PATCH', '/_amp/v1/functions/echo', {body: JSON.stringify({env: {TOKEN: `${secret}-2`, LEVEL: null}})})
      expect(patched.json().envKeys).to.deep.equal(['TOKEN'])
      const answers = [
        created,
        patched,
        await send('GET', '/_amp/v1/functions/echo'),
        await send('GET', '/_amp/v1/functions'),
        await send('POST', '/echo', {body: 'hi'}),
        await send('PATCH', '/_amp/v1/functions/echo', {body: JSON.stringify({env: {TOKEN: `${secret}\n`}})}),
        await send('PUT', '/_amp/v1/functions/other', {body: JSON.stringify({image: 'busybox', env: {TOKEN: `${secret}\r`}})}),
        await send('DELETE', '/_amp/v1/functions/echo'),
      ]
      expect(dispatcher.calls[0].spec.env).to.deep.equal({TOKEN: `${secret}-2`})
      expect(answers.map((answer) => answer.status)).to.deep.equal([201, 200, 200, 200, 200, 400, 400, 200])
      for (const answer of answers) expect(answer.body.toString()).to.not.contain(secret)
      expect(logged.length).to.be.greaterThan(3)
      expect(logged.join('')).to.not.contain(secret)
    })

    it('PATCH answers 400 when the merged environment would be over 32 KiB, changing nothing', async () => {
      registry.add('echo', 'busybox', {A: 'x'.repeat(20 * 1024)})
      const reply = await send('PATCH', '/_amp/v1/functions/echo', {body: JSON.stringify({env: {B: 'y'.repeat(20 * 1024)}})})
      expect(expectError(reply, 400, 'bad_request').message).to.match(/^the environment is too large/)
      expect(Object.keys(registry.specs.get('echo')!.env)).to.deep.equal(['A'])
    })

    it('PATCH turns reuse on and off and changes reuseMaxCalls, answering the function as stored', async () => {
      registry.add('echo')
      const on = await send('PATCH', '/_amp/v1/functions/echo', {body: JSON.stringify({reuse: true, reuseMaxCalls: 5})})
      expect(on.status).to.equal(200)
      expect(on.json()).to.include({reuse: true, reuseMaxCalls: 5, prestart: 2})
      const off = await send('PATCH', '/_amp/v1/functions/echo', {body: JSON.stringify({reuse: false})})
      expect(off.json()).to.include({reuse: false, reuseMaxCalls: 5})
      expect(registry.specs.get('echo')).to.include({reuse: false, reuseMaxCalls: 5})
    })

    it('PATCH answers 400 when the function after it would have reuse with prestart 0, changing nothing', async () => {
      const warm = storedFunction({name: 'warm', image: 'busybox', reuse: true, createdAt: 'c', updatedAt: 'u'})
      const cold = storedFunction({name: 'cold', image: 'busybox', prestart: 0, createdAt: 'c', updatedAt: 'u'})
      registry.specs.set('warm', warm)
      registry.specs.set('cold', cold)
      for (const [name, body] of [['warm', {prestart: 0}], ['cold', {reuse: true}], ['cold', {reuse: true, prestart: 0}]] as const) {
        const reply = await send('PATCH', `/_amp/v1/functions/${name}`, {body: JSON.stringify(body)})
        expect(expectError(reply, 400, 'bad_request').message, JSON.stringify(body)).to.match(/^reuse needs prestart of at least 1/)
      }
      expect(registry.specs.get('warm')).to.deep.equal(warm)
      expect(registry.specs.get('cold')).to.deep.equal(cold)
      // Both at once, the other way round, is fine.
      expect((await send('PATCH', '/_amp/v1/functions/warm', {body: '{"reuse":false,"prestart":0}'})).json()).to.include({reuse: false, prestart: 0})
    })

    it('PATCH answers 404 for a function that does not exist, creating nothing', async () => {
      expectError(await send('PATCH', '/_amp/v1/functions/echo', {body: '{"network":"bridge"}'}), 404, 'function_not_found')
      expect(registry.specs.has('echo')).to.equal(false)
    })

    const badPatches: Array<[string, string, string]> = [
      ['a body that is not JSON', 'echo', '{image:'],
      ['a body that is not an object', 'echo', '"busybox:2"'],
      ['nothing to change', 'echo', '{}'],
      ['an unknown (misspelt) setting', 'echo', JSON.stringify({timeout: 5000})],
      ['a misspelt reuse setting', 'echo', JSON.stringify({reuseMaxCall: 5})],
      ['a reuse that is not a boolean', 'echo', JSON.stringify({reuse: 1})],
      ['a reuseMaxCalls over 1000000', 'echo', JSON.stringify({reuseMaxCalls: 1_000_001})],
      ['an image that is a docker flag', 'echo', JSON.stringify({image: '--privileged'})],
      ['the host network', 'echo', JSON.stringify({network: 'host'})],
      ['a timeout that is not whole milliseconds', 'echo', JSON.stringify({timeoutMs: '30s'})],
      ['an invalid name', 'Bad_Name', JSON.stringify({image: 'busybox'})],
    ]
    for (const [why, name, body] of badPatches) {
      it(`PATCH answers 400 for ${why}, changing nothing`, async () => {
        const before = registry.add('echo')
        const error = expectError(await send('PATCH', `/_amp/v1/functions/${name}`, {body}), 400, 'bad_request')
        expect(error.message).to.not.equal('')
        expect(registry.ops).to.deep.equal([])
        expect(registry.specs.get('echo')).to.deep.equal(before)
      })
    }

    it('PATCH while a call runs: the call keeps the settings it was dispatched with, the next call gets the new ones', async () => {
      registry.add('echo', 'busybox:1')
      let release!: () => void
      const held = new Promise<void>((resolve) => (release = resolve))
      dispatcher.answer = async (call) => {
        if (call.spec.image === 'busybox:1') await held
        return result(call, {stdout: Buffer.from(call.spec.image)})
      }
      const running = send('POST', '/echo', {body: 'x'})
      await waitUntil('the first call at the dispatcher', () => dispatcher.calls.length > 0, 5000, 5)
      expect((await send('PATCH', '/_amp/v1/functions/echo', {body: '{"image":"busybox:2"}'})).status).to.equal(200)
      const next = await send('POST', '/echo', {body: 'y'})
      release()
      expect((await running).body.toString()).to.equal('busybox:1')
      expect(next.body.toString()).to.equal('busybox:2')
    })

    it('answers 503 registry_unavailable when etcd is down', async () => {
      registry.down = true
      expectError(await send('GET', '/_amp/v1/functions'), 503, 'registry_unavailable')
      expectError(await send('PUT', '/_amp/v1/functions/x', {body: '{"image":"busybox"}'}), 503, 'registry_unavailable')
      expectError(await send('DELETE', '/_amp/v1/functions/x'), 503, 'registry_unavailable')
      expectError(await send('PATCH', '/_amp/v1/functions/x', {body: '{"image":"busybox"}'}), 503, 'registry_unavailable')
      expectError(await send('POST', '/x', {body: 'in'}), 503, 'registry_unavailable')
      expect(dispatcher.calls).to.deep.equal([])
    })

    for (const path of ['/_amp/', '/_amp/v1', '/_amp/v2/functions', '/_amp/v1/functionsx', '/_amp/v1/health/x', '/']) {
      it(`answers 404 not_found for ${path}, whatever the method, and never invokes`, async () => {
        registry.add('v1')
        registry.add('functionsx')
        for (const method of ['GET', 'POST']) expectError(await send(method, path, {body: 'x'}), 404, 'not_found')
        expect(dispatcher.calls).to.deep.equal([])
      })
    }

    it('never invokes for /_amp with no slash either', async () => {
      expectError(await send('POST', '/_amp', {body: 'x'}), 404, 'function_not_found')
      expect(dispatcher.calls).to.deep.equal([])
    })
  })

  describe('POST /<function>', () => {
    beforeEach(() => registry.add('echo'))

    it('passes a binary body to the dispatcher and back byte for byte: 200 with the call headers', async () => {
      const input = Buffer.concat([Buffer.from(Array.from({length: 256}, (_, i) => i)), randomBytes(256 * 1024)])
      const reply = await send('POST', '/echo', {body: input, headers: {'content-type': 'application/octet-stream'}})
      expect(reply.status).to.equal(200)
      expect(Buffer.compare(reply.body, input)).to.equal(0)
      expect(reply.headers['content-type']).to.equal('application/octet-stream')
      expect(reply.headers['amp-exit-code']).to.equal('0')
      expect(reply.headers['amp-duration-ms']).to.equal('12')
      expect(reply.headers['amp-worker']).to.equal('worker-1')
      expect(reply.headers['amp-stderr-size']).to.equal('0')

      expect(dispatcher.calls).to.have.length(1)
      const [call] = dispatcher.calls
      expect(call.callId).to.equal(reply.headers['amp-call-id'])
      expect(call.spec).to.deep.equal(registry.specs.get('echo'))
      expect(Buffer.compare(call.input, input)).to.equal(0)
    })

    it('takes a chunked body under the limit whole', async () => {
      const chunks = [randomBytes(1000), randomBytes(70_000), randomBytes(3)]
      const reply = await send('POST', '/echo', {chunks})
      expect(reply.status).to.equal(200)
      expect(Buffer.compare(dispatcher.calls[0].input, Buffer.concat(chunks))).to.equal(0)
    })

    it('takes an empty body', async () => {
      const reply = await send('POST', '/echo')
      expect(reply.status).to.equal(200)
      expect(reply.body).to.have.length(0)
      expect(dispatcher.calls[0].input).to.have.length(0)
    })

    it('ignores the query string when finding the function', async () => {
      expect((await send('POST', '/echo?x=1', {body: 'a'})).status).to.equal(200)
    })

    it('gives every response its own call id', async () => {
      const ids = new Set<string>()
      for (let i = 0; i < 5; i++) ids.add(String((await send('POST', '/echo', {body: 'x'})).headers['amp-call-id']))
      expect(ids.size).to.equal(5)
    })

    it('answers 500 with the exit code and the stdout when the function exits non-zero', async () => {
      dispatcher.answer = async (call) =>
        result(call, {exitCode: 3, stdout: Buffer.from('partial'), stderr: Buffer.from('boom')})
      const reply = await send('POST', '/echo', {body: 'in'})
      expect(reply.status).to.equal(500)
      expect(reply.headers['amp-exit-code']).to.equal('3')
      expect(reply.headers['amp-stderr-size']).to.equal('4')
      expect(reply.headers).to.not.have.property('amp-error-code')
      expect(reply.body.toString()).to.equal('partial')
    })

    it('answers with the result envelope when asked for it, 200 and 500 alike', async () => {
      const stdout = Buffer.from([0, 255, 1, 254])
      dispatcher.answer = async (call) =>
        result(call, {exitCode: 0, stdout, stderr: Buffer.from('log line'), stderrTruncated: true, durationMs: 7})
      const ok = await send('POST', '/echo', {body: 'in', headers: {accept: RESULT_MEDIA_TYPE}})
      expect(ok.status).to.equal(200)
      expect(ok.headers['content-type']).to.equal(RESULT_MEDIA_TYPE)
      const envelope = ok.json()
      expect(envelope).to.deep.equal({
        callId: ok.headers['amp-call-id'],
        function: 'echo',
        exitCode: 0,
        stdout: stdout.toString('base64'),
        stderr: Buffer.from('log line').toString('base64'),
        stderrTruncated: true,
        durationMs: 7,
        worker: 'worker-1',
      })
      expect(Buffer.compare(Buffer.from(envelope.stdout, 'base64'), stdout)).to.equal(0)

      dispatcher.answer = async (call) => result(call, {exitCode: 42, stderr: Buffer.from('bad')})
      const failed = await send('POST', '/echo', {body: 'in', headers: {accept: `application/json, ${RESULT_MEDIA_TYPE}`}})
      expect(failed.status).to.equal(500)
      expect(failed.headers['amp-exit-code']).to.equal('42')
      expect(failed.json()).to.include({exitCode: 42, stderr: Buffer.from('bad').toString('base64')})
    })

    it('answers 404 for an unknown function without reading on to the dispatcher', async () => {
      const error = expectError(await send('POST', '/nope', {body: 'x'}), 404, 'function_not_found')
      expect(error.message).to.contain('nope')
      expectError(await send('POST', '/a/b', {body: 'x'}), 404, 'function_not_found')
      expect(dispatcher.calls).to.deep.equal([])
    })

    it('answers 405 with Allow: POST for other methods', async () => {
      for (const method of ['GET', 'PUT', 'DELETE']) {
        const reply = await send(method, '/echo')
        expectError(reply, 405, 'method_not_allowed')
        expect(reply.headers.allow).to.equal('POST')
      }
      expect(dispatcher.calls).to.deep.equal([])
    })

    it('answers 413 naming the limit when Content-Length is over it, without calling a worker', async () => {
      const reply = await send('POST', '/echo', {body: Buffer.alloc(MAX_BODY + 1)})
      const error = expectError(reply, 413, 'input_too_large')
      expect(error.message).to.contain('1 MiB')
      expect(reply.headers.connection).to.equal('close')
      expect(dispatcher.calls).to.deep.equal([])
    })

    it('answers 413 when a chunked body grows over the limit, without calling a worker', async () => {
      const chunks = Array.from({length: 5}, () => Buffer.alloc(256 * 1024, 7))
      const reply = await send('POST', '/echo', {chunks})
      const error = expectError(reply, 413, 'input_too_large')
      expect(error.message).to.contain('1 MiB')
      expect(dispatcher.calls).to.deep.equal([])
    })

    it('gets the 413 to a client (undici, as the CLI) still streaming a much larger body, not a cut connection', async () => {
      let sent = 0
      async function* body() {
        for (let i = 0; i < 64; i++) {
          sent++
          yield Buffer.alloc(256 * 1024, 7)
        }
      }
      const response = await undiciRequest(`${base}/echo`, {method: 'POST', body: Readable.from(body())})
      const reply = JSON.parse(await response.body.text())
      expect(response.statusCode).to.equal(413)
      expect(reply.error.code).to.equal('input_too_large')
      expect(reply.error.callId).to.equal(response.headers['amp-call-id'])
      // The listener read (and dropped) the rest, so the client could finish sending and read the answer.
      expect(sent).to.equal(64)
      expect(dispatcher.calls).to.deep.equal([])
    })

    it('takes a body of exactly the limit', async () => {
      const reply = await send('POST', '/echo', {body: Buffer.alloc(MAX_BODY, 1)})
      expect(reply.status).to.equal(200)
      expect(reply.body).to.have.length(MAX_BODY)
    })

    const failures: Array<[number, AmpError]> = [
      [503, new AmpError('no_worker', 'no worker is running: start one with `amp worker start`')],
      [502, new AmpError('function_failed_to_run', 'Error response from daemon: No such image: busybox:1.36')],
      [504, new AmpError('function_timeout', 'function echo timed out after 30s; its container was killed')],
    ]
    for (const [status, failure] of failures) {
      it(`answers ${status} ${failure.code} with the reason when the dispatcher fails that way`, async () => {
        dispatcher.answer = async () => {
          throw failure
        }
        const reply = await send('POST', '/echo', {body: 'in'})
        const error = expectError(reply, status, failure.code)
        expect(error.message).to.equal(failure.message)
        if (status === 503) expect(reply.headers['retry-after']).to.equal('1')
        else expect(reply.headers).to.not.have.property('retry-after')
      })
    }

    it('answers 500 internal, with no exit code, when the dispatcher breaks unexpectedly', async () => {
      dispatcher.answer = async () => {
        throw new Error('secret detail that must not leak')
      }
      const reply = await send('POST', '/echo', {body: 'in'})
      const error = expectError(reply, 500, 'internal')
      expect(error.message).to.not.contain('secret')
    })

    it('answers 503 with Retry-After while draining, without calling a worker', async () => {
      draining = true
      const reply = await send('POST', '/echo', {body: 'in'})
      const error = expectError(reply, 503, 'no_worker')
      expect(error.message).to.contain('shutting down')
      expect(reply.headers['retry-after']).to.equal('1')
      expect(dispatcher.calls).to.deep.equal([])
    })
  })
})
