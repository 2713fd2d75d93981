/**
 * The listener's side of the NATS protocol against a real nats-server, with a hand-written worker on the
 * other side that follows protocol.ts message by message (and, in some tests, breaks it on purpose).
 */
import {setTimeout as sleep} from 'node:timers/promises'
import {connect, headers, type Msg, type MsgHdrs, type NatsConnection, type Subscription} from '@nats-io/transport-node'
import {expect} from 'chai'
import {randomBytes, randomUUID} from 'node:crypto'

import {CallLost, Dispatcher, type DispatcherOptions} from '../../../src/runtime/listener/dispatcher.js'
import {isNoResponders} from '../../../src/runtime/shared/nats.js'
import type {StoredFunction} from '../../../src/runtime/shared/function-spec.js'
import {callSubject, chunks, chunkSizeFor, HEADER, replySubject, WORKER_QUEUE} from '../../../src/runtime/shared/protocol.js'
import {startNats, type ServiceHandle} from '../../helpers/services.js'
import {ampError} from '../../helpers/amp-error.js'
import {waitUntil} from '../../helpers/wait.js'

const SPEC: StoredFunction = {
  name: 'echo',
  image: 'amp-test/cat:1',
  timeoutMs: 30_000,
  network: 'none',
  memoryBytes: 256 * 1024 * 1024,
  cpus: 1,
  pidsLimit: 256,
  env: {},
  fireAndForget: false,
  retries: 2,
  prestart: 2,
  reuse: false,
  reuseMaxCalls: 1000,
  createdAt: '2024-01-01T00:00:00.000Z',
  updatedAt: '2024-01-01T00:00:00.000Z',
}


/** What one hand-written worker sees of a call, and the moves it can make. */
class FakeCall {
  readonly callId: string
  readonly replyTo: string

  constructor(
    readonly nc: NatsConnection,
    readonly msg: Msg,
  ) {
    this.callId = msg.headers!.get(HEADER.callId)
    this.replyTo = msg.headers!.get(HEADER.replyTo)
  }

  header(name: string): string {
    return this.msg.headers!.get(name)
  }

  answer(status: string, extra: Record<string, string> = {}): void {
    const h = headers()
    h.set(HEADER.status, status)
    h.set(HEADER.worker, 'fake-worker')
    for (const [key, value] of Object.entries(extra)) h.set(key, value)
    this.msg.respond(new Uint8Array(0), {headers: h})
  }

  private eventHeaders(event: string): MsgHdrs {
    const h = headers()
    h.set(HEADER.event, event)
    h.set(HEADER.callId, this.callId)
    h.set(HEADER.worker, 'fake-worker')
    return h
  }

  heartbeat(): void {
    if (this.nc.isClosed()) return // the test is over
    this.nc.publish(this.replyTo, new Uint8Array(0), {headers: this.eventHeaders('heartbeat')})
  }

  /** A heartbeat as the worker sends it, a request: resolves with the ack's Amp-Status ('' for none), rejects when nobody listens (no responders). */
  async heartbeatRequest(): Promise<string> {
    const ack = await this.nc.request(this.replyTo, new Uint8Array(0), {headers: this.eventHeaders('heartbeat'), timeout: 2000})
    return ack.headers?.get(HEADER.status) ?? ''
  }

  /** Sends one output chunk and waits until the listener has taken it. */
  async chunk(event: 'stdout' | 'stderr', seq: number, data: Uint8Array): Promise<void> {
    const h = this.eventHeaders(event)
    h.set(HEADER.seq, String(seq))
    await this.nc.request(this.replyTo, data, {headers: h, timeout: 5000})
  }

  async output(event: 'stdout' | 'stderr', data: Uint8Array, size = chunkSizeFor(this.nc.info!.max_payload)): Promise<void> {
    let seq = 0
    for (const part of chunks(data, size)) await this.chunk(event, seq++, part)
  }

  async result(fields: Record<string, string>): Promise<void> {
    const h = this.eventHeaders('result')
    for (const [key, value] of Object.entries(fields)) h.set(key, value)
    await this.nc.request(this.replyTo, new Uint8Array(0), {headers: h, timeout: 5000})
  }

  /** The whole happy path after acceptance: output, then a result whose sizes match. */
  async finish(stdout: Uint8Array, stderr: Uint8Array = new Uint8Array(0), exitCode = 0): Promise<void> {
    await this.output('stdout', stdout)
    await this.output('stderr', stderr)
    await this.result({
      [HEADER.outcome]: 'exited',
      [HEADER.exitCode]: String(exitCode),
      [HEADER.durationMs]: '42',
      [HEADER.stdoutSize]: String(stdout.length),
      [HEADER.stderrSize]: String(stderr.length),
    })
  }
}

describe('Dispatcher against nats-server (integration)', function () {
  this.timeout(30_000)
  let nats: ServiceHandle
  let listenerNc: NatsConnection
  let workerNc: NatsConnection
  let dispatcher: Dispatcher
  let listenerId: string
  const subs: Subscription[] = []

  before(async () => {
    nats = await startNats()
  })
  after(async () => {
    await nats?.stop()
  })

  async function setUp(url: string, options: DispatcherOptions = {}): Promise<void> {
    listenerNc = await connect({servers: url})
    workerNc = await connect({servers: url})
    listenerId = `l${randomBytes(4).toString('hex')}`
    dispatcher = new Dispatcher(listenerNc, listenerId, options)
    dispatcher.start()
    await listenerNc.flush()
  }

  afterEach(async () => {
    for (const sub of subs.splice(0)) sub.unsubscribe()
    await dispatcher?.close()
    await listenerNc?.close()
    await workerNc?.close()
  })

  /** Plays a worker in the queue group; `handle` gets each call offered to it. */
  async function fakeWorker(handle: (call: FakeCall, offer: number) => void | Promise<void>, fn = SPEC.name) {
    const offers: FakeCall[] = []
    const failures: unknown[] = []
    subs.push(
      workerNc.subscribe(callSubject(fn), {
        queue: WORKER_QUEUE,
        callback: (error, msg) => {
          if (error) return
          const call = new FakeCall(workerNc, msg)
          offers.push(call)
          Promise.resolve(handle(call, offers.length)).catch((failure: unknown) => failures.push(failure))
        },
      }),
    )
    await workerNc.flush()
    return {offers, failures}
  }

  /** Waits until the first offer reached the fake worker. */
  function offered(offers: FakeCall[]): Promise<void> {
    return waitUntil('the offer at the fake worker', () => offers.length > 0, 5000, 20)
  }

  /**
   * Waits until the dispatcher has taken the fake worker's accept: it answers a heartbeat the worker
   * sends after accepting (same connection, so in order) only once it has read the accept.
   */
  async function acceptTaken(offers: FakeCall[]): Promise<void> {
    await offered(offers)
    await offers[0].heartbeatRequest()
  }

  /** Accepts with an input subject and gathers the chunks the dispatcher sends to it, as a worker does. */
  function gatherInput(call: FakeCall) {
    const subject = `amp.v1.input.fake-worker.${call.callId}`
    const seqs: number[] = []
    const sizes: number[] = [call.msg.data.length]
    const parts: Uint8Array[] = [call.msg.data]
    const total = Number(call.header(HEADER.inputSize))
    let received = call.msg.data.length
    const whole = new Promise<Buffer>((resolve) => {
      const sub = call.nc.subscribe(subject, {
        callback: (_error, chunk) => {
          seqs.push(Number(chunk.headers?.get(HEADER.seq)))
          sizes.push(chunk.data.length)
          parts.push(chunk.data)
          received += chunk.data.length
          chunk.respond()
          if (received >= total) {
            sub.unsubscribe()
            resolve(Buffer.concat(parts))
          }
        },
      })
      subs.push(sub)
    })
    call.answer('accepted', {[HEADER.inputSubject]: subject})
    return {whole, seqs, sizes}
  }


  describe('with a default nats-server', () => {
    it('answers no_worker at once when no worker subscribes (NATS no responders)', async () => {
      await setUp(nats.url, {acceptTimeoutMs: 5000})
      const started = Date.now()
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      const elapsed = Date.now() - started
      expect(error.code).to.equal('no_worker')
      expect(error.message).to.contain('amp worker start')
      expect(elapsed, 'no responders is immediate, not the accept timeout').to.be.below(1500)
      expect(dispatcher.inFlight).to.equal(0)
    })

    it('sends the call headers and input, and assembles the output and the result', async () => {
      await setUp(nats.url)
      const stdout = randomBytes(2 * 1024 * 1024) // several chunks at the default 1 MiB max_payload
      const stderr = Buffer.from('a log line\n')
      const worker = await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.finish(stdout, stderr, 0)
      })
      const callId = randomUUID()
      const result = await dispatcher.call(callId, SPEC, Buffer.from('hello'))

      const [offer] = worker.offers
      expect(worker.offers).to.have.length(1)
      expect(offer.msg.subject).to.equal(`amp.v1.call.${SPEC.name}`)
      expect(Buffer.from(offer.msg.data).toString()).to.equal('hello')
      expect(offer.header(HEADER.callId)).to.equal(callId)
      expect(offer.header(HEADER.function)).to.equal('echo')
      expect(offer.header(HEADER.image)).to.equal('amp-test/cat:1')
      expect(offer.header(HEADER.timeoutMs)).to.equal('30000')
      expect(offer.header(HEADER.network)).to.equal('none')
      expect(offer.header(HEADER.inputSize)).to.equal('5')
      expect(offer.header(HEADER.replyTo)).to.equal(replySubject(listenerId, callId))

      expect(result).to.include({callId, function: 'echo', exitCode: 0, durationMs: 42, worker: 'fake-worker'})
      expect(result.stderrTruncated).to.equal(false)
      expect(Buffer.compare(result.stdout, stdout)).to.equal(0)
      expect(result.stderr.toString()).to.equal('a log line\n')
      expect(worker.failures).to.deep.equal([])
      expect(dispatcher.inFlight).to.equal(0)
    })

    it('sends the limits, and the environment as base64 KEY=VALUE lines, with a first input chunk made smaller for it', async () => {
      await setUp(nats.url)
      const env = {TOKEN: 'hunter2 = secret', BIG: 'x'.repeat(30 * 1024)}
      const spec = {...SPEC, memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pidsLimit: 32, env}
      let whole: Promise<Buffer> | undefined
      const worker = await fakeWorker(async (call) => {
        whole = gatherInput(call).whole
        await call.finish(await whole)
      })
      const input = randomBytes(1024 * 1024 + 5)
      const result = await dispatcher.call(randomUUID(), spec, input)
      const [offer] = worker.offers
      expect([offer.header(HEADER.memoryBytes), offer.header(HEADER.cpus), offer.header(HEADER.pidsLimit)]).to.deep.equal([
        String(64 * 1024 * 1024),
        '0.5',
        '32',
      ])
      const envHeader = offer.header(HEADER.env)
      expect(Buffer.from(envHeader, 'base64').toString()).to.equal(`BIG=${env.BIG}\nTOKEN=hunter2 = secret\n`)
      // Headers and the first chunk together stay within a chunk's room: max_payload is never passed.
      expect(offer.msg.data.length + envHeader.length).to.equal(chunkSizeFor(listenerNc.info!.max_payload))
      expect(Buffer.compare(result.stdout, input)).to.equal(0)
    })

    it('sends no Amp-Env header for a function without environment', async () => {
      await setUp(nats.url)
      const worker = await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.finish(Buffer.from(''))
      })
      await dispatcher.call(randomUUID(), SPEC, Buffer.from('x'))
      expect(worker.offers[0].msg.headers!.has(HEADER.env)).to.equal(false)
      expect(worker.offers[0].header(HEADER.pidsLimit)).to.equal('256')
    })

    it("passes a function's non-zero exit code and stderr truncation through", async () => {
      await setUp(nats.url)
      await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.output('stdout', Buffer.from('out'))
        await call.result({
          [HEADER.outcome]: 'exited',
          [HEADER.exitCode]: '3',
          [HEADER.durationMs]: '5',
          [HEADER.stdoutSize]: '3',
          [HEADER.stderrSize]: '0',
          [HEADER.stderrTruncated]: 'true',
        })
      })
      const result = await dispatcher.call(randomUUID(), SPEC, new Uint8Array(0))
      expect(result).to.include({exitCode: 3, stderrTruncated: true})
      expect(result.stdout.toString()).to.equal('out')
    })

    it('sends an empty input as one empty message', async () => {
      await setUp(nats.url)
      const worker = await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.finish(Buffer.from('x'))
      })
      await dispatcher.call(randomUUID(), SPEC, new Uint8Array(0))
      expect(worker.offers[0].msg.data).to.have.length(0)
      expect(worker.offers[0].header(HEADER.inputSize)).to.equal('0')
    })

    it('offers the call again when a worker is busy, and succeeds once one accepts', async () => {
      await setUp(nats.url, {busyRetries: 5})
      const worker = await fakeWorker(async (call, offer) => {
        if (offer < 3) return call.answer('busy')
        call.answer('accepted')
        await call.finish(Buffer.from('third time'))
      })
      const result = await dispatcher.call(randomUUID(), SPEC, Buffer.from('in'))
      expect(result.stdout.toString()).to.equal('third time')
      expect(worker.offers).to.have.length(3)
      expect(new Set(worker.offers.map((offer) => offer.callId)).size, 'the same call each time').to.equal(1)
    })

    it('answers no_worker when every offer finds the workers busy', async () => {
      await setUp(nats.url, {busyRetries: 2})
      const worker = await fakeWorker((call) => call.answer('busy'))
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      expect(error.code).to.equal('no_worker')
      expect(error.message).to.contain('busy')
      expect(worker.offers).to.have.length(3)
    })

    it('answers function_failed_to_run with the reason when the worker rejects the call', async () => {
      await setUp(nats.url)
      await fakeWorker((call) => call.answer('rejected', {[HEADER.error]: 'input of 9 bytes is over this worker limit'}))
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('123456789')))
      expect(error.code).to.equal('function_failed_to_run')
      expect(error.message).to.equal('input of 9 bytes is over this worker limit')
    })

    it('answers no_worker after acceptTimeoutMs when a worker gets the call but never answers', async () => {
      await setUp(nats.url, {acceptTimeoutMs: 400})
      const worker = await fakeWorker(() => {})
      const started = Date.now()
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      expect(error.code).to.equal('no_worker')
      expect(error.message).to.contain('400ms')
      expect(Date.now() - started).to.be.within(350, 3000)
      expect(worker.offers).to.have.length(1)
    })

    it('answers function_failed_to_run soon after an accepted worker goes silent', async () => {
      await setUp(nats.url, {workerSilenceMs: 800})
      await fakeWorker((call) => call.answer('accepted')) // then nothing: the worker died
      const started = Date.now()
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      const elapsed = Date.now() - started
      expect(error.code).to.equal('function_failed_to_run')
      expect(error.message).to.contain('fake-worker stopped responding')
      expect(elapsed).to.be.within(800, 2500)
      expect(dispatcher.inFlight).to.equal(0)
    })

    it('keeps waiting for a long call as long as heartbeats come', async () => {
      await setUp(nats.url, {workerSilenceMs: 600})
      await fakeWorker(async (call) => {
        call.answer('accepted')
        for (let i = 0; i < 8; i++) {
          await sleep(200) // a heartbeat every 200 ms: 1.6 s in all, past the 600 ms of silence allowed
          call.heartbeat()
        }
        await call.finish(Buffer.from('slow but alive'))
      })
      const result = await dispatcher.call(randomUUID(), SPEC, Buffer.from('in'))
      expect(result.stdout.toString()).to.equal('slow but alive')
    })

    it('acks heartbeats, saying "gone" once it no longer waits for the call, until it closes (then: no responders)', async () => {
      await setUp(nats.url, {workerSilenceMs: 600})
      const {offers} = await fakeWorker((call) => call.answer('accepted'))
      const calling = ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      await offered(offers)
      expect(await offers[0].heartbeatRequest()).to.equal('')
      expect((await calling).code).to.equal('function_failed_to_run') // it stopped waiting: silence
      expect(await offers[0].heartbeatRequest()).to.equal('gone')
      await dispatcher.close()
      const error = await offers[0].heartbeatRequest().then(() => undefined, (failure: Error) => failure)
      expect(isNoResponders(error), String(error)).to.equal(true)
    })

    it('abandon() stops waiting for a call whose caller hung up, and its heartbeats get "gone"', async () => {
      await setUp(nats.url)
      const {offers} = await fakeWorker((call) => call.answer('accepted'))
      const callId = randomUUID()
      const calling = ampError(dispatcher.call(callId, SPEC, Buffer.from('in')))
      await offered(offers)
      expect(await offers[0].heartbeatRequest()).to.equal('')
      dispatcher.abandon(callId)
      expect((await calling).message).to.equal('the caller hung up before the call finished')
      expect(dispatcher.inFlight).to.equal(0)
      expect(await offers[0].heartbeatRequest()).to.equal('gone')
    })

    it('connectionLost() refuses at once a call no worker has taken yet, instead of waiting out the accept timeout', async () => {
      await setUp(nats.url, {acceptTimeoutMs: 5000})
      const {offers} = await fakeWorker(() => {}) // gets the offer, never answers: as if the answer was lost with the connection
      const started = Date.now()
      const calling = ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      await offered(offers)
      dispatcher.connectionLost()
      const error = await calling
      expect(error.code).to.equal('service_unavailable')
      expect(error.message).to.contain('lost NATS')
      expect(Date.now() - started, 'well before the 5 s accept timeout').to.be.below(2000)
      expect(dispatcher.inFlight).to.equal(0)
    })

    it('connectionLost() leaves a call a worker has taken to finish (the silence watchdog covers a dead one)', async () => {
      await setUp(nats.url, {workerSilenceMs: 2000})
      let lost!: () => void
      const told = new Promise<void>((resolve) => {
        lost = resolve
      })
      const {offers} = await fakeWorker(async (call) => {
        call.answer('accepted')
        await told
        await call.finish(Buffer.from('still here'))
      })
      const calling = dispatcher.call(randomUUID(), SPEC, Buffer.from('in'))
      await acceptTaken(offers)
      dispatcher.connectionLost()
      lost()
      expect((await calling).stdout.toString()).to.equal('still here')
    })

    it('abandon() during the offer ends the wait at once, and the worker that then accepts is told "gone"', async () => {
      await setUp(nats.url, {acceptTimeoutMs: 5000})
      let accept!: () => void
      const hold = new Promise<void>((resolve) => {
        accept = resolve
      })
      const {offers} = await fakeWorker(async (call) => {
        await hold
        call.answer('accepted')
      })
      const callId = randomUUID()
      const started = Date.now()
      const calling = ampError(dispatcher.call(callId, SPEC, Buffer.from('in')))
      await offered(offers)
      dispatcher.abandon(callId)
      expect((await calling).message).to.equal('the caller hung up before the call finished')
      expect(Date.now() - started).to.be.below(2000)
      accept()
      expect(await offers[0].heartbeatRequest()).to.equal('gone')
    })

    it('close() gives up the calls still out with service_unavailable, so nothing waits for their workers', async () => {
      await setUp(nats.url)
      const {offers} = await fakeWorker(async (call) => {
        call.answer('accepted')
        const beat = setInterval(() => call.heartbeat(), 100)
        await sleep(3000) // a call that runs, alive, well past the close()
        clearInterval(beat)
      })
      const calling = ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      await acceptTaken(offers)
      await dispatcher.close()
      const error = await calling
      expect(error.code).to.equal('service_unavailable')
      expect(error.message).to.equal('the listener shut down before the call finished')
      expect(dispatcher.inFlight).to.equal(0)
    })

    it('gives up with function_timeout when a call runs past its timeout plus the queue allowance', async () => {
      await setUp(nats.url, {queueAllowanceMs: 300})
      await fakeWorker(async (call) => {
        call.answer('accepted')
        const beat = setInterval(() => call.heartbeat(), 100)
        await sleep(3000) // a call that runs, alive, well past its 400 ms timeout and the 300 ms allowance
        clearInterval(beat)
      })
      const started = Date.now()
      const error = await ampError(dispatcher.call(randomUUID(), {...SPEC, timeoutMs: 400}, Buffer.from('in')))
      expect(error.code).to.equal('function_timeout')
      expect(Date.now() - started).to.be.within(650, 2500)
    })

    it("answers function_timeout when the worker reports the function's timeout", async () => {
      await setUp(nats.url)
      await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.result({[HEADER.outcome]: 'timeout', [HEADER.durationMs]: '2000', [HEADER.stdoutSize]: '0', [HEADER.stderrSize]: '0'})
      })
      const error = await ampError(dispatcher.call(randomUUID(), {...SPEC, timeoutMs: 2000}, Buffer.from('in')))
      expect(error.code).to.equal('function_timeout')
      expect(error.message).to.equal('function echo timed out after 2s; its container was killed')
    })

    it('answers function_failed_to_run with the reason when the container could not run', async () => {
      await setUp(nats.url)
      await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.result({
          [HEADER.outcome]: 'failed',
          [HEADER.error]: 'Error response from daemon: No such image: amp-test/cat:1',
          [HEADER.stdoutSize]: '0',
          [HEADER.stderrSize]: '0',
        })
      })
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      expect(error.code).to.equal('function_failed_to_run')
      expect(error.message).to.equal('Error response from daemon: No such image: amp-test/cat:1')
    })

    it('fails the call when the result announces more output than arrived', async () => {
      await setUp(nats.url)
      await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.output('stdout', Buffer.from('12345'))
        await call.result({
          [HEADER.outcome]: 'exited',
          [HEADER.exitCode]: '0',
          [HEADER.stdoutSize]: '10',
          [HEADER.stderrSize]: '0',
        })
      })
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      expect(error.code).to.equal('function_failed_to_run')
      expect(error.message).to.contain('lost')
    })

    it('fails the call when the stderr size does not match', async () => {
      await setUp(nats.url)
      await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.output('stderr', Buffer.from('abc'))
        await call.result({[HEADER.outcome]: 'exited', [HEADER.exitCode]: '0', [HEADER.stdoutSize]: '0', [HEADER.stderrSize]: '2'})
      })
      expect((await ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))).code).to.equal('function_failed_to_run')
    })

    it('fails the call when output chunks arrive out of order', async () => {
      await setUp(nats.url)
      await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.chunk('stdout', 1, Buffer.from('second'))
        await call.chunk('stdout', 0, Buffer.from('first'))
        await call.result({[HEADER.outcome]: 'exited', [HEADER.exitCode]: '0', [HEADER.stdoutSize]: '11', [HEADER.stderrSize]: '0'})
      })
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, Buffer.from('in')))
      expect(error.code).to.equal('function_failed_to_run')
      expect(error.message).to.contain('out of order')
    })

    it('fails the call when the result of an exited function has no valid exit code', async () => {
      await setUp(nats.url)
      for (const [i, exitCode] of [undefined, 'abc', '-1', '1.5', '256'].entries()) {
        const fn = `no-exit-code-${i}`
        await fakeWorker(async (call) => {
          call.answer('accepted')
          const fields: Record<string, string> = {[HEADER.outcome]: 'exited', [HEADER.stdoutSize]: '0', [HEADER.stderrSize]: '0'}
          if (exitCode !== undefined) fields[HEADER.exitCode] = exitCode
          await call.result(fields)
        }, fn)
        const error = await ampError(dispatcher.call(randomUUID(), {...SPEC, name: fn}, Buffer.from('in')))
        expect(error.code, String(exitCode)).to.equal('function_failed_to_run')
        expect(error.message).to.contain('exit code')
      }
    })

    it('answers a late output chunk for a call already answered, so the worker is not left waiting', async () => {
      await setUp(nats.url)
      let lateCall: FakeCall | undefined
      await fakeWorker(async (call) => {
        lateCall = call
        call.answer('accepted')
        await call.finish(Buffer.from('done'))
      })
      await dispatcher.call(randomUUID(), SPEC, Buffer.from('in'))
      // Rejects (no responders, or a timeout) if the listener ignored it.
      await lateCall!.chunk('stdout', 5, Buffer.from('late'))
    })

    it('gives each of many concurrent calls its own output', async () => {
      await setUp(nats.url)
      await fakeWorker(async (call) => {
        call.answer('accepted')
        await sleep(Math.random() * 50)
        await call.finish(Buffer.concat([Buffer.from('out:'), call.msg.data]))
      })
      const inputs = Array.from({length: 20}, (_, i) => `input-${i}`)
      const results = await Promise.all(inputs.map((input) => dispatcher.call(randomUUID(), SPEC, Buffer.from(input))))
      expect(results.map((result) => result.stdout.toString())).to.deep.equal(inputs.map((input) => `out:${input}`))
      expect(dispatcher.inFlight).to.equal(0)
    })
  })

  describe('with a 64 KiB max_payload (chunked input)', () => {
    const MAX_PAYLOAD = 64 * 1024
    let small: ServiceHandle

    before(async () => {
      small = await startNats({maxPayload: MAX_PAYLOAD})
    })
    after(async () => {
      await small?.stop()
    })


    it('sends a large input in order and complete, each message within max_payload', async () => {
      await setUp(small.url)
      const input = randomBytes(300 * 1024 + 123)
      let gathered: ReturnType<typeof gatherInput> | undefined
      await fakeWorker(async (call) => {
        gathered = gatherInput(call)
        const whole = await gathered.whole
        // Echo it back in chunks as large as the server allows, so output is reassembled too.
        await call.finish(whole, Buffer.from('ok'))
      })
      expect(listenerNc.info?.max_payload).to.equal(MAX_PAYLOAD)
      const result = await dispatcher.call(randomUUID(), SPEC, input)

      const size = chunkSizeFor(MAX_PAYLOAD)
      const expectedChunks = Math.ceil(input.length / size)
      expect(gathered!.sizes).to.have.length(expectedChunks)
      expect(expectedChunks).to.be.above(4)
      expect(gathered!.seqs).to.deep.equal(Array.from({length: expectedChunks - 1}, (_, i) => i + 1))
      for (const chunkSize of gathered!.sizes) expect(chunkSize).to.be.at.most(MAX_PAYLOAD)
      expect(Buffer.compare(await gathered!.whole, input)).to.equal(0)
      expect(Buffer.compare(result.stdout, input)).to.equal(0)
      expect(result.stderr.toString()).to.equal('ok')
    })

    it('fails the call when a worker accepts a large input without asking for the rest', async () => {
      await setUp(small.url)
      await fakeWorker((call) => call.answer('accepted'))
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, randomBytes(200 * 1024)))
      expect(error.code).to.equal('function_failed_to_run')
      expect(error.message).to.contain('rest of the input')
    })

    it('fails the call at once when the worker stops taking input (no responders on its input subject)', async () => {
      await setUp(small.url)
      await fakeWorker((call) => call.answer('accepted', {[HEADER.inputSubject]: `amp.v1.input.gone.${call.callId}`}))
      const started = Date.now()
      const error = await ampError(dispatcher.call(randomUUID(), SPEC, randomBytes(200 * 1024)))
      expect(error.code).to.equal('function_failed_to_run')
      expect(error.message).to.contain('stopped taking input')
      expect(Date.now() - started).to.be.below(3000)
    })
  })

  describe('streamed calls (onStdout: Amp-Stream)', () => {
    it('marks the call Amp-Stream: true only when streaming, and gives each stdout chunk to the sink, not the result', async () => {
      await setUp(nats.url)
      const stdout = randomBytes(1536 * 1024) // several chunks at the default 1 MiB max_payload
      // A worker that sends everything after the exit, as one that does not know Amp-Stream does: still streamed to the sink.
      const worker = await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.finish(stdout, Buffer.from('log'), 3)
      })
      const plain = await dispatcher.call(randomUUID(), SPEC, Buffer.from('in'))
      const got: Array<{chunk: Buffer; worker: string}> = []
      const streamed = await dispatcher.call(randomUUID(), SPEC, Buffer.from('in'), {
        onStdout: (chunk, id) => void got.push({chunk: Buffer.from(chunk), worker: id}),
      })
      expect(worker.offers.map((offer) => offer.msg.headers?.get(HEADER.stream) ?? '')).to.deep.equal(['', 'true'])
      expect(plain.stdout.equals(stdout)).to.equal(true)
      expect(streamed.stdout.length).to.equal(0)
      expect(streamed).to.include({exitCode: 3, worker: 'fake-worker'})
      expect(streamed.stderr.toString()).to.equal('log')
      expect(got.length).to.be.above(1)
      expect(Buffer.concat(got.map((item) => item.chunk)).equals(stdout)).to.equal(true)
      expect(got.every((item) => item.worker === 'fake-worker')).to.equal(true)
      expect(worker.failures).to.deep.equal([])
    })

    it('acks a stdout chunk only once the sink has taken it (flow control)', async () => {
      await setUp(nats.url)
      const order: string[] = []
      let release!: () => void
      const held = new Promise<void>((resolve) => (release = resolve))
      await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.chunk('stdout', 0, Buffer.from('first'))
        order.push('acked')
        await call.result({[HEADER.outcome]: 'exited', [HEADER.exitCode]: '0', [HEADER.durationMs]: '1', [HEADER.stdoutSize]: '5', [HEADER.stderrSize]: '0'})
      })
      const done = dispatcher.call(randomUUID(), SPEC, Buffer.from('in'), {
        onStdout: async () => {
          order.push('sink')
          await held
          order.push('sink done')
        },
      })
      await waitUntil('the first chunk in the sink', () => order.includes('sink'), 5000, 10)
      await sleep(200) // room for a premature ack to show
      release()
      await done
      expect(order).to.deep.equal(['sink', 'sink done', 'acked'])
    })

    it('fails with CallLost when the result counts more stdout than arrived', async () => {
      await setUp(nats.url)
      await fakeWorker(async (call) => {
        call.answer('accepted')
        await call.chunk('stdout', 0, Buffer.from('abc'))
        await call.result({[HEADER.outcome]: 'exited', [HEADER.exitCode]: '0', [HEADER.durationMs]: '1', [HEADER.stdoutSize]: '10', [HEADER.stderrSize]: '0'})
      })
      const error = await dispatcher.call(randomUUID(), SPEC, Buffer.from('in'), {onStdout: () => {}}).catch((failure: unknown) => failure)
      expect(error).to.be.instanceOf(CallLost)
      expect((error as Error).message).to.equal('part of the output was lost between worker and listener')
    })
  })
})
