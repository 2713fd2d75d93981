/**
 * The real dispatcher against a fake NATS connection whose one worker answers `busy` while it has no
 * room: a busy call waits for room (issue #15), first come first served, until its deadline.
 */
import {headers, type Msg, type MsgHdrs, type Subscription} from '@nats-io/transport-node'
import {expect} from 'chai'
import {randomUUID} from 'node:crypto'
import {setTimeout as sleep} from 'node:timers/promises'

import {Dispatcher, type DispatcherOptions} from '../../../src/runtime/listener/dispatcher.js'
import {HTTP_STATUS} from '../../../src/runtime/shared/errors.js'
import {storedFunction, type StoredFunction} from '../../../src/runtime/shared/function-spec.js'
import type {NatsConnection} from '../../../src/runtime/shared/nats.js'
import {HEADER} from '../../../src/runtime/shared/protocol.js'
import {ampError} from '../../helpers/amp-error.js'
import {waitUntil} from '../../helpers/wait.js'

const SPEC: StoredFunction = storedFunction({
  name: 'echo',
  image: 'amp-test/cat:1',
  timeoutMs: 30_000,
  prestart: 0,
  createdAt: '2024-01-01T00:00:00.000Z',
  updatedAt: '2024-01-01T00:00:00.000Z',
})

/** A quick call's answer (docs/protocol.md): `done`, with the output (its input back) inside. */
function doneAnswer(data: Uint8Array): Msg {
  const h = headers()
  for (const [key, value] of [
    [HEADER.status, 'done'],
    [HEADER.worker, 'fake-worker'],
    [HEADER.inline, 'true'],
    [HEADER.outcome, 'exited'],
    [HEADER.exitCode, '0'],
    [HEADER.durationMs, '1'],
    [HEADER.stdoutSize, String(data.length)],
    [HEADER.stderrSize, '0'],
  ]) {
    h.set(key, value)
  }
  return {headers: h, data} as unknown as Msg
}

function busyAnswer(): Msg {
  const h = headers()
  h.set(HEADER.status, 'busy')
  h.set(HEADER.worker, 'fake-worker')
  return {headers: h, data: new Uint8Array(0)} as unknown as Msg
}

/**
 * Just enough of a NATS connection for the dispatcher, with one worker behind it: it answers busy
 * while `room(offer)` says no, and otherwise runs the call at once (a quick call). `offers` holds
 * the call id of each offer, in order; `taken` those it ran.
 */
function fakeNats(room: (offer: number) => boolean) {
  const offers: string[] = []
  const taken: string[] = []
  const nc = {
    info: {max_payload: 1024 * 1024},
    subscribe: () => ({drain: async () => {}}) as unknown as Subscription,
    async request(_subject: string, data: Uint8Array, opts: {headers: MsgHdrs}) {
      const callId = opts.headers.get(HEADER.callId)
      offers.push(callId)
      await sleep(1)
      if (!room(offers.length)) return busyAnswer()
      taken.push(callId)
      return doneAnswer(data)
    },
  } as unknown as NatsConnection
  return {nc, offers, taken}
}

function dispatcherOn(nc: NatsConnection, options: DispatcherOptions = {}): Dispatcher {
  const dispatcher = new Dispatcher(nc, 'listener-1', options)
  dispatcher.start()
  return dispatcher
}

describe('dispatcher: a call that finds every worker busy waits for room', () => {
  it('is offered again until the worker takes it, and succeeds', async function () {
    this.timeout(10_000)
    const {nc, offers} = fakeNats((offer) => offer > 12)
    const dispatcher = dispatcherOn(nc)
    const callId = randomUUID()
    const result = await dispatcher.call(callId, SPEC, Buffer.from('at last'))
    expect(result.stdout.toString()).to.equal('at last')
    expect(result.exitCode).to.equal(0)
    // More than the 9 offers a call got before it was answered 503: the wait is bounded by time, not a count.
    expect(offers).to.deep.equal(Array.from({length: 13}, () => callId))
    expect(dispatcher.inFlight).to.equal(0)
  })

  it('keeps waiting well past the 3 s of retries it had before while its timeout allows', async function () {
    this.timeout(10_000)
    const started = Date.now()
    const {nc} = fakeNats(() => Date.now() - started > 3500)
    const result = await dispatcherOn(nc).call(randomUUID(), SPEC, Buffer.from('patience'))
    expect(result.stdout.toString()).to.equal('patience')
  })

  it("answers no_worker (503) at the function's timeout, not earlier", async () => {
    const {nc, offers} = fakeNats(() => false)
    const started = Date.now()
    const error = await ampError(dispatcherOn(nc).call(randomUUID(), {...SPEC, timeoutMs: 700}, Buffer.from('in')))
    const waited = Date.now() - started
    expect(error.code).to.equal('no_worker')
    expect(HTTP_STATUS[error.code]).to.equal(503)
    expect(error.message).to.equal('all workers are busy: try again shortly')
    expect(waited).to.be.within(690, 1500)
    // Pauses of at most 250 ms: the last offer is made at the deadline, not a pause before it.
    expect(offers.length).to.be.at.least(4)
  })

  it('waits no longer than the queue allowance when that is shorter than the timeout', async () => {
    const {nc} = fakeNats(() => false)
    const started = Date.now()
    const error = await ampError(dispatcherOn(nc, {queueAllowanceMs: 400}).call(randomUUID(), SPEC, Buffer.from('in')))
    expect(error.code).to.equal('no_worker')
    expect(Date.now() - started).to.be.within(390, 1200)
  })

  it('serves waiting calls first come first served: a newer call waits behind them, and only the first offers', async () => {
    let open = false
    const {nc, offers, taken} = fakeNats(() => open)
    const dispatcher = dispatcherOn(nc)
    const ids = [randomUUID(), randomUUID(), randomUUID()]
    const calls: Array<Promise<unknown>> = []
    for (const id of ids) {
      calls.push(dispatcher.call(id, SPEC, Buffer.from(id)))
      await sleep(100)
    }
    await sleep(400)
    expect(new Set(offers), 'only the first call in line offers').to.deep.equal(new Set([ids[0]]))
    open = true
    const results = (await Promise.all(calls)) as Array<{stdout: Buffer}>
    expect(results.map((r) => r.stdout.toString())).to.deep.equal(ids)
    expect(taken).to.deep.equal(ids)
  })

  it('a call whose caller hangs up stops waiting at once, is never offered again, and lets the next one offer', async () => {
    let open = false
    const {nc, offers, taken} = fakeNats(() => open)
    const dispatcher = dispatcherOn(nc)
    const [first, second] = [randomUUID(), randomUUID()]
    const hungUp = ampError(dispatcher.call(first, SPEC, Buffer.from('first')))
    await waitUntil('the first call offered', () => offers.length > 0)
    const next = dispatcher.call(second, SPEC, Buffer.from('second'))
    await sleep(100)
    const hangUpAt = Date.now()
    dispatcher.abandon(first)
    const error = await hungUp
    expect(Date.now() - hangUpAt).to.be.below(200)
    expect(error.message).to.equal('the caller hung up before the call finished')
    await waitUntil('the second call offered', () => offers.includes(second), 1000, 5)
    const offersOfFirst = offers.filter((id) => id === first).length
    open = true
    expect((await next).stdout.toString()).to.equal('second')
    await sleep(300)
    expect(offers.filter((id) => id === first).length, 'no offer after the hang-up').to.equal(offersOfFirst)
    expect(taken).to.deep.equal([second])
    expect(dispatcher.inFlight).to.equal(0)
  })

  it('keeps lines per function: a call of another function does not wait behind a busy one', async () => {
    const {nc, taken} = fakeNats((offer) => offer > 1)
    const dispatcher = dispatcherOn(nc)
    // Only the first offer, of echo, is refused.
    const [echo, other] = [randomUUID(), randomUUID()]
    const waiting = dispatcher.call(echo, SPEC, Buffer.from('echo'))
    await sleep(20)
    const served = await dispatcher.call(other, {...SPEC, name: 'other'}, Buffer.from('other'))
    expect(served.stdout.toString()).to.equal('other')
    expect((await waiting).stdout.toString()).to.equal('echo')
    expect(taken, 'the other function first: it did not wait for the line of echo').to.deep.equal([other, echo])
  })
})
