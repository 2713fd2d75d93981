import {expect} from 'chai'
import {headers, type Msg, type MsgHdrs, type NatsConnection, type Subscription} from '@nats-io/transport-node'
import {setTimeout as sleep} from 'node:timers/promises'

import type {AsyncPuller} from '../../../src/runtime/worker/async-worker.js'
import type {CallSettings} from '../../../src/runtime/worker/call-headers.js'
import type {RunResult, RunSpec} from '../../../src/runtime/worker/container-runner.js'
import {storedFunction} from '../../../src/runtime/shared/function-spec.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {Registry} from '../../../src/runtime/shared/metrics.js'
import {CALL_SUBJECT_PREFIX, callHeaders, HEADER} from '../../../src/runtime/shared/protocol.js'
import {Slots} from '../../../src/runtime/worker/slots.js'
import {WarmSubjects} from '../../../src/runtime/worker/warm-subjects.js'
import {type ServiceRunner, WorkerService} from '../../../src/runtime/worker/worker-service.js'
import {FakeClock} from '../../helpers/fake-clock.js'
import {sample} from '../../helpers/prometheus.js'
import {waitFor} from '../../helpers/wait.js'

const DEADLINE_MS = 5000
const FN = storedFunction({name: 'fn', image: 'busybox', timeoutMs: 5000})

/** Just enough of a NATS connection: subscriptions the test delivers to, requests acked at once, drain counted. */
function fakeNats() {
  const subs = new Map<string, {callback: (error: Error | null, msg: Msg) => void; drained: boolean}>()
  const requests: Array<{subject: string; event: string}> = []
  const state = {drains: 0}
  let closed = false
  const nc = {
    info: {max_payload: 1024 * 1024},
    isClosed: () => closed,
    // trackNats reads it until the connection closes: this one never reports anything.
    status: () => ({[Symbol.asyncIterator]: () => ({next: () => new Promise(() => {})})}),
    subscribe(subject: string, opts: {callback: (error: Error | null, msg: Msg) => void}) {
      const sub = {callback: opts.callback, drained: false}
      subs.set(subject, sub)
      return {
        drain: async () => void (sub.drained = true),
        unsubscribe: () => void (sub.drained = true),
      } as unknown as Subscription
    },
    publish() {},
    async request(subject: string, _data: Uint8Array, opts: {headers: MsgHdrs}) {
      requests.push({subject, event: opts.headers.get(HEADER.event)})
      return {headers: headers()} as unknown as Msg
    },
    async drain() {
      state.drains++
      closed = true
    },
    async flush() {},
  } as unknown as NatsConnection
  return {nc, subs, requests, state}
}

/** A sync call's message as a listener sends it, with what the worker answered to it. */
function callMessage(callId: string, {input = 'in', inline = false} = {}) {
  const h = callHeaders(callId, FN, input.length)
  h.set(HEADER.replyTo, `reply.${callId}`)
  if (inline) h.set(HEADER.inline, 'true')
  const answers: Array<{status: string; data: string; headers: MsgHdrs}> = []
  const msg = {
    subject: `${CALL_SUBJECT_PREFIX}.fn`,
    data: Buffer.from(input),
    headers: h,
    respond(data: Uint8Array, opts: {headers: MsgHdrs}) {
      answers.push({status: opts.headers.get(HEADER.status), data: Buffer.from(data).toString(), headers: opts.headers})
      return true
    },
  } as unknown as Msg
  return {msg, answers}
}

const exited = (stdout = ''): RunResult => ({outcome: 'exited', exitCode: 0, stdout: Buffer.from(stdout), stderr: Buffer.alloc(0), stderrTruncated: false, durationMs: 1})

/** A container runner whose calls end when the test says (or at killAll), counting what the service asked of it. */
function fakeRunner() {
  const running = new Map<string, (result: RunResult) => void>()
  const calls = {run: 0, killAll: 0, close: 0}
  const runner: ServiceRunner = {
    prestarted: 0,
    engine: async () => ({version: 'fake'}),
    run(spec: RunSpec) {
      calls.run++
      return new Promise<RunResult>((resolve) => running.set(spec.callId, resolve))
    },
    cancel: () => true,
    async close() {
      calls.close++
    },
    killAll() {
      calls.killAll++
      for (const end of running.values()) end({...exited(), outcome: 'failed', killed: 'shutdown', error: 'killed'})
      running.clear()
    },
    async drainPrestarted() {},
  }
  const finish = (callId: string, result = exited()) => {
    running.get(callId)!(result)
    running.delete(callId)
  }
  return {runner, calls, running, finish}
}

function service({concurrency = 1, backlog}: {concurrency?: number; backlog?: number} = {}) {
  const nats = fakeNats()
  const docker = fakeRunner()
  const clock = new FakeClock()
  const registry = new Registry()
  const slots = new Slots(concurrency)
  const worker = new WorkerService({
    nc: nats.nc,
    runner: docker.runner,
    slots,
    warm: new WarmSubjects(),
    settings: {concurrency, backlog, drainTimeoutMs: DEADLINE_MS, maxInputBytes: 1024, registry},
    log: silentLogger,
    id: 'w-test',
    clock,
  })
  worker.start()
  const deliver = (msg: Msg) => nats.subs.get(`${CALL_SUBJECT_PREFIX}.*`)!.callback(null, msg)
  const metric = async (series: string) => sample(await registry.metrics(), series)
  return {worker, nats, docker, clock, slots, deliver, metric}
}

/** An asynchronous call run as the puller runs it: in a slot, tracked so close() waits for it. */
function runAsync(worker: WorkerService, callId: string): Promise<RunResult> {
  const settings = {callId, function: 'fn', image: 'busybox', timeoutMs: 5000} as CallSettings
  const result = worker.run(settings, Buffer.from('in'))
  worker.track(result.then(() => {}))
  return result
}

async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false
  void promise.then(() => (done = true))
  await sleep(5)
  return done
}

describe('worker: the service', () => {
  it('answers a quick call with its result, and counts it', async () => {
    const {deliver, docker, metric, worker} = service()
    const {msg, answers} = callMessage('c1', {inline: true})
    deliver(msg)
    await waitFor('the call to run', async () => (docker.running.has('c1') ? true : undefined), 2000, 2)
    docker.finish('c1', exited('hi'))
    await waitFor('the answer', async () => answers[0], 2000, 2)
    expect(answers).to.have.length(1)
    expect(answers[0]).to.include({status: 'done', data: 'hi'})
    expect(answers[0].headers.get(HEADER.outcome)).to.equal('exited')
    expect(await metric('amp_worker_calls_total{function="fn",result="ok"}')).to.equal(1)
    await worker.close()
  })

  it('refuses a call over its input limit, and one past its slots and backlog as busy', async () => {
    const {deliver, docker, metric, worker} = service({concurrency: 1, backlog: 1})
    const big = callMessage('c0', {input: 'x'.repeat(2000)})
    deliver(big.msg)
    expect(big.answers.map((a) => a.status)).to.deep.equal(['rejected'])
    const taken = ['c1', 'c2'].map((id) => callMessage(id))
    for (const {msg} of taken) deliver(msg)
    const over = callMessage('c3')
    deliver(over.msg)
    expect(taken.map(({answers}) => answers[0]?.status)).to.deep.equal(['accepted', 'accepted'])
    expect(over.answers.map((a) => a.status)).to.deep.equal(['busy'])
    expect(await metric('amp_worker_calls_refused_total{reason="busy"}')).to.equal(1)
    expect(await metric('amp_worker_calls_refused_total{reason="rejected"}')).to.equal(1)
    // One in the slot, one waiting for it.
    await waitFor('the first call to run', async () => (docker.running.has('c1') ? true : undefined), 2000, 2)
    expect(await metric('amp_worker_slots_used')).to.equal(1)
    expect(await metric('amp_worker_calls_in_flight')).to.equal(2)
    expect(docker.calls.run).to.equal(1)
    docker.finish('c1')
    await waitFor('the second call to run', async () => (docker.running.has('c2') ? true : undefined), 2000, 2)
    docker.finish('c2')
    await worker.close()
    expect(await metric('amp_worker_calls_in_flight')).to.equal(0)
    expect(await metric('amp_worker_slots_used')).to.equal(0)
  })

  it('closes once however often close() is called', async () => {
    const {worker, nats, docker} = service()
    let stopped = 0
    worker.stopLast.push(() => stopped++)
    const first = worker.close()
    expect(worker.close()).to.equal(first)
    await first
    await worker.close()
    expect(nats.state.drains).to.equal(1)
    expect(stopped).to.equal(1)
    // Once for the idle pre-started containers at the start of the drain, once for the last ones at its end.
    expect(docker.calls.close).to.equal(2)
  })

  it('takes no new work once closing: busy to calls, no puller, no free slot', async () => {
    const {worker, nats, deliver, slots} = service({concurrency: 2})
    expect(worker.hasFreeSlot()).to.equal(true)
    const closed = worker.close()
    expect(nats.subs.get(`${CALL_SUBJECT_PREFIX}.*`)!.drained).to.equal(true)
    const late = callMessage('late')
    deliver(late.msg)
    expect(late.answers.map((a) => a.status)).to.deep.equal(['busy'])
    let started = false
    expect(worker.startPuller({start: () => (started = true), stop() {}} as unknown as AsyncPuller)).to.equal(false)
    expect(started).to.equal(false)
    expect(worker.hasFreeSlot()).to.equal(false)
    expect(slots.hasFreeSlot(), 'nothing more is pre-started either').to.equal(false)
    expect((await worker.readiness()).ready).to.equal(false)
    await closed
  })

  it('waits for the calls in flight, within the deadline, before it lets NATS go', async () => {
    const {worker, nats, docker, clock} = service()
    const call = runAsync(worker, 'a1')
    await waitFor('the call to run', async () => (docker.running.has('a1') ? true : undefined), 2000, 2)
    const closed = worker.close()
    await waitFor('the drain deadline to be set', async () => (clock.pending > 0 ? true : undefined), 2000, 2)
    clock.advance(DEADLINE_MS - 1)
    expect(await settled(closed)).to.equal(false)
    expect(nats.state.drains).to.equal(0)
    docker.finish('a1', exited('done'))
    await closed
    expect((await call).stdout.toString()).to.equal('done')
    expect(docker.calls.killAll).to.equal(0)
    expect(worker.aborted()).to.equal(false)
    expect(nats.state.drains).to.equal(1)
    expect(clock.pending, 'the deadline timer is cancelled').to.equal(0)
  })

  it('kills what still runs at the deadline, and runs no call still waiting for a slot', async () => {
    const {worker, docker, clock, metric} = service({concurrency: 1})
    const running = runAsync(worker, 'a1')
    const waiting = runAsync(worker, 'a2')
    await waitFor('the first call to run', async () => (docker.running.has('a1') ? true : undefined), 2000, 2)
    const closed = worker.close()
    await waitFor('the drain deadline to be set', async () => (clock.pending > 0 ? true : undefined), 2000, 2)
    clock.advance(DEADLINE_MS)
    await closed
    expect(docker.calls.killAll).to.equal(1)
    expect(worker.aborted()).to.equal(true)
    expect((await running).killed).to.equal('shutdown')
    expect(await waiting).to.include({outcome: 'failed', error: 'the worker shut down before the call started'})
    expect(docker.calls.run, 'the waiting call never reached docker').to.equal(1)
    expect(await metric('amp_worker_containers_killed_total{reason="shutdown"}')).to.equal(1)
  })
})
