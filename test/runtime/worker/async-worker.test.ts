/**
 * The worker's decisions on an asynchronous call (async-worker.ts), with a fake JetStream and a fake
 * host: which calls run, what is recorded, and whether the message is acked, naked (with which delay)
 * or terminated. The integration suite (async.integration.test.ts) runs the same against real servers.
 */
import {setTimeout as sleep} from 'node:timers/promises'
import type {MsgHdrs} from '@nats-io/transport-node'
import {expect} from 'chai'

import type {AsyncStore, StoredCall} from '../../../src/runtime/shared/async-store.js'
import {type AsyncHost, AsyncPuller, retryDelayMs} from '../../../src/runtime/worker/async-worker.js'
import type {RunResult} from '../../../src/runtime/worker/container-runner.js'
import type {DeadLetter} from '../../../src/runtime/shared/http-contract.js'
import {storedFunction} from '../../../src/runtime/shared/function-spec.js'
import {silentLogger} from '../../../src/runtime/shared/logger.js'
import {callHeaders, HEADER} from '../../../src/runtime/shared/protocol.js'
import {waitUntil} from '../../helpers/wait.js'

const CALL = 'c0ffee00-0000-4000-8000-000000000001'

describe('retryDelayMs', () => {
  it('starts at the base, grows 4 times per attempt and stops at 5 minutes', () => {
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, 1000))).to.deep.equal([1000, 4000, 16_000, 64_000])
    expect(retryDelayMs(5, 1000)).to.equal(256_000)
    expect(retryDelayMs(6, 1000)).to.equal(300_000)
    expect(retryDelayMs(60, 1000)).to.equal(300_000)
    expect(retryDelayMs(2, 200)).to.equal(800)
  })

  it('takes an attempt below 1 as the first', () => {
    expect(retryDelayMs(0, 500)).to.equal(500)
    expect(retryDelayMs(-3, 500)).to.equal(500)
  })
})

/** What the puller did to the message. */
interface Fate {
  acked: boolean
  naked?: number | 'now'
  termed?: string
  working: number
}

function message(deliveryCount: number, options: {maxAttempts?: string; callbackUrl?: string; headers?: MsgHdrs; queuedAt?: number} = {}) {
  const h = options.headers ?? callHeaders(CALL, storedFunction({name: 'fn', image: 'amp-test/cat:1', timeoutMs: 5000}), 2)
  if (!options.headers) h.set(HEADER.maxAttempts, options.maxAttempts ?? '3')
  if (options.callbackUrl) h.set(HEADER.callbackUrl, options.callbackUrl)
  const fate: Fate = {acked: false, working: 0}
  const msg = {
    headers: h,
    info: {deliveryCount, ...(options.queuedAt === undefined ? {} : {timestampNanos: options.queuedAt * 1_000_000})},
    ack: () => void (fate.acked = true),
    ackAck: async () => (fate.acked = true),
    nak: (delay?: number) => void (fate.naked = delay ?? 'now'),
    term: (reason?: string) => void (fate.termed = reason ?? ''),
    working: () => void fate.working++,
  }
  return {msg, fate}
}

const exited = (exitCode: number, durationMs = 5): RunResult => ({
  outcome: 'exited',
  exitCode,
  stdout: Buffer.from('out'),
  stderr: Buffer.from('err'),
  stderrTruncated: false,
  durationMs,
})

/** A stored record of the test call, as an earlier delivery left it. */
const priorRecord = (fields: Partial<StoredCall>): StoredCall => ({
  callId: CALL,
  function: 'fn',
  state: 'queued',
  attempts: 0,
  maxAttempts: 3,
  createdAt: new Date().toISOString(),
  deadLetter: false,
  ...fields,
})

/** A fake store holding records, objects and published letters in memory. */
function fakeStore(start?: StoredCall) {
  const records: StoredCall[] = start ? [start] : []
  const objects = new Map<string, Uint8Array>([[`${CALL}.in`, Buffer.from('in')]])
  const dead: DeadLetter[] = []
  const callbacks: string[] = []
  let queue: unknown[] = []
  const store = {
    settings: {leaseMs: 90, retentionMs: 60_000},
    js: {
      consumers: {
        get: async () => ({
          // One message per fetch while there are some; an empty fetch otherwise, after a short wait.
          fetch: async () => {
            const next = queue.shift()
            if (!next) await sleep(5)
            return Object.assign((async function* () {
              if (next) yield next
            })(), {close: async () => {}})
          },
        }),
      },
    },
    getRecord: async () => (records.length ? {record: records.at(-1)!, revision: records.length} : undefined),
    putRecord: async (record: StoredCall) => void records.push(structuredClone(record)),
    getInput: async (id: string) => objects.get(`${id}.in`) ?? null,
    deleteInput: async (id: string) => void objects.delete(`${id}.in`),
    putOutput: async (id: string, out: Uint8Array, err: Uint8Array) => {
      objects.set(`${id}.out`, out)
      objects.set(`${id}.err`, err)
    },
    publishDeadLetter: async (letter: DeadLetter) => void dead.push(letter),
    publishCallback: async (id: string) => void callbacks.push(id),
  }
  return {store: store as unknown as AsyncStore, records, objects, dead, callbacks, offer: (msg: unknown) => (queue = [msg])}
}

/** A host with free slots whose run() answers `result` (after `runMs`). */
function fakeHost(result: RunResult, runMs = 0, aborted = false) {
  const tasks: Array<Promise<void>> = []
  const runs: string[] = []
  /** The delivery each run was told: it names the container (amp-<call>-<delivery> from the second on). */
  const deliveries: Array<number | undefined> = []
  const host: AsyncHost = {
    id: 'w-test',
    hasFreeSlot: () => true,
    slotFreed: () => sleep(5),
    run: async (call) => {
      runs.push(call.callId)
      deliveries.push(call.run)
      await sleep(runMs)
      return result
    },
    track: (task) => void tasks.push(task),
    aborted: () => aborted,
  }
  return {host, tasks, runs, deliveries}
}

/** Hands one message to a puller and waits until it has dealt with it. */
async function handle(store: ReturnType<typeof fakeStore>, host: ReturnType<typeof fakeHost>, msg: unknown): Promise<void> {
  store.offer(msg)
  const puller = new AsyncPuller(store.store, host.host, silentLogger, {retryBaseMs: 100, pullExpiresMs: 10})
  puller.start()
  await waitUntil('the puller to take the call', () => host.tasks.length > 0, 5000, 2)
  await puller.stop()
  await Promise.all(host.tasks)
}

describe('AsyncPuller', () => {
  it('runs a call, stores its output, records it succeeded, acks it and deletes its input', async () => {
    const store = fakeStore()
    const host = fakeHost(exited(0))
    const {msg, fate} = message(1, {callbackUrl: 'http://127.0.0.1:9/hook'})
    await handle(store, host, msg)
    expect(host.runs).to.deep.equal([CALL])
    expect(host.deliveries).to.deep.equal([1])
    expect(fate).to.include({acked: true}).and.not.have.any.keys('naked', 'termed')
    expect(store.records.map((r) => r.state)).to.deep.equal(['running', 'succeeded'])
    const final = store.records.at(-1)!
    expect(final).to.include({attempts: 1, maxAttempts: 3, deadLetter: false, worker: 'w-test', outcome: 'exited'})
    expect(final.callback).to.deep.equal({state: 'pending', attempts: 0})
    expect(final).to.not.have.any.keys('error', 'heartbeatAt', 'nextAttemptAt')
    expect(store.objects.has(`${CALL}.in`)).to.equal(false)
    expect(Buffer.from(store.objects.get(`${CALL}.out`)!).toString()).to.equal('out')
    expect(store.callbacks).to.deep.equal([CALL])
    expect(store.dead).to.deep.equal([])
  })

  it('puts a call back without counting the attempt when its input cannot be read (JetStream failing over), and runs nothing', async () => {
    const store = fakeStore()
    store.store.getInput = async () => {
      throw new Error('reading the input took over 30000 ms')
    }
    const host = fakeHost(exited(0))
    const {msg, fate} = message(1)
    store.offer(msg)
    const puller = new AsyncPuller(store.store, host.host, silentLogger, {retryBaseMs: 100, pullExpiresMs: 10, persistForMs: 20})
    puller.start()
    await waitUntil('the puller to take the call', () => host.tasks.length > 0, 5000, 2)
    await puller.stop()
    await Promise.all(host.tasks)
    expect(host.runs).to.deep.equal([])
    expect(fate).to.deep.include({acked: false, naked: 1000})
    // Claimed (then lease renewals while the read was tried), then put back as it was.
    expect(store.records.map((r) => r.state).filter((state) => state !== 'running')).to.deep.equal(['queued'])
    expect(store.records.at(-1)).to.include({state: 'queued', attempts: 0})
  })

  it('naks a failure with attempts left after the backoff delay, recording when the next attempt is due', async () => {
    const store = fakeStore(priorRecord({state: 'retrying', attempts: 1}))
    const host = fakeHost(exited(3))
    const {msg, fate} = message(2)
    await handle(store, host, msg)
    expect(host.deliveries).to.deep.equal([2])
    expect(fate).to.deep.include({acked: false, naked: retryDelayMs(2, 100)})
    const record = store.records.at(-1)!
    expect(record).to.include({state: 'retrying', attempts: 2, error: 'the function exited 3', deadLetter: false})
    expect(Date.parse(record.nextAttemptAt!) - Date.now()).to.be.within(0, retryDelayMs(2, 100))
    expect(store.objects.has(`${CALL}.in`), 'the input stays for the next attempt').to.equal(true)
    expect(store.dead).to.deep.equal([])
  })

  it('dead-letters the last failed attempt and acks it', async () => {
    const store = fakeStore(priorRecord({state: 'retrying', attempts: 2}))
    const host = fakeHost(exited(3))
    const {msg, fate} = message(3)
    await handle(store, host, msg)
    expect(fate.acked).to.equal(true)
    expect(fate).to.not.have.property('naked')
    expect(store.records.at(-1)).to.include({state: 'failed', attempts: 3, deadLetter: true, error: 'the function exited 3'})
    expect(store.dead).to.have.length(1)
    expect(store.dead[0]).to.include({callId: CALL, function: 'fn', attempts: 3, exitCode: 3, error: 'the function exited 3'})
    expect(store.objects.has(`${CALL}.in`)).to.equal(false)
  })

  it('does not run again a call recorded as finished (its ack was lost): acks it', async () => {
    const done = {callId: CALL, function: 'fn', state: 'succeeded', attempts: 1, maxAttempts: 3, createdAt: '', deadLetter: false} as StoredCall
    const store = fakeStore(done)
    const host = fakeHost(exited(0))
    const {msg, fate} = message(2)
    await handle(store, host, msg)
    expect(host.runs).to.deep.equal([])
    expect(fate.acked).to.equal(true)
    expect(store.records).to.have.length(1)
  })

  it('leaves a call whose other worker still renews its lease, and takes over one whose worker went quiet', async () => {
    const running = (heartbeatAt: string) =>
      ({callId: CALL, function: 'fn', state: 'running', attempts: 1, maxAttempts: 3, createdAt: '', deadLetter: false, worker: 'w-other', heartbeatAt}) as StoredCall
    const live = fakeStore(running(new Date().toISOString()))
    const first = fakeHost(exited(0))
    const a = message(2)
    await handle(live, first, a.msg)
    expect(first.runs).to.deep.equal([])
    expect(a.fate.naked).to.equal(45)

    const quiet = fakeStore(running(new Date(Date.now() - 1000).toISOString()))
    const second = fakeHost(exited(0))
    const b = message(2)
    await handle(quiet, second, b.msg)
    expect(second.runs).to.deep.equal([CALL])
    expect(quiet.records.at(-1)).to.include({state: 'succeeded', attempts: 2, worker: 'w-test'})
  })

  it('runs again, without counting a failure, a call whose worker died mid-attempt (retries 0)', async () => {
    const stale = new Date(Date.now() - 1000).toISOString()
    const store = fakeStore(priorRecord({state: 'running', attempts: 1, maxAttempts: 1, worker: 'w-dead', heartbeatAt: stale}))
    const host = fakeHost(exited(0))
    const {msg, fate} = message(2, {maxAttempts: '1'})
    await handle(store, host, msg)
    expect(host.runs).to.deep.equal([CALL])
    // Its container has a name of its own: the dead worker's may still be there, on this Docker host.
    expect(host.deliveries).to.deep.equal([2])
    expect(fate.acked).to.equal(true)
    expect(store.records.at(-1)).to.include({state: 'succeeded', attempts: 2, lost: 1, deadLetter: false})
    expect(store.dead).to.deep.equal([])
  })

  it('hands back, without running it twice, a second delivery of a call this worker is running', async () => {
    const store = fakeStore()
    const host = fakeHost(exited(0), 150)
    const puller = new AsyncPuller(store.store, host.host, silentLogger, {retryBaseMs: 100, pullExpiresMs: 10})
    const first = message(1)
    store.offer(first.msg)
    puller.start()
    await waitUntil('the first delivery to run', () => host.runs.length > 0, 5000, 2)
    // JetStream delivers it again while it runs (its lease lapsed while NATS was away).
    const second = message(2)
    store.offer(second.msg)
    await waitUntil('the second delivery to be taken', () => host.tasks.length >= 2, 5000, 2)
    await puller.stop()
    await Promise.all(host.tasks)
    expect(host.runs).to.deep.equal([CALL])
    expect(second.fate.naked, 'handed back for later').to.be.a('number')
    expect(second.fate.acked).to.equal(false)
    expect(first.fate.acked).to.equal(true)
  })

  it('gives up without running a call whose workers died during more than 3 attempts', async () => {
    const stale = new Date(Date.now() - 1000).toISOString()
    const store = fakeStore(priorRecord({state: 'running', attempts: 4, lost: 3, worker: 'w-dead', heartbeatAt: stale}))
    const host = fakeHost(exited(0))
    const {msg, fate} = message(5)
    await handle(store, host, msg)
    expect(host.runs).to.deep.equal([])
    expect(fate.acked).to.equal(true)
    expect(store.records.at(-1)).to.include({state: 'failed', attempts: 4, lost: 4, deadLetter: true})
    expect(store.records.at(-1)!.error).to.contain('its worker stopped during 4 attempts')
    expect(store.dead).to.have.length(1)
  })

  it('terminates a message it can never run (bad headers), without a record', async () => {
    for (const maxAttempts of ['0', 'x', '']) {
      const store = fakeStore()
      const host = fakeHost(exited(0))
      const {msg, fate} = message(1, {maxAttempts})
      await handle(store, host, msg)
      expect(fate.termed, maxAttempts).to.be.a('string')
      expect(host.runs).to.deep.equal([])
      expect(store.records).to.deep.equal([])
    }
  })

  it('puts a call killed by the worker shutdown back in the queue at once, not counted as failed', async () => {
    const store = fakeStore()
    const host = fakeHost({...exited(137), outcome: 'failed', error: 'killed'}, 0, true)
    const {msg, fate} = message(1)
    await handle(store, host, msg)
    expect(fate).to.deep.include({naked: 'now', acked: false})
    expect(store.records.at(-1)).to.include({state: 'queued'})
    expect(store.dead).to.deep.equal([])
  })

  it('finishes as failed, without running, a call whose input expired', async () => {
    const store = fakeStore()
    store.objects.clear()
    const host = fakeHost(exited(0))
    const {msg, fate} = message(1)
    await handle(store, host, msg)
    expect(host.runs).to.deep.equal([])
    expect(fate.acked).to.equal(true)
    expect(store.records.at(-1)!.error).to.contain('input is gone')
  })

  it('drops, without a record or dead letter, a recent call with neither record nor input (its listener took it back after a 503)', async () => {
    const store = fakeStore()
    store.objects.clear()
    const host = fakeHost(exited(0))
    const {msg, fate} = message(1, {queuedAt: Date.now() - 1000})
    await handle(store, host, msg)
    expect(host.runs).to.deep.equal([])
    expect(fate.acked).to.equal(true)
    expect(store.records).to.deep.equal([])
    expect(store.dead).to.deep.equal([])
  })

  it('dead-letters a call without record or input that waited longer than the retention time', async () => {
    const store = fakeStore()
    store.objects.clear()
    const host = fakeHost(exited(0))
    const {msg, fate} = message(1, {queuedAt: Date.now() - 120_000}) // the fake's retention is 60 s
    await handle(store, host, msg)
    expect(host.runs).to.deep.equal([])
    expect(fate.acked).to.equal(true)
    expect(store.dead.map((letter) => letter.callId)).to.deep.equal([CALL])
    expect(store.records.at(-1)!.error).to.contain('input is gone')
  })

  it('renews the lease while the container runs', async () => {
    const store = fakeStore()
    const host = fakeHost(exited(0), 200)
    const {msg, fate} = message(1)
    await handle(store, host, msg)
    // Every leaseMs/3 = 30 ms over 200 ms: several renewals, each with a heartbeat in the record.
    expect(fate.working).to.be.at.least(2)
    expect(store.records.filter((r) => r.state === 'running' && r.heartbeatAt)).to.have.length(fate.working + 1)
  })
})
