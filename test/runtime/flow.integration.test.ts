import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {request} from 'undici'

import type {Listener} from '../../src/runtime/listener/listener.js'
import type {Worker} from '../../src/runtime/worker/worker.js'
import {containersBesidesIdle, containersOfCall, expectNoContainer} from '../helpers/containers.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {createFunction, startTestStack, type StackWithoutWorker, type TestStack} from '../helpers/stack.js'
import {waitUntil} from '../helpers/wait.js'

const MiB = 1024 * 1024

async function call(url: string, body: Uint8Array | string, headers: Record<string, string> = {}) {
  const res = await request(url, {method: 'POST', body, headers})
  const data = Buffer.from(await res.body.arrayBuffer())
  return {status: res.statusCode, headers: res.headers, body: data, json: () => JSON.parse(data.toString('utf8'))}
}

describe('end to end: listener, NATS, worker, docker', function () {
  this.timeout(120_000)
  let stack: TestStack
  let listener: Listener
  let worker: Worker

  before(async () => {
    // A default nats-server: max_payload is 1 MiB, so 8 MiB bodies must travel in chunks.
    stack = await startTestStack()
    ;({listener, worker} = stack)
    await createFunction(listener, 'cat', {image: TEST_IMAGES.cat})
    await createFunction(listener, 'fail', {image: TEST_IMAGES.fail})
    await createFunction(listener, 'stderr', {image: TEST_IMAGES.stderr})
    await createFunction(listener, 'title', {image: TEST_IMAGES.title})
    await createFunction(listener, 'sleepy', {image: TEST_IMAGES.sleep, timeoutMs: 1500})
    await createFunction(listener, 'missing', {image: 'amp-test/does-not-exist:1'})
  })

  after(() => stack?.stop())

  it('answers 200 with the function stdout and the call id, exit code and worker in headers', async () => {
    const res = await call(`${listener.url}/title`, 'hello amp functions\n')
    expect(res.status).to.equal(200)
    expect(res.body.toString()).to.equal('Hello Amp Functions\n')
    expect(res.headers['amp-call-id']).to.match(/^[0-9a-f-]{36}$/)
    expect(res.headers['amp-exit-code']).to.equal('0')
    expect(res.headers['amp-worker']).to.equal(worker.id)
    await expectNoContainer(String(res.headers['amp-call-id']))
  })

  it('passes binary input and output byte for byte', async () => {
    const every = Buffer.alloc(256 * 64)
    for (let i = 0; i < every.length; i++) every[i] = i % 256
    const input = Buffer.concat([every, randomBytes(300_000)])
    const res = await call(`${listener.url}/cat`, input)
    expect(res.status).to.equal(200)
    expect(res.body.equals(input)).to.equal(true)
  })

  it('carries an 8 MiB body in and out through a 1 MiB NATS max_payload', async () => {
    const input = randomBytes(8 * MiB)
    const res = await call(`${listener.url}/cat`, input)
    expect(res.status).to.equal(200)
    expect(res.body.length).to.equal(input.length)
    expect(res.body.equals(input)).to.equal(true)
  })

  it('answers 413 naming the limit when the input is over 8 MiB, without running anything', async () => {
    const res = await call(`${listener.url}/cat`, Buffer.alloc(8 * MiB + 1))
    expect(res.status).to.equal(413)
    expect(res.json().error.code).to.equal('input_too_large')
    expect(res.json().error.message).to.contain('8 MiB')
    expect(await containersOfCall(String(res.headers['amp-call-id']))).to.deep.equal([])
  })

  it('returns stderr separately from stdout in the result envelope', async () => {
    const res = await call(`${listener.url}/stderr`, 'some input', {accept: 'application/vnd.amp.result+json'})
    expect(res.status).to.equal(200)
    const envelope = res.json()
    expect(Buffer.from(envelope.stdout, 'base64').toString()).to.equal('some input')
    expect(Buffer.from(envelope.stderr, 'base64').toString()).to.contain('log: some input')
    expect(envelope.exitCode).to.equal(0)
    expect(envelope.callId).to.equal(res.headers['amp-call-id'])
    expect(res.headers['amp-stderr-size']).to.equal(String(Buffer.from(envelope.stderr, 'base64').length))
  })

  it('answers 500 with the exit code in a header and the stdout in the body when the function fails', async () => {
    const res = await call(`${listener.url}/fail`, 'partial output')
    expect(res.status).to.equal(500)
    expect(res.headers['amp-exit-code']).to.equal('3')
    expect(res.body.toString()).to.equal('partial output')
    const envelope = (await call(`${listener.url}/fail`, 'x', {accept: 'application/vnd.amp.result+json'})).json()
    expect(envelope.exitCode).to.equal(3)
    expect(Buffer.from(envelope.stderr, 'base64').toString()).to.contain('boom')
  })

  it('answers 404 for an unknown function', async () => {
    const res = await call(`${listener.url}/nosuchfunction`, 'x')
    expect(res.status).to.equal(404)
    expect(res.json().error).to.include({code: 'function_not_found', callId: res.headers['amp-call-id']})
  })

  it('answers 502 with the reason, at once, when the image is missing', async () => {
    const started = Date.now()
    const res = await call(`${listener.url}/missing`, 'x')
    expect(res.status).to.equal(502)
    expect(res.json().error.code).to.equal('function_failed_to_run')
    expect(res.json().error.message).to.match(/does-not-exist|No such image|pull access denied|no such host/i)
    expect(Date.now() - started).to.be.below(10_000)
    await expectNoContainer(String(res.headers['amp-call-id']))
  })

  it('answers 504 when the timeout passes, and kills and removes the container', async () => {
    const started = Date.now()
    const res = await call(`${listener.url}/sleepy`, 'x')
    expect(res.status).to.equal(504)
    expect(res.json().error.code).to.equal('function_timeout')
    expect(res.json().error.message).to.match(/timed out after (1500ms|1.5s)/)
    expect(Date.now() - started).to.be.below(10_000)
    await expectNoContainer(String(res.headers['amp-call-id']))
  })

  it('gives each of 20 concurrent calls its own answer', async () => {
    const inputs = Array.from({length: 20}, (_, i) => `call number ${i} ${randomBytes(8).toString('hex')}`)
    const results = await Promise.all(inputs.map((input) => call(`${listener.url}/cat`, input)))
    expect(results.map((r) => r.status)).to.deep.equal(inputs.map(() => 200))
    expect(results.map((r) => r.body.toString())).to.deep.equal(inputs)
    expect(new Set(results.map((r) => r.headers['amp-call-id'])).size).to.equal(20)
  })

  it('answers 405 for a method other than POST on a function path', async () => {
    const res = await request(`${listener.url}/cat`)
    expect(res.statusCode).to.equal(405)
    expect(res.headers.allow).to.equal('POST')
    await res.body.dump()
  })

  it('leaves no amp container behind after all of the above', async () => {
    let left: string[] = []
    await waitUntil(() => `no amp container left (left: ${left.join(', ')})`, async () => {
      left = await containersBesidesIdle(`label=amp.worker=${worker.id}`)
      return left.length === 0
    }, 5000, 200)
    expect(left).to.deep.equal([])
  })
})

describe('end to end: no worker', function () {
  this.timeout(60_000)
  let stack: StackWithoutWorker
  let listener: Listener

  before(async () => {
    stack = await startTestStack({worker: false})
    ;({listener} = stack)
    await createFunction(listener, 'cat', {image: TEST_IMAGES.cat})
  })

  after(() => stack?.stop())

  it('answers 503 with Retry-After at once when no worker is running', async () => {
    const started = Date.now()
    const res = await call(`${listener.url}/cat`, 'x')
    expect(res.status).to.equal(503)
    expect(res.json().error.code).to.equal('no_worker')
    expect(res.headers['retry-after']).to.equal('1')
    // "At once" means NATS no-responders, not the 5 s accept timeout.
    expect(Date.now() - started).to.be.below(2000)
  })
})

describe('end to end: several listeners and workers', function () {
  this.timeout(120_000)
  let stack: TestStack
  let listeners: Listener[]
  let workers: Worker[]

  before(async () => {
    stack = await startTestStack({worker: {concurrency: 3}, workers: 2, listeners: 2})
    ;({listeners, workers} = stack)
    await createFunction(listeners[0], 'cat', {image: TEST_IMAGES.cat})
  })

  after(() => stack?.stop())

  it('gives each call its own answer, spreading calls over the workers, whichever listener takes it', async () => {
    const inputs = Array.from({length: 24}, (_, i) => `call ${i} ${randomBytes(6).toString('hex')}`)
    // A function created through one listener is served by the other at once (both read etcd).
    const results = await Promise.all(inputs.map((input, i) => call(`${listeners[i % 2].url}/cat`, input)))
    expect(results.map((r) => r.body.toString())).to.deep.equal(inputs)
    const used = new Set(results.map((r) => r.headers['amp-worker']))
    expect([...used].sort()).to.deep.equal(workers.map((w) => w.id).sort())
    for (const r of results) await expectNoContainer(String(r.headers['amp-call-id']))
  })
})
