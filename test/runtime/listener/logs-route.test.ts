import {expect} from 'chai'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {createInterface} from 'node:readline'
import {request} from 'undici'

import type {LogCursor, LogLine, LogQuery} from '../../../src/runtime/shared/call-logs.js'
import {AmpError} from '../../../src/runtime/shared/errors.js'
import {type FunctionSpec, type StoredFunction, storedFunction} from '../../../src/runtime/shared/function-spec.js'
import {type ApiContext, createRequestHandler} from '../../../src/runtime/listener/http-api.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {parseLogQuery} from '../../../src/runtime/listener/routes/logs.js'
import {parseSince} from '../../../src/runtime/shared/log-query.js'
import {waitUntil} from '../../helpers/wait.js'

const NOW = Date.parse('2025-01-31T14:00:00.000Z')
const CALL = '3f0c1a0e-6f5e-4d59-a8c8-2b51c1e4f3a2'

const line = (text: string, callId = CALL): LogLine => ({
  time: '2025-01-31T13:59:00.000Z',
  function: 'demo',
  callId,
  worker: 'w-1',
  line: text,
})

/** A reader with scripted lines; with follow, its lines end only when the cursor is closed. */
class FakeReader {
  readonly queries: LogQuery[] = []
  lines: LogLine[] = []
  error?: AmpError
  closed = 0

  async open(query: LogQuery): Promise<LogCursor> {
    if (this.error) throw this.error
    this.queries.push(query)
    let release = () => {}
    const closedPromise = new Promise<void>((resolve) => (release = resolve))
    let closed = false
    const lines = this.lines
    return {
      lines: (async function* () {
        for (const item of lines) yield item
        if (query.follow) await closedPromise
      })(),
      close: () => {
        if (closed) return
        closed = true
        this.closed++
        release()
      },
    }
  }
}

describe('logs route', () => {
  describe('parseSince', () => {
    it('counts a duration back from now', () => {
      expect(parseSince('10m', NOW).toISOString()).to.equal('2025-01-31T13:50:00.000Z')
      expect(parseSince('1h30m', NOW).toISOString()).to.equal('2025-01-31T12:30:00.000Z')
    })

    it('takes an ISO 8601 time as it is', () => {
      expect(parseSince('2025-01-30T08:00:00Z', NOW).toISOString()).to.equal('2025-01-30T08:00:00.000Z')
    })

    it('refuses anything else with a usage error that shows both forms', () => {
      for (const bad of ['10x', 'yesterday', '25h', '2025-13-45T00:00:00Z', '-5m']) {
        expect(() => parseSince(bad, NOW), bad)
          .to.throw(AmpError, /10m.*2025-01-31T14:00:00Z/)
          .with.property('code', 'bad_request')
      }
    })
  })

  describe('parseLogQuery', () => {
    it('reads call, since and follow', () => {
      expect(parseLogQuery('demo', `/x?call=${CALL}&since=5m&follow=true`, NOW)).to.deep.equal({
        function: 'demo',
        callId: CALL,
        since: new Date('2025-01-31T13:55:00.000Z'),
        follow: true,
      })
      expect(parseLogQuery('demo', '/x', NOW)).to.deep.equal({function: 'demo', follow: false})
    })

    it('refuses call ids that could reach a NATS subject as wildcards or tokens', () => {
      for (const bad of ['*', '>', 'a.b', 'a b', 'x'.repeat(65)]) {
        expect(() => parseLogQuery('demo', `/x?call=${encodeURIComponent(bad)}`), bad).to.throw(AmpError, /invalid call id/)
      }
      expect(() => parseLogQuery('Bad.Name', '/x')).to.throw(AmpError, /invalid function name/)
      expect(() => parseLogQuery('demo', '/x?follow=maybe')).to.throw(AmpError, /follow must be true or false/)
    })
  })

  describe('GET /_amp/v1/functions/<name>/logs', () => {
    let server: Server
    let base: string
    let reader: FakeReader
    let draining: boolean
    const specs = new Map<string, StoredFunction>()
    const spec = (name: string) => storedFunction({name, image: 'busybox:1.36', createdAt: '2025-01-01T00:00:00.000Z', updatedAt: '2025-01-01T00:00:00.000Z'})

    beforeEach(async () => {
      reader = new FakeReader()
      draining = false
      specs.clear()
      specs.set('demo', spec('demo'))
      specs.set('logs', spec('logs'))
      const ctx: ApiContext = {
        registry: {get: async (name: string) => specs.get(name)} as unknown as ApiContext['registry'],
        dispatcher: {call: async () => Promise.reject(new Error('no calls here'))},
        maxBodyBytes: 1024,
        logger: silentLogger,
        draining: () => draining,
        logs: reader,
      }
      server = createServer(createRequestHandler(ctx))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/_amp/v1/functions`
    })

    afterEach(async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    })

    it('answers NDJSON, one line object per line, in order', async () => {
      reader.lines = [line('first'), line('with "quotes" and\ttabs'), line('third', 'other-call')]
      const res = await request(`${base}/demo/logs?call=${CALL}&since=2025-01-31T13:00:00Z`)
      expect(res.statusCode).to.equal(200)
      expect(res.headers['content-type']).to.equal('application/x-ndjson')
      const text = await res.body.text()
      expect(text.endsWith('\n')).to.equal(true)
      expect(text.trimEnd().split('\n').map((item) => JSON.parse(item))).to.deep.equal(reader.lines)
      expect(reader.queries).to.deep.equal([
        {function: 'demo', callId: CALL, since: new Date('2025-01-31T13:00:00Z'), follow: false},
      ])
      expect(reader.closed).to.equal(1)
    })

    it('answers 404 for a function that does not exist, without reading the stream', async () => {
      const res = await request(`${base}/tset/logs`)
      expect(res.statusCode).to.equal(404)
      expect(((await res.body.json()) as {error: {code: string}}).error.code).to.equal('function_not_found')
      expect(reader.queries).to.deep.equal([])
    })

    it('answers 400 for a bad call id or since, 405 for anything but GET', async () => {
      const badCall = await request(`${base}/demo/logs?call=a.b`)
      expect(badCall.statusCode).to.equal(400)
      await badCall.body.dump()
      const badSince = await request(`${base}/demo/logs?since=soon`)
      expect(badSince.statusCode).to.equal(400)
      expect(((await badSince.body.json()) as {error: {message: string}}).error.message).to.contain('invalid since')
      const post = await request(`${base}/demo/logs`, {method: 'POST', body: 'x'})
      expect(post.statusCode).to.equal(405)
      expect(post.headers.allow).to.equal('GET')
      await post.body.dump()
      expect(reader.queries).to.deep.equal([])
    })

    it('passes on why the logs cannot be read (no JetStream) as a JSON 503', async () => {
      reader.error = new AmpError('service_unavailable', 'cannot read function logs: the NATS server has no JetStream')
      const res = await request(`${base}/demo/logs`)
      expect(res.statusCode).to.equal(503)
      const body = (await res.body.json()) as {error: {code: string; message: string}}
      expect(body.error).to.include({code: 'service_unavailable'})
      expect(body.error.message).to.contain('JetStream')
    })

    it('keeps a follow open, with headers sent at once, and ends it when the listener drains', async () => {
      reader.lines = [line('before')]
      const res = await request(`${base}/demo/logs?follow=true`)
      expect(res.statusCode).to.equal(200)
      const lines = createInterface({input: res.body})[Symbol.asyncIterator]()
      expect(JSON.parse((await lines.next()).value).line).to.equal('before')
      const started = Date.now()
      draining = true
      expect((await lines.next()).done).to.equal(true)
      expect(Date.now() - started).to.be.below(2000)
      expect(reader.closed).to.equal(1)
    })

    it('closes the cursor when a following client goes away', async () => {
      reader.lines = [line('before')]
      const res = await request(`${base}/demo/logs?follow=1`)
      const lines = createInterface({input: res.body})[Symbol.asyncIterator]()
      await lines.next()
      res.body.destroy()
      await waitUntil('the cursor to be closed', () => reader.closed > 0, 2000, 20)
      expect(reader.closed).to.equal(1)
    })

    it('still serves a function named "logs" at its own path', async () => {
      const res = await request(`${base}/logs`)
      expect(res.statusCode).to.equal(200)
      expect(((await res.body.json()) as FunctionSpec).name).to.equal('logs')
    })
  })
})
