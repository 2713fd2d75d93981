import {expect} from 'chai'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {request} from 'undici'

import type {CallResult} from '../../../src/runtime/listener/dispatcher.js'
import {AmpError} from '../../../src/runtime/shared/errors.js'
import {storedFunction, type StoredFunction} from '../../../src/runtime/shared/function-spec.js'
import {createRequestHandler, type ApiContext} from '../../../src/runtime/listener/http-api.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {waitUntil} from '../../helpers/wait.js'

const spec = (name: string): StoredFunction =>
  storedFunction({
    name,
    image: 'img:1',
    timeoutMs: 30_000,
    network: 'none',
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:00:00.000Z',
  })

/** Calls that end only when the test releases them, echoing their input. */
class HeldDispatcher {
  readonly held: Array<() => void> = []
  async call(callId: string, fn: StoredFunction, input: Uint8Array): Promise<CallResult> {
    await new Promise<void>((resolve) => this.held.push(resolve))
    const stdout = Buffer.from(input)
    return {callId, function: fn.name, exitCode: 0, stdout, stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 1, worker: 'w'}
  }
}

describe('http-api under overload and without etcd', () => {
  let server: Server
  let base: string
  let dispatcher: HeldDispatcher
  let etcdAsked: string[]
  let known: Map<string, StoredFunction>
  let inSync: boolean

  async function serve(overrides: Partial<ApiContext>): Promise<void> {
    const registry = {
      async get(name: string) {
        etcdAsked.push(name)
        if (!inSync) throw new AmpError('registry_unavailable', 'function registry (etcd) unavailable: no answer within 4 s')
        return name === 'in-etcd' ? spec(name) : undefined
      },
    } as unknown as ApiContext['registry']
    const ctx: ApiContext = {registry, dispatcher, maxBodyBytes: 1024, logger: silentLogger, draining: () => false, ...overrides}
    server = createServer(createRequestHandler(ctx))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  const functions = {
    lookup: (name: string) => known.get(name),
    assertReachable() {
      if (!inSync) throw new AmpError('registry_unavailable', 'function registry (etcd) unavailable: lost the watch on etcd')
    },
  }

  async function post(name: string, body = 'x') {
    const res = await request(`${base}/${name}`, {method: 'POST', body})
    return {status: res.statusCode, headers: res.headers, text: await res.body.text()}
  }

  /** Posts a call that reaches the dispatcher, lets it finish, and returns the answer. */
  async function released(name: string, body: string) {
    const answer = post(name, body)
    await waitUntil('the call at the dispatcher', () => dispatcher.held.length >= 1, 5000, 5)
    dispatcher.held.shift()!()
    return answer
  }

  beforeEach(() => {
    dispatcher = new HeldDispatcher()
    etcdAsked = []
    known = new Map([['cached', spec('cached')]])
    inSync = true
  })

  afterEach(async () => {
    for (const release of dispatcher.held) release()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  describe('max in flight', () => {
    it('answers 429 with Retry-After at once past the limit, and takes calls again once one ends', async () => {
      await serve({maxInFlight: 2, functions})
      const first = post('cached', 'one')
      const second = post('cached', 'two')
      await waitUntil('two calls at the dispatcher', () => dispatcher.held.length >= 2, 5000, 5)
      const third = await post('cached', 'three')
      expect(third.status).to.equal(429)
      expect(third.headers['retry-after']).to.equal('1')
      expect(third.headers['amp-error-code']).to.equal('overloaded')
      expect(JSON.parse(third.text).error.message).to.equal('this listener is serving its limit of 2 calls at once: try again shortly')
      expect(dispatcher.held).to.have.length(2)

      dispatcher.held.shift()!()
      expect((await first).text).to.equal('one')
      const fourth = post('cached', 'four')
      await waitUntil('the fourth call at the dispatcher', () => dispatcher.held.length >= 2, 5000, 5)
      for (const release of dispatcher.held.splice(0)) release()
      expect((await second).text).to.equal('two')
      expect((await fourth).text).to.equal('four')
    })

    it('counts calls that fail too: a 404 frees its place', async () => {
      await serve({maxInFlight: 1, functions})
      for (let i = 0; i < 3; i++) expect((await post('nowhere')).status).to.equal(404)
    })
  })

  describe('function lookup with the cache', () => {
    it('calls a cached function without asking etcd', async () => {
      await serve({functions})
      expect((await released('cached', 'hi')).status).to.equal(200)
      expect(etcdAsked).to.deep.equal([])
    })

    it('asks etcd for a name it does not know (created a moment ago elsewhere)', async () => {
      await serve({functions})
      expect((await released('in-etcd', 'hi')).status).to.equal(200)
      expect(etcdAsked).to.deep.equal(['in-etcd'])
      expect((await post('nowhere')).status).to.equal(404)
    })

    it('out of touch with etcd: serves cached functions, answers 503 with Retry-After for others without asking etcd', async () => {
      inSync = false
      await serve({functions})
      const unknown = await post('in-etcd')
      expect(unknown.status).to.equal(503)
      expect(unknown.headers['amp-error-code']).to.equal('registry_unavailable')
      expect(unknown.headers['retry-after']).to.equal('1')
      expect(etcdAsked).to.deep.equal([])
      expect((await released('cached', 'still')).text).to.equal('still')
    })
  })
})
