import {expect} from 'chai'
import {readFileSync} from 'node:fs'

import {daemonRegistry, ListenerMetrics, Registry, WorkerMetrics} from '../../../src/runtime/shared/metrics.js'
import {sample} from '../../helpers/prometheus.js'

const DOC = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8')

function listenerMetrics(state: Partial<{nats: boolean; etcd: boolean; draining: boolean}> = {}) {
  const registry = new Registry()
  const metrics = new ListenerMetrics(registry, {
    natsConnected: () => state.nats ?? true,
    etcdUp: async () => state.etcd ?? true,
    draining: () => state.draining ?? false,
  })
  return {registry, metrics}
}

function workerMetrics() {
  const registry = new Registry()
  const state = {slotsUsed: 0, inFlight: 0, nats: true, docker: true, draining: false}
  const metrics = new WorkerMetrics(
    registry,
    {
      natsConnected: () => state.nats,
      dockerUp: async () => state.docker,
      draining: () => state.draining,
      slotsUsed: () => state.slotsUsed,
      inFlight: () => state.inFlight,
      prestarted: () => 0,
    },
    4,
  )
  return {registry, metrics, state}
}

describe('metrics', () => {
  it('counts a listener call as in flight until it is answered, then by function and status', async () => {
    let now = 1000
    const {registry, metrics} = listenerMetrics()
    const done = metrics.callStarted(() => now)
    expect(sample(await registry.metrics(), 'amp_listener_calls_in_flight')).to.equal(1)
    now += 250
    done('demo', 200)
    done('demo', 200) // a second report of the same call changes nothing
    const text = await registry.metrics()
    expect(sample(text, 'amp_listener_calls_in_flight')).to.equal(0)
    expect(sample(text, 'amp_listener_calls_total{function="demo",status="200"}')).to.equal(1)
    expect(sample(text, 'amp_listener_call_duration_seconds_count{function="demo"}')).to.equal(1)
    expect(sample(text, 'amp_listener_call_duration_seconds_sum{function="demo"}')).to.equal(0.25)
    expect(sample(text, 'amp_listener_call_duration_seconds_bucket{le="0.1",function="demo"}')).to.equal(0)
    expect(sample(text, 'amp_listener_call_duration_seconds_bucket{le="0.25",function="demo"}')).to.equal(1)
  })

  it('reads connection state when scraped', async () => {
    const state = {nats: true, etcd: true, draining: false}
    const {registry} = listenerMetrics(state)
    let text = await registry.metrics()
    expect([sample(text, 'amp_listener_nats_connected'), sample(text, 'amp_listener_etcd_up'), sample(text, 'amp_listener_draining')]).to.deep.equal([1, 1, 0])
    Object.assign(state, {nats: false, etcd: false, draining: true})
    text = await registry.metrics()
    expect([sample(text, 'amp_listener_nats_connected'), sample(text, 'amp_listener_etcd_up'), sample(text, 'amp_listener_draining')]).to.deep.equal([0, 0, 1])
  })

  it('observes the phases a worker reported, and skips those it did not', async () => {
    const {registry, metrics} = listenerMetrics()
    metrics.phases.observe('demo', {queueMs: 5, startMs: 300, runMs: 1200})
    metrics.phases.observe('demo', {queueMs: 0})
    metrics.phases.observe('demo', {queueMs: -1, startMs: Number.NaN})
    const text = await registry.metrics()
    expect(sample(text, 'amp_listener_queue_wait_seconds_count{function="demo"}')).to.equal(2)
    expect(sample(text, 'amp_listener_container_start_seconds_count{function="demo"}')).to.equal(1)
    expect(sample(text, 'amp_listener_container_start_seconds_sum{function="demo"}')).to.equal(0.3)
    expect(sample(text, 'amp_listener_container_run_seconds_sum{function="demo"}')).to.equal(1.2)
  })

  it('reports worker slots and the killed-containers series at zero from the start', async () => {
    const {registry, state} = workerMetrics()
    state.slotsUsed = 3
    state.inFlight = 7
    const text = await registry.metrics()
    expect(sample(text, 'amp_worker_slots')).to.equal(4)
    expect(sample(text, 'amp_worker_slots_used')).to.equal(3)
    expect(sample(text, 'amp_worker_calls_in_flight')).to.equal(7)
    for (const reason of ['timeout', 'output', 'shutdown']) {
      expect(sample(text, `amp_worker_containers_killed_total{reason="${reason}"}`)).to.equal(0)
    }
  })

  it('documents every metric the daemons register in docs/metrics.md, and documents none that does not exist', async () => {
    const registered = new Set<string>()
    for (const registry of [listenerMetrics().registry, workerMetrics().registry, daemonRegistry()]) {
      for (const metric of await registry.getMetricsAsJSON()) registered.add(metric.name)
    }
    const documented = new Set([...DOC.matchAll(/^\| `(amp_[a-z0-9_]+)` \|/gm)].map((match) => match[1]))
    expect([...registered].filter((name) => !documented.has(name)), 'registered but not documented').to.deep.equal([])
    expect([...documented].filter((name) => !registered.has(name)), 'documented but not registered').to.deep.equal([])
    expect(registered.size).to.be.above(40)
  })

  it('names every metric amp_*', async () => {
    for (const registry of [listenerMetrics().registry, workerMetrics().registry, daemonRegistry()]) {
      for (const metric of await registry.getMetricsAsJSON()) expect(metric.name).to.match(/^amp_/)
    }
  })
})
