/**
 * Health, readiness and metrics against a real nats-server, etcd and dockerd; and the daemons as
 * processes under a fake systemd notification socket (Type=notify), as systemd runs them.
 */
import {expect} from 'chai'
import {execa, type ResultPromise} from 'execa'
import {request} from 'undici'

import type {Listener} from '../../src/runtime/listener/listener.js'
import {Registry} from '../../src/runtime/shared/metrics.js'
import type {Worker} from '../../src/runtime/worker/worker.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {startNotifySocket} from '../helpers/notify-socket.js'
import {sample} from '../helpers/prometheus.js'
import {DAEMON_KILL_AFTER_MS, DEV} from '../helpers/run-amp-process.js'
import {DOCKER, requireDocker, startEtcd, startNats, type ServiceHandle} from '../helpers/services.js'
import {createFunction, startTestStack, type TestStack} from '../helpers/stack.js'
import {waitFor as eventually} from '../helpers/wait.js'


async function get(url: string) {
  const res = await request(url)
  const text = await res.body.text()
  return {status: res.statusCode, text, json: () => JSON.parse(text)}
}

async function post(url: string, body: string) {
  const res = await request(url, {method: 'POST', body})
  return {status: res.statusCode, text: await res.body.text(), headers: res.headers}
}

/** Waits for a readiness endpoint to answer `status`, and returns its body. */
function readyBecomes(url: string, status: number) {
  return eventually(`${url} to answer ${status}`, async () => {
    const reply = await get(url).catch(() => undefined)
    return reply?.status === status ? reply.json() : undefined
  })
}

describe('health and metrics (integration)', function () {
  this.timeout(120_000)
  let stack: TestStack
  let nats: ServiceHandle
  let etcd: ServiceHandle
  let listener: Listener
  let worker: Worker

  before(async () => {
    stack = await startTestStack({worker: {concurrency: 2, metricsPort: 0}, listener: {metricsRegistry: new Registry()}})
    ;({nats, etcd, listener, worker} = stack)
    for (const [name, image, timeoutMs] of [
      ['cat', TEST_IMAGES.cat, 30_000],
      ['fail', TEST_IMAGES.fail, 30_000],
      ['hang', TEST_IMAGES.sleep, 1000],
      ['slow', TEST_IMAGES.slow, 30_000],
    ] as const) {
      // prestart 0: every call starts its own container, so each has a container start phase to count.
      await createFunction(listener, name, {image, timeoutMs, prestart: 0})
    }
  })

  after(() => stack?.stop())

  it('listener: live and ready while NATS and etcd answer', async () => {
    expect((await get(`${listener.url}/_amp/v1/health/live`)).status).to.equal(200)
    const ready = await get(`${listener.url}/_amp/v1/health/ready`)
    expect(ready.status).to.equal(200)
    expect(ready.json()).to.deep.equal({status: 'ok', checks: {nats: true, etcd: true, draining: false}})
  })

  it('metrics move after real calls: on the listener, and on the worker metrics port', async () => {
    expect(worker.metricsUrl).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect((await post(`${listener.url}/cat`, 'hello')).status).to.equal(200)
    expect((await post(`${listener.url}/cat`, 'again')).status).to.equal(200)
    expect((await post(`${listener.url}/fail`, 'x')).status).to.equal(500)
    expect((await post(`${listener.url}/hang`, 'x')).status).to.equal(504)
    expect((await post(`${listener.url}/no-such-function`, 'x')).status).to.equal(404)

    const l = await get(`${listener.url}/_amp/v1/metrics`)
    expect(l.status).to.equal(200)
    expect(sample(l.text, 'amp_listener_calls_total{function="cat",status="200"}')).to.equal(2)
    expect(sample(l.text, 'amp_listener_calls_total{function="fail",status="500"}')).to.equal(1)
    expect(sample(l.text, 'amp_listener_calls_total{function="hang",status="504"}')).to.equal(1)
    expect(sample(l.text, 'amp_listener_calls_total{function="",status="404"}')).to.equal(1)
    expect(sample(l.text, 'amp_listener_call_duration_seconds_count{function="cat"}')).to.equal(2)
    // The hang call ran for its whole 1 s timeout.
    expect(sample(l.text, 'amp_listener_call_duration_seconds_sum{function="hang"}')).to.be.at.least(1)
    // Phases come from the worker's result headers.
    expect(sample(l.text, 'amp_listener_queue_wait_seconds_count{function="cat"}')).to.equal(2)
    expect(sample(l.text, 'amp_listener_container_start_seconds_count{function="cat"}')).to.equal(2)
    expect(sample(l.text, 'amp_listener_container_start_seconds_sum{function="cat"}')).to.be.above(0)
    expect(sample(l.text, 'amp_listener_container_run_seconds_count{function="cat"}')).to.equal(2)
    expect(sample(l.text, 'amp_listener_calls_in_flight')).to.equal(0)
    expect(sample(l.text, 'amp_listener_nats_connected')).to.equal(1)
    expect(sample(l.text, 'amp_listener_etcd_up')).to.equal(1)

    const w = await get(`${worker.metricsUrl}/metrics`)
    expect(w.status).to.equal(200)
    expect(sample(w.text, 'amp_worker_calls_total{function="cat",result="ok"}')).to.equal(2)
    expect(sample(w.text, 'amp_worker_calls_total{function="fail",result="nonzero_exit"}')).to.equal(1)
    expect(sample(w.text, 'amp_worker_calls_total{function="hang",result="timeout"}')).to.equal(1)
    expect(sample(w.text, 'amp_worker_containers_started_total')).to.equal(4)
    expect(sample(w.text, 'amp_worker_containers_killed_total{reason="timeout"}')).to.equal(1)
    expect(sample(w.text, 'amp_worker_containers_killed_total{reason="shutdown"}')).to.equal(0)
    expect(sample(w.text, 'amp_worker_container_start_seconds_count{function="cat"}')).to.equal(2)
    // Start and run of a call are parts of its whole time.
    const start = sample(w.text, 'amp_worker_container_start_seconds_sum{function="cat"}')!
    const run = sample(w.text, 'amp_worker_container_run_seconds_sum{function="cat"}')!
    expect(start).to.be.above(0)
    expect(start + run).to.be.at.most(sample(l.text, 'amp_listener_call_duration_seconds_sum{function="cat"}')!)
    expect(sample(w.text, 'amp_worker_slots')).to.equal(2)
    expect(sample(w.text, 'amp_worker_slots_used')).to.equal(0)
    expect(sample(w.text, 'amp_worker_nats_connected')).to.equal(1)
    expect(sample(w.text, 'amp_worker_docker_up')).to.equal(1)
    expect(w.text).to.contain('amp_process_resident_memory_bytes')
  })

  it('worker: the metrics port serves live and ready', async () => {
    expect((await get(`${worker.metricsUrl}/health/live`)).status).to.equal(200)
    const ready = await get(`${worker.metricsUrl}/health/ready`)
    expect(ready.status).to.equal(200)
    expect(ready.json()).to.deep.equal({status: 'ok', checks: {nats: true, docker: true, draining: false}})
  })

  it('listener: not ready while etcd is down, ready again when it returns', async () => {
    etcd.kill('SIGKILL')
    const down = await readyBecomes(`${listener.url}/_amp/v1/health/ready`, 503)
    expect(down).to.deep.equal({status: 'unavailable', checks: {nats: true, etcd: false, draining: false}})
    expect((await get(`${listener.url}/_amp/v1/health/live`)).status).to.equal(200)
    expect(sample((await get(`${listener.url}/_amp/v1/metrics`)).text, 'amp_listener_etcd_up')).to.equal(0)
    await etcd.restart()
    expect(await readyBecomes(`${listener.url}/_amp/v1/health/ready`, 200)).to.deep.equal({
      status: 'ok',
      checks: {nats: true, etcd: true, draining: false},
    })
  })

  it('listener and worker: not ready while NATS is down, ready again when it returns', async () => {
    nats.kill('SIGKILL')
    expect((await readyBecomes(`${listener.url}/_amp/v1/health/ready`, 503)).checks).to.deep.equal({nats: false, etcd: true, draining: false})
    expect((await readyBecomes(`${worker.metricsUrl}/health/ready`, 503)).checks).to.deep.equal({nats: false, docker: true, draining: false})
    expect(sample((await get(`${listener.url}/_amp/v1/metrics`)).text, 'amp_listener_nats_connected')).to.equal(0)
    expect(sample((await get(`${worker.metricsUrl}/metrics`)).text, 'amp_worker_nats_connected')).to.equal(0)
    await nats.restart()
    await readyBecomes(`${listener.url}/_amp/v1/health/ready`, 200)
    await readyBecomes(`${worker.metricsUrl}/health/ready`, 200)
    // And calls work again.
    expect((await eventually('a call after NATS returned', async () => {
      const res = await post(`${listener.url}/cat`, 'back')
      return res.status === 200 ? res : undefined
    })).text).to.equal('back')
  })

  it('worker: not ready while draining, and its slot count shows the call it finishes', async () => {
    const other = await stack.addWorker({concurrency: 1})
    // Only `other` may take the call: stop the suite's worker from taking it by closing it and starting it again after.
    await worker.close()
    try {
      const call = post(`${listener.url}/slow`, 'drain me')
      await eventually('the call to hold a slot', async () =>
        sample((await get(`${other.metricsUrl}/metrics`)).text, 'amp_worker_slots_used') === 1 ? true : undefined,
      )
      const closing = other.close()
      const ready = await get(`${other.metricsUrl}/health/ready`)
      expect(ready.status).to.equal(503)
      expect(ready.json().status).to.equal('draining')
      expect(sample((await get(`${other.metricsUrl}/metrics`)).text, 'amp_worker_draining')).to.equal(1)
      const res = await call
      expect(res.status).to.equal(200)
      expect(res.text).to.equal('drain me')
      await closing
      // Closed: the metrics port is gone too.
      expect(await get(`${other.metricsUrl}/health/live`).then(() => 'served', () => 'refused')).to.equal('refused')
    } finally {
      await other.close()
      worker = await stack.addWorker()
    }
  })
})

describe('daemons under a fake systemd (Type=notify)', function () {
  this.timeout(120_000)
  let nats: ServiceHandle
  let etcd: ServiceHandle

  before(async () => {
    await requireDocker()
    ;[nats, etcd] = await Promise.all([startNats(), startEtcd()])
  })
  after(() => Promise.all([nats?.stop(), etcd?.stop()]))

  /** Runs `amp <args>` as its own process with NOTIFY_SOCKET, as systemd does. */
  function spawn(args: string[], env: Record<string, string>): {child: ResultPromise; output: () => string} {
    const child = execa('node', [DEV, ...args], {reject: false, env: {NODE_EXTRA_CA_CERTS: '', ...env}, stdin: 'ignore', forceKillAfterDelay: DAEMON_KILL_AFTER_MS})
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    return {child, output: () => output}
  }

  it('amp worker start says READY=1 once it takes calls, serves --metrics-port, says STOPPING=1 on SIGTERM and exits 0', async () => {
    const socket = await startNotifySocket()
    try {
      const {child, output} = spawn(['worker', 'start', '--nats', nats.url, '--docker', DOCKER, '--metrics-port', '0'], {
        NOTIFY_SOCKET: socket.path,
        AMP_DRAIN_TIMEOUT: '7s',
      })
      const ready = await socket.waitFor(/READY=1/, 30_000)
      expect(ready).to.match(/STATUS=taking calls from nats:/)
      const url = /metrics (http:\/\/127\.0\.0\.1:\d+)\/metrics/.exec(output())?.[1]
      expect(url, output()).to.be.a('string')
      expect((await get(`${url}/health/ready`)).status).to.equal(200)
      expect((await get(`${url}/metrics`)).text).to.contain('amp_worker_slots 4')

      child.kill('SIGTERM')
      await socket.waitFor(/STOPPING=1/)
      expect((await child).exitCode, output()).to.equal(0)
      expect(output()).to.match(/worker stopping.* deadlineMs=7000/)
    } finally {
      await socket.close()
    }
  })

  it('amp listener start says READY=1 once it listens, STOPPING=1 on SIGTERM, and uses --drain-timeout', async () => {
    const socket = await startNotifySocket()
    try {
      const {child, output} = spawn(
        ['listener', 'start', '--port', '0', '--nats', nats.url, '--etcd', etcd.url, '--drain-timeout', '5s'],
        {NOTIFY_SOCKET: socket.path},
      )
      const ready = await socket.waitFor(/READY=1/, 30_000)
      const url = /STATUS=listening on (http:\/\/\S+)/.exec(ready)?.[1]
      expect(url, ready).to.be.a('string')
      expect((await get(`${url}/_amp/v1/health/ready`)).status).to.equal(200)
      child.kill('SIGTERM')
      await socket.waitFor(/STOPPING=1/)
      expect((await child).exitCode, output()).to.equal(0)
      expect(output()).to.match(/listener stopping.* deadlineMs=5000/)
    } finally {
      await socket.close()
    }
  })
})
