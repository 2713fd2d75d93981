import {expect} from 'chai'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {request} from 'undici'

import {AmpError} from '../../../src/runtime/shared/errors.js'
import {type StoredFunction, storedFunction} from '../../../src/runtime/shared/function-spec.js'
import type {ReadinessReport} from '../../../src/runtime/shared/health.js'
import {checkReadiness} from '../../../src/runtime/shared/health.js'
import {createRequestHandler, type ApiContext} from '../../../src/runtime/listener/http-api.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {ListenerMetrics, Registry} from '../../../src/runtime/shared/metrics.js'
import {startOpsServer} from '../../../src/runtime/shared/ops-server.js'
import {sample} from '../../helpers/prometheus.js'
import {waitUntil} from '../../helpers/wait.js'

async function get(url: string, method: 'GET' | 'HEAD' | 'POST' = 'GET') {
  const res = await request(url, {method})
  const text = await res.body.text()
  return {status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text)}
}

/** The listener's health and metrics routes, and call counting, over a real HTTP server with stub registry and dispatcher. */
describe('listener: health and metrics routes', () => {
  let server: Server
  let url: string
  let state: {nats: boolean; etcd: boolean; draining: boolean}
  let metrics: ListenerMetrics
  let answer: () => Promise<{exitCode: number}>
  const specs = new Map<string, StoredFunction>()

  before(async () => {
    const spec = (name: string) => storedFunction({name, image: 'busybox', timeoutMs: 1000, createdAt: 'c', updatedAt: 'u'})
    specs.set('demo', spec('demo'))
    const registry = {
      get: async (name: string) => specs.get(name),
      list: async () => [...specs.values()],
      put: async () => {
        throw new Error('not used')
      },
      remove: async () => undefined,
      update: async () => undefined,
    }
    const dispatcher = {
      call: async (callId: string, s: StoredFunction) => {
        const {exitCode} = await answer()
        return {callId, function: s.name, exitCode, stdout: Buffer.from('out'), stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 1, worker: 'w'}
      },
    }
    const ctx = {
      registry,
      dispatcher,
      maxBodyBytes: 1024,
      logger: silentLogger,
      draining: () => state.draining,
      readiness: (): Promise<ReadinessReport> =>
        checkReadiness({nats: () => state.nats, etcd: async () => state.etcd}, () => state.draining),
      get metrics() {
        return metrics
      },
    } as unknown as ApiContext
    server = createServer(createRequestHandler(ctx))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  beforeEach(() => {
    state = {nats: true, etcd: true, draining: false}
    metrics = new ListenerMetrics(new Registry(), {natsConnected: () => state.nats, etcdUp: async () => state.etcd, draining: () => state.draining})
    answer = async () => ({exitCode: 0})
  })

  after(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it('answers live with 200 whatever the dependencies say', async () => {
    Object.assign(state, {nats: false, etcd: false, draining: true})
    const reply = await get(`${url}/_amp/v1/health/live`)
    expect(reply.status).to.equal(200)
    expect(reply.json()).to.deep.equal({status: 'ok'})
  })

  it('answers ready 200 with the checks, 503 when etcd or NATS is down, 503 draining', async () => {
    let reply = await get(`${url}/_amp/v1/health/ready`)
    expect(reply.status).to.equal(200)
    expect(reply.json()).to.deep.equal({status: 'ok', checks: {nats: true, etcd: true, draining: false}})

    state.etcd = false
    reply = await get(`${url}/_amp/v1/health/ready`)
    expect(reply.status).to.equal(503)
    expect(reply.json()).to.deep.equal({status: 'unavailable', checks: {nats: true, etcd: false, draining: false}})

    Object.assign(state, {etcd: true, nats: false})
    expect((await get(`${url}/_amp/v1/health/ready`)).json().checks.nats).to.equal(false)

    Object.assign(state, {nats: true, draining: true})
    reply = await get(`${url}/_amp/v1/health/ready`)
    expect(reply.status).to.equal(503)
    expect(reply.json().status).to.equal('draining')
  })

  it('keeps GET /_amp/v1/health as readiness with only the status', async () => {
    expect((await get(`${url}/_amp/v1/health`)).json()).to.deep.equal({status: 'ok'})
    state.etcd = false
    const reply = await get(`${url}/_amp/v1/health`)
    expect(reply.status).to.equal(503)
    expect(reply.json()).to.deep.equal({status: 'unavailable'})
  })

  it('answers 405 to other methods on the health and metrics routes', async () => {
    for (const path of ['/_amp/v1/health/live', '/_amp/v1/health/ready', '/_amp/v1/metrics']) {
      const reply = await get(`${url}${path}`, 'POST')
      expect(reply.status, path).to.equal(405)
      expect(reply.headers.allow).to.equal('GET, HEAD')
    }
  })

  it('serves the metrics in Prometheus text format, counting calls by function and status', async () => {
    await request(`${url}/demo`, {method: 'POST', body: 'in'}).then((res) => res.body.dump())
    answer = async () => ({exitCode: 3})
    await request(`${url}/demo`, {method: 'POST', body: 'in'}).then((res) => res.body.dump())
    answer = async () => {
      throw new AmpError('no_worker', 'no worker is running')
    }
    await request(`${url}/demo`, {method: 'POST', body: 'in'}).then((res) => res.body.dump())
    // Unknown names share one series, so random paths cannot add series.
    for (const name of ['nope', 'other', 'Bad_Name']) {
      await request(`${url}/${name}`, {method: 'POST', body: 'in'}).then((res) => res.body.dump())
    }

    const reply = await get(`${url}/_amp/v1/metrics`)
    expect(reply.status).to.equal(200)
    expect(reply.headers['content-type']).to.match(/^text\/plain; version=0\.0\.4/)
    expect(sample(reply.text, 'amp_listener_calls_total{function="demo",status="200"}')).to.equal(1)
    expect(sample(reply.text, 'amp_listener_calls_total{function="demo",status="500"}')).to.equal(1)
    expect(sample(reply.text, 'amp_listener_calls_total{function="demo",status="503"}')).to.equal(1)
    expect(sample(reply.text, 'amp_listener_calls_total{function="",status="404"}')).to.equal(3)
    expect(reply.text).to.not.match(/function="(nope|other|Bad_Name)"/)
    expect(sample(reply.text, 'amp_listener_call_duration_seconds_count{function="demo"}')).to.equal(3)
    expect(sample(reply.text, 'amp_listener_calls_in_flight')).to.equal(0)
  })

  it('counts a call turned away while draining', async () => {
    state.draining = true
    await request(`${url}/demo`, {method: 'POST', body: 'in'}).then((res) => res.body.dump())
    expect(sample(await metrics.registry.metrics(), 'amp_listener_calls_total{function="",status="503"}')).to.equal(1)
  })

  it('counts a call in flight while it runs', async () => {
    let release!: () => void
    answer = () => new Promise((resolve) => (release = () => resolve({exitCode: 0})))
    const pending = request(`${url}/demo`, {method: 'POST', body: 'in'})
    await waitUntil('the call at the dispatcher', () => release !== undefined, 2000, 10)
    expect(sample(await metrics.registry.metrics(), 'amp_listener_calls_in_flight')).to.equal(1)
    release()
    await (await pending).body.dump()
    expect(sample(await metrics.registry.metrics(), 'amp_listener_calls_in_flight')).to.equal(0)
  })
})

describe('ops server (the worker metrics port)', () => {
  it('serves /metrics, /health/live and /health/ready, and nothing else', async () => {
    const registry = new Registry()
    let ready = true
    const ops = await startOpsServer({
      host: '127.0.0.1',
      port: 0,
      registry,
      readiness: () => checkReadiness({nats: () => ready}, () => false),
    })
    try {
      expect(ops.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
      expect((await get(`${ops.url}/health/live`)).status).to.equal(200)
      expect((await get(`${ops.url}/health/ready`)).json()).to.deep.equal({status: 'ok', checks: {nats: true, draining: false}})
      ready = false
      expect((await get(`${ops.url}/health/ready`)).status).to.equal(503)
      const metrics = await get(`${ops.url}/metrics`)
      expect(metrics.status).to.equal(200)
      expect(metrics.headers['content-type']).to.match(/^text\/plain/)
      expect((await get(`${ops.url}/metrics`, 'HEAD')).status).to.equal(200)
      expect((await get(`${ops.url}/metrics`, 'POST')).status).to.equal(405)
      expect((await get(`${ops.url}/demo`, 'POST')).status).to.equal(404)
      expect((await get(`${ops.url}/`)).status).to.equal(404)
    } finally {
      await ops.close()
      await ops.close() // idempotent
    }
  })

  it('fails with a clear error when the port is taken', async () => {
    const first = await startOpsServer({host: '127.0.0.1', port: 0, registry: new Registry(), readiness: () => checkReadiness({}, () => false)})
    try {
      const port = Number(new URL(first.url).port)
      try {
        await startOpsServer({host: '127.0.0.1', port, registry: new Registry(), readiness: () => checkReadiness({}, () => false)})
        expect.fail('the second server should not start')
      } catch (error) {
        expect(error).to.be.instanceOf(AmpError)
        expect((error as AmpError).message).to.equal(`cannot serve metrics on 127.0.0.1:${port}: the address is already in use`)
      }
    } finally {
      await first.close()
    }
  })
})
