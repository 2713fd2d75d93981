/**
 * Asynchronous calls end to end (docs/async.md, #5): a real nats-server with JetStream, etcd and
 * dockerd. Each test checks what the caller sees and what is left behind: the call's record, its
 * input object, dead letters, queued messages and containers.
 */
import {randomBytes, randomUUID} from 'node:crypto'
import {createServer, type IncomingHttpHeaders, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'
import {expect} from 'chai'
import {request} from 'undici'

import {AsyncStore, CALL_STREAM, DEAD_STREAM} from '../../src/runtime/shared/async-store.js'
import {retryDelayMs} from '../../src/runtime/worker/async-worker.js'
import type {CallRecord, DeadLetter} from '../../src/runtime/shared/http-contract.js'
import {type Listener, startListener} from '../../src/runtime/listener/listener.js'
import {createLogger, silentLogger} from '../../src/runtime/shared/logger.js'
import {connectNats, type NatsConnection} from '../../src/runtime/shared/nats.js'
import {containersOfCall, expectNoContainer} from '../helpers/containers.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {createFunction, startTestStack, type TestStack} from '../helpers/stack.js'
import {waitFor, waitUntil} from '../helpers/wait.js'

const MiB = 1024 * 1024
const ASYNC = {'prefer': 'respond-async'}
const LEASE = {leaseMs: 6000}
const RETRY_BASE_MS = 200
const ADMIN_TOKEN = 'admin-token-for-async-tests'
const INVOKE_TOKEN = 'invoke-token-for-async-tests'

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  json: () => any // eslint-disable-line @typescript-eslint/no-explicit-any
}

type RequestHeaders = Record<string, string | string[]>

async function send(url: string, options: {method?: 'GET' | 'POST'; body?: Uint8Array | string; headers?: RequestHeaders} = {}): Promise<Answer> {
  const res = await request(url, {method: options.method ?? 'GET', body: options.body, headers: options.headers})
  const body = Buffer.from(await res.body.arrayBuffer())
  return {status: res.statusCode, headers: res.headers as IncomingHttpHeaders, body, json: () => JSON.parse(body.toString('utf8'))}
}

/** A local HTTP server that records each POST and answers with the next status of `statuses` (the last one repeats). */
async function startReceiver(statuses: number[]): Promise<{url: string; got: Array<{headers: IncomingHttpHeaders; body: CallRecord}>; close(): Promise<void>}> {
  const got: Array<{headers: IncomingHttpHeaders; body: CallRecord}> = []
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (chunk: Buffer) => parts.push(chunk))
    req.on('end', () => {
      got.push({headers: req.headers, body: JSON.parse(Buffer.concat(parts).toString('utf8'))})
      res.statusCode = statuses[Math.min(got.length - 1, statuses.length - 1)]
      res.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  return {url: `http://127.0.0.1:${port}/hook`, got, close: () => new Promise((resolve) => server.close(() => resolve()))}
}

describe('asynchronous calls end to end: listener, JetStream, worker, docker', function () {
  this.timeout(120_000)
  let stack: TestStack
  let listener: Listener
  let secured: Listener
  let nc: NatsConnection
  let store: AsyncStore
  /** The workers' log lines, parsed: attempts are counted from them. */
  const logLines: Array<Record<string, unknown>> = []

  const call = (fn: string, body: Uint8Array | string, headers: RequestHeaders = ASYNC) =>
    send(`${listener.url}/${fn}`, {method: 'POST', body, headers})
  const status = (id: string, query = '', on = listener, headers: Record<string, string> = {}) =>
    send(`${on.url}/_amp/v1/calls/${id}${query}`, {headers})
  /** The record once final, asking with ?wait until it is. */
  const final = async (id: string): Promise<CallRecord> =>
    waitFor(`call ${id} to end`, async () => {
      const res = await status(id, '?wait=20s')
      expect(res.status, res.body.toString()).to.equal(200)
      const record = res.json() as CallRecord
      return ['succeeded', 'failed'].includes(record.state) ? record : undefined
    }, 60_000, 0)
  const startedLines = (id: string) => logLines.filter((line) => line.msg === 'asynchronous call started' && line.call === id)
  const accepted = (res: Answer): string => {
    expect(res.status, res.body.toString()).to.equal(202)
    return res.json().callId
  }
  const deadLetters = async (query = ''): Promise<DeadLetter[]> => {
    const res = await send(`${listener.url}/_amp/v1/dead-letters${query}`)
    expect(res.status, res.body.toString()).to.equal(200)
    return res.json().deadLetters
  }
  /**
   * Whether the call's input object is still stored. Metadata only: reading the object while the
   * worker deletes it can hang (nats.js waits for chunks that were purged).
   */
  const inputKept = async (id: string) => {
    const info = await store.io.info(`${id}.in`)
    return info !== null && !info.deleted
  }
  /** Nothing of the call is left but its record and output: the input object is deleted (just after the ack), no container remains. */
  const expectCleanedUp = async (id: string) => {
    await waitFor(`input object of ${id} to be deleted`, async () => ((await inputKept(id)) ? undefined : true), 10_000)
    await expectNoContainer(id)
  }

  before(async () => {
    const logger = createLogger({format: 'json', level: 'info', write: (line) => logLines.push(JSON.parse(line))})
    stack = await startTestStack({
      worker: {concurrency: 2, logger, async: {...LEASE, retryBaseMs: RETRY_BASE_MS}},
      listener: {async: {...LEASE, callbacks: {retryBaseMs: RETRY_BASE_MS, timeoutMs: 2000}}},
    })
    listener = stack.listener
    secured = await startListener({
      host: '127.0.0.1',
      port: 0,
      logger: silentLogger,
      nats: stack.nats.url,
      etcd: [stack.etcd.url],
      auth: {token: ADMIN_TOKEN, invokeToken: INVOKE_TOKEN},
      async: {...LEASE, callbacks: {retryBaseMs: RETRY_BASE_MS, timeoutMs: 2000}},
    })
    nc = await connectNats(stack.nats.url, 'async test')
    store = await AsyncStore.open(nc, {...LEASE, retentionMs: 24 * 3_600_000})
    await createFunction(listener, 'cat', {image: TEST_IMAGES.cat})
    await createFunction(listener, 'slow', {image: TEST_IMAGES.slow})
    await createFunction(listener, 'fire', {image: TEST_IMAGES.cat, fireAndForget: true})
    await createFunction(listener, 'fail-once', {image: TEST_IMAGES.fail, retries: 0})
    await createFunction(listener, 'fail-thrice', {image: TEST_IMAGES.fail, retries: 2})
    await createFunction(listener, 'sleepy', {image: TEST_IMAGES.sleep, timeoutMs: 1000, retries: 0})
    await createFunction(listener, 'dead-a', {image: TEST_IMAGES.fail, retries: 0})
    await createFunction(listener, 'dead-b', {image: TEST_IMAGES.fail, retries: 0})
    // The worker sets up its puller in the background: wait until it takes calls, so timings below are the calls' own.
    await waitFor('the worker to take asynchronous calls', async () => (logLines.some((l) => l.msg === 'taking asynchronous calls') ? true : undefined))
  })

  afterEach(function () {
    // What the workers said is the first thing to read when a test here fails.
    if (this.currentTest?.state === 'failed') console.error(logLines.slice(-40).map((line) => JSON.stringify(line)).join('\n'))
  })

  after(async () => {
    await secured?.close()
    await nc?.close()
    await stack?.stop()
  })

  describe('accepting a call', () => {
    it('answers Prefer: respond-async with 202, the call id, Location and Preference-Applied, then runs it', async () => {
      const res = await call('cat', 'hello async')
      expect(res.status).to.equal(202)
      const body = res.json()
      const id = String(res.headers['amp-call-id'])
      expect(body).to.deep.equal({callId: id, function: 'cat', state: 'queued', statusUrl: `/_amp/v1/calls/${id}`})
      expect(res.headers.location).to.equal(`/_amp/v1/calls/${id}`)
      expect(res.headers['preference-applied']).to.equal('respond-async')
      expect(res.headers['content-type']).to.equal('application/json')

      const record = await final(id)
      expect(record).to.include({callId: id, function: 'cat', state: 'succeeded', attempts: 1, maxAttempts: 3, deadLetter: false, outcome: 'exited'})
      expect(record.worker).to.equal(stack.worker.id)
      expect(record).to.not.have.any.keys('error', 'nextAttemptAt', 'exit', 'heartbeatAt', 'callback', 'callbackUrl')
      expect(Date.parse(record.finishedAt!)).to.be.at.least(Date.parse(record.startedAt!))
      expect(Date.parse(record.startedAt!)).to.be.at.least(Date.parse(record.createdAt))
      expect(record.result).to.include({callId: id, function: 'cat', exitCode: 0, stderrTruncated: false, worker: stack.worker.id})
      expect(Buffer.from(record.result!.stdout, 'base64').toString()).to.equal('hello async')
      expect(Buffer.from(record.result!.stderr, 'base64').toString()).to.equal('')
      expect(startedLines(id)).to.have.length(1)
      await expectCleanedUp(id)
      // Acked: the work queue keeps nothing of it.
      expect((await store.jsm.streams.info(CALL_STREAM)).state.messages).to.equal(0)
    })

    it('finds respond-async among other preferences (Prefer: wait=5, respond-async)', async () => {
      const res = await call('cat', 'among others', {prefer: 'wait=5, respond-async'})
      const id = accepted(res)
      expect(res.headers['preference-applied']).to.equal('respond-async')
      expect((await final(id)).state).to.equal('succeeded')
    })

    it('answers 202 for a fire-and-forget function without Prefer, and says no preference was applied', async () => {
      const res = await call('fire', 'forget me', {})
      const id = accepted(res)
      expect(res.headers.location).to.equal(`/_amp/v1/calls/${id}`)
      expect(res.headers).to.not.have.property('preference-applied')
      const record = await final(id)
      expect(record.state).to.equal('succeeded')
      expect(Buffer.from(record.result!.stdout, 'base64').toString()).to.equal('forget me')
      await expectCleanedUp(id)
    })

    it('leaves sync calls as they were: 200 with stdout, and nothing in JetStream', async () => {
      const before = (await store.jsm.streams.info(CALL_STREAM)).state.last_seq
      const res = await call('cat', 'sync still', {})
      expect(res.status).to.equal(200)
      expect(res.body.toString()).to.equal('sync still')
      const id = String(res.headers['amp-call-id'])
      expect((await store.jsm.streams.info(CALL_STREAM)).state.last_seq).to.equal(before)
      expect(await store.getRecord(id)).to.equal(undefined)
      expect((await status(id)).status).to.equal(404)
    })

    it('answers 400 to an invalid Amp-Callback-Url and queues nothing', async () => {
      // The header twice: Node joins the values, which must not pass for one URL.
      for (const url of ['ftp://127.0.0.1/x', 'not a url', `http://example.com/${'x'.repeat(2100)}`, ['http://127.0.0.1/a', 'http://127.0.0.1/b']]) {
        const res = await call('cat', 'never', {...ASYNC, 'amp-callback-url': url})
        expect(res.status, String(url)).to.equal(400)
        expect(res.json().error.code).to.equal('bad_request')
        expect(res.json().error.message).to.contain('Amp-Callback-Url')
        const id = String(res.headers['amp-call-id'])
        expect(await store.getRecord(id)).to.equal(undefined)
        expect(await inputKept(id)).to.equal(false)
      }
    })
  })

  describe('status', () => {
    it('shows a running call (attempt, worker, no result) and ?wait answers once it is final, not at the end of the wait', async () => {
      const id = accepted(await call('slow', 'slowly'))
      const running = await waitFor('the call to run', async () => {
        const record = (await status(id)).json() as CallRecord
        return record.state === 'running' ? record : undefined
      })
      expect(running).to.include({callId: id, function: 'slow', attempts: 1, maxAttempts: 3, deadLetter: false, worker: stack.worker.id})
      expect(running.startedAt).to.be.a('string')
      expect(running).to.not.have.any.keys('result', 'finishedAt', 'outcome', 'exit', 'heartbeatAt', 'error')
      // The container is labelled with the call id: the "no container left" checks below can fail.
      await waitFor('the call\'s container', async () => ((await containersOfCall(id)).length === 1 ? true : undefined))

      const started = Date.now()
      const res = await status(id, '?wait=50s')
      expect(res.status).to.equal(200)
      expect(res.json().state).to.equal('succeeded')
      expect(Buffer.from(res.json().result.stdout, 'base64').toString()).to.equal('slowly')
      expect(Date.now() - started, 'waited for the call, not the whole wait').to.be.below(30_000)
      await expectCleanedUp(id)
    })

    it('answers ?wait with the current record when the wait ends first', async () => {
      const id = accepted(await call('slow', 'x'))
      const res = await status(id, '?wait=300ms')
      expect(res.status).to.equal(200)
      expect(res.json().state).to.be.oneOf(['queued', 'running'])
      expect((await final(id)).state).to.equal('succeeded')
    })

    it('refuses a wait over 60 s or malformed with 400', async () => {
      const id = randomUUID()
      for (const wait of ['61s', '2m', 'soon', '0']) {
        const res = await status(id, `?wait=${wait}`)
        expect(res.status, wait).to.equal(400)
        expect(res.json().error.code).to.equal('bad_request')
      }
      // 60 s itself passes the check: the unknown id is what answers.
      expect((await status(id, '?wait=60s')).json().error.code).to.equal('call_not_found')
    })

    it('answers 404 call_not_found for an unknown or malformed call id', async () => {
      for (const id of [randomUUID(), '-starts-with-dash', 'x'.repeat(65), 'bad%20id', 'a.b']) {
        const res = await status(id)
        expect(res.status, id).to.equal(404)
        expect(res.json().error.code, id).to.equal('call_not_found')
      }
    })

    it("gives a failing function's stdout, stderr and exit code in the result", async () => {
      const id = accepted(await call('fail-once', 'partial output'))
      const record = await final(id)
      expect(record).to.include({state: 'failed', attempts: 1, maxAttempts: 1, deadLetter: true, outcome: 'exited', error: 'the function exited 3'})
      expect(record.result!.exitCode).to.equal(3)
      expect(Buffer.from(record.result!.stdout, 'base64').toString()).to.equal('partial output')
      expect(Buffer.from(record.result!.stderr, 'base64').toString()).to.equal('boom\n')
      await expectCleanedUp(id)
    })
  })

  describe('failures', () => {
    it('runs a function that always fails retries + 1 times with growing backoff, then dead-letters it once', async () => {
      const id = accepted(await call('fail-thrice', 'again'))
      // Polled fast: each retrying record says when the next attempt is due.
      const retrying = new Map<number, CallRecord>()
      let state = ''
      await waitUntil(() => `the call to end, retried (last state: ${state})`, async () => {
        const current = (await status(id)).json() as CallRecord
        state = current.state
        if (current.state === 'retrying') retrying.set(current.attempts, current)
        return current.state === 'failed' || current.state === 'succeeded'
      }, 60_000, 25)
      const record = (await status(id)).json() as CallRecord
      expect(record).to.include({state: 'failed', attempts: 3, maxAttempts: 3, deadLetter: true, error: 'the function exited 3'})
      expect(record).to.not.have.property('nextAttemptAt')
      expect(record.result!.exitCode).to.equal(3)

      const starts = startedLines(id)
      expect(starts.map((line) => line.attempt)).to.deep.equal([1, 2, 3])
      // Backoff: each attempt starts no sooner than its delay after the previous one.
      for (const n of [1, 2]) {
        const gap = Date.parse(String(starts[n].time)) - Date.parse(String(starts[n - 1].time))
        expect(gap, `gap before attempt ${n + 1}`).to.be.at.least(retryDelayMs(n, RETRY_BASE_MS))
      }
      expect(retrying.size, 'retrying records seen').to.be.at.least(1)
      for (const [attempt, seen] of retrying) {
        expect(seen.error).to.equal('the function exited 3')
        expect(Date.parse(seen.nextAttemptAt!) - Date.parse(seen.startedAt!)).to.be.at.least(retryDelayMs(attempt, RETRY_BASE_MS))
      }

      const letters = (await deadLetters('?function=fail-thrice')).filter((letter) => letter.callId === id)
      expect(letters).to.have.length(1)
      expect(letters[0]).to.include({callId: id, function: 'fail-thrice', attempts: 3, exitCode: 3, error: 'the function exited 3'})
      await expectCleanedUp(id)
      // Acked for good: the work queue holds nothing that could run it again.
      expect((await store.jsm.streams.info(CALL_STREAM)).state.messages).to.equal(0)
    })

    it('records a timeout: outcome timeout, an error, no result', async () => {
      const id = accepted(await call('sleepy', ''))
      const record = await final(id)
      expect(record).to.include({state: 'failed', outcome: 'timeout', attempts: 1, deadLetter: true})
      expect(record.error).to.contain('timed out')
      expect(record).to.not.have.property('result')
      const letter = (await deadLetters('?function=sleepy')).find((l) => l.callId === id)
      expect(letter).to.include({attempts: 1})
      expect(letter).to.not.have.property('exitCode')
      await expectCleanedUp(id)
    })

    it('lists dead letters oldest first, by function, and the last ?limit of them', async () => {
      const a = accepted(await call('dead-a', 'a'))
      await final(a)
      const b = accepted(await call('dead-b', 'b'))
      await final(b)
      expect((await deadLetters('?function=dead-a')).map((l) => l.callId)).to.deep.equal([a])
      expect((await deadLetters('?function=dead-b')).map((l) => l.callId)).to.deep.equal([b])
      expect((await deadLetters('?limit=1')).map((l) => l.callId)).to.deep.equal([b])
      expect((await deadLetters('?limit=2')).map((l) => l.callId)).to.deep.equal([a, b])
      const all = await deadLetters()
      expect(all.slice(-2).map((l) => l.callId)).to.deep.equal([a, b])
      expect(all).to.have.length((await store.jsm.streams.info(DEAD_STREAM)).state.messages)
      expect(new Set(all.map((l) => l.callId)).size, 'each call dead-lettered once').to.equal(all.length)
      for (const query of ['?limit=0', '?limit=1001', '?limit=x', '?function=Bad_Name']) {
        expect((await send(`${listener.url}/_amp/v1/dead-letters${query}`)).status, query).to.equal(400)
      }
    })

    it('reports the queue and the dead letters in the listener metrics, and the outcomes in the worker metrics', async () => {
      const id = accepted(await call('dead-a', 'counted'))
      await final(id)
      const lettersKept = (await store.jsm.streams.info(DEAD_STREAM)).state.messages
      // The gauges read JetStream at most every 2 s: wait for a reading taken after the call ended.
      let text = ''
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1])
      await waitUntil(() => `the queue gauges to show the dead letter and an empty queue:\n${text}`, async () => {
        text = (await send(`${listener.url}/_amp/v1/metrics`)).body.toString('utf8')
        return value('amp_async_dead_letters') === lettersKept && value('amp_async_calls_waiting') === 0 && value('amp_async_calls_taken') === 0
      }, 10_000, 200)
      expect(value('amp_async_dead_letters')).to.equal(lettersKept)
      expect(value('amp_async_calls_waiting')).to.equal(0)
      expect(value('amp_async_calls_taken')).to.equal(0)
      // The worker counts the outcome just after it stored the final record.
      const workerText = () => (stack.worker as unknown as {metrics: {registry: {metrics(): Promise<string>}}}).metrics.registry.metrics()
      const deadLettered = /^amp_worker_async_deliveries_total\{function="dead-a",outcome="dead_lettered"\} [1-9]/m
      await waitUntil('the worker to count the dead-lettered delivery', async () => deadLettered.test(await workerText()), 10_000)
      expect(await workerText()).to.match(deadLettered)
    })
  })

  describe('callbacks', () => {
    it('POSTs the final record once to the callback URL', async () => {
      const receiver = await startReceiver([200])
      try {
        const id = accepted(await call('cat', 'call me back', {...ASYNC, 'amp-callback-url': receiver.url}))
        const record = await waitFor('the callback', async () => {
          const current = (await status(id)).json() as CallRecord
          return current.callback?.state === 'delivered' ? current : undefined
        })
        expect(record.callbackUrl).to.equal(receiver.url)
        expect(record.callback).to.deep.equal({state: 'delivered', attempts: 1, status: 200})
        expect(receiver.got).to.have.length(1)
        const [{headers, body}] = receiver.got
        expect(headers['amp-call-id']).to.equal(id)
        expect(headers['amp-call-state']).to.equal('succeeded')
        expect(headers['content-type']).to.equal('application/json')
        expect(body).to.include({callId: id, function: 'cat', state: 'succeeded'})
        expect(Buffer.from(body.result!.stdout, 'base64').toString()).to.equal('call me back')
        // Once is enough: give a duplicate the time to show up.
        await sleep(1000)
        expect(receiver.got).to.have.length(1)
      } finally {
        await receiver.close()
      }
    })

    it('never shows the credentials of a callback URL in the record', async () => {
      const id = accepted(await call('cat', 'secret hook', {...ASYNC, 'amp-callback-url': 'http://hook:s3cret@127.0.0.1:9/hook'}))
      const answer = await status(id)
      expect(answer.body.toString('utf8')).to.not.contain('s3cret')
      expect((answer.json() as CallRecord).callbackUrl).to.equal('http://<redacted>@127.0.0.1:9/hook')
    })

    it('sends again after a 500 and records the delivery on the second attempt', async () => {
      const receiver = await startReceiver([500, 200])
      try {
        const id = accepted(await call('cat', 'retry me', {...ASYNC, 'amp-callback-url': receiver.url}))
        const record = await waitFor('the callback', async () => {
          const current = (await status(id)).json() as CallRecord
          return current.callback?.state === 'delivered' ? current : undefined
        })
        expect(record.callback).to.deep.equal({state: 'delivered', attempts: 2, status: 200})
        expect(receiver.got.map((post) => post.headers['amp-call-id'])).to.deep.equal([id, id])
        // Twice is enough: give a third delivery the time to show up.
        await sleep(1000)
        expect(receiver.got).to.have.length(2)
      } finally {
        await receiver.close()
      }
    })
  })

  describe('bodies', () => {
    it('round-trips an 8 MiB binary body byte for byte', async () => {
      const input = randomBytes(8 * MiB)
      const id = accepted(await call('cat', input))
      const record = await final(id)
      expect(record.state).to.equal('succeeded')
      const output = Buffer.from(record.result!.stdout, 'base64')
      expect(output.length).to.equal(input.length)
      expect(output.equals(input)).to.equal(true)
      await expectCleanedUp(id)
    })

    it('answers 413 to a body over the limit and queues nothing', async () => {
      const before = (await store.jsm.streams.info(CALL_STREAM)).state.last_seq
      const res = await call('cat', Buffer.alloc(8 * MiB + 1))
      expect(res.status).to.equal(413)
      expect(res.json().error.code).to.equal('input_too_large')
      const id = String(res.headers['amp-call-id'])
      expect((await status(id)).status).to.equal(404)
      expect(await inputKept(id)).to.equal(false)
      expect((await store.jsm.streams.info(CALL_STREAM)).state.last_seq).to.equal(before)
    })
  })

  describe('tokens', () => {
    it('lets the invoke token call and read the record, and keeps dead letters for the admin token', async () => {
      const invoke = {authorization: `Bearer ${INVOKE_TOKEN}`}
      const res = await send(`${secured.url}/cat`, {method: 'POST', body: 'with a token', headers: {...ASYNC, ...invoke}})
      const id = accepted(res)
      expect((await status(id, '', secured)).status).to.equal(401)
      const read = await status(id, '?wait=20s', secured, invoke)
      expect(read.status).to.equal(200)
      expect(read.json().callId).to.equal(id)
      expect((await status(id, '', secured, {authorization: `Bearer ${ADMIN_TOKEN}`})).status).to.equal(200)
      const list = (headers: Record<string, string>) => send(`${secured.url}/_amp/v1/dead-letters`, {headers})
      expect((await list(invoke)).status).to.equal(403)
      expect((await list({})).status).to.equal(401)
      expect((await list({authorization: `Bearer ${ADMIN_TOKEN}`})).status).to.equal(200)
    })
  })

  // Last: these stop the stack's worker.
  describe('worker restarts', () => {
    it('finishes and records a call that runs while its worker closes', async () => {
      const id = accepted(await call('slow', 'finish me'))
      await waitFor('the call to run', async () => ((await status(id)).json().state === 'running' ? true : undefined))
      await stack.worker.close()
      const record = (await status(id)).json() as CallRecord
      expect(record).to.include({state: 'succeeded', attempts: 1, worker: stack.worker.id})
      expect(Buffer.from(record.result!.stdout, 'base64').toString()).to.equal('finish me')
      expect(startedLines(id)).to.have.length(1)
      await expectCleanedUp(id)
    })

    it('keeps a call queued while no worker runs, and a worker started later runs it', async () => {
      const id = accepted(await call('cat', 'still here'))
      await sleep(1500) // a gap in which a call taken without a worker would show
      const queued = (await status(id)).json() as CallRecord
      expect(queued).to.deep.include({callId: id, function: 'cat', state: 'queued', attempts: 0, maxAttempts: 3, deadLetter: false})
      expect(queued).to.not.have.any.keys('startedAt', 'worker', 'result', 'finishedAt')
      expect(await inputKept(id)).to.equal(true)

      const next = await stack.addWorker()
      const record = await final(id)
      expect(record).to.include({state: 'succeeded', attempts: 1, worker: next.id})
      expect(Buffer.from(record.result!.stdout, 'base64').toString()).to.equal('still here')
      expect(startedLines(id)).to.have.length(1)
      await expectCleanedUp(id)
    })
  })
})

describe('asynchronous calls without JetStream', function () {
  this.timeout(60_000)
  let stack: TestStack

  before(async () => {
    stack = await startTestStack({nats: {jetStream: false}, worker: {concurrency: 1}})
    await createFunction(stack.listener, 'cat', {image: TEST_IMAGES.cat})
    await createFunction(stack.listener, 'fire', {image: TEST_IMAGES.cat, fireAndForget: true})
  })

  after(() => stack?.stop())

  it('answers 503 saying to enable JetStream, while sync calls still work', async () => {
    for (const [fn, headers] of [['cat', ASYNC], ['fire', {}]] as const) {
      const res = await send(`${stack.listener.url}/${fn}`, {method: 'POST', body: 'x', headers})
      expect(res.status, fn).to.equal(503)
      expect(res.json().error.code).to.equal('service_unavailable')
      expect(res.json().error.message).to.contain('JetStream').and.to.contain('-js')
      expect(res.headers['retry-after']).to.equal('1')
      expect(await containersOfCall(String(res.headers['amp-call-id']))).to.deep.equal([])
    }
    const status = await send(`${stack.listener.url}/_amp/v1/calls/${randomUUID()}`)
    expect(status.status).to.equal(503)
    const sync = await send(`${stack.listener.url}/cat`, {method: 'POST', body: 'sync works'})
    expect(sync.status).to.equal(200)
    expect(sync.body.toString()).to.equal('sync works')
  })
})
