import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import {request} from 'undici'

import type {Listener} from '../../src/runtime/listener/listener.js'
import {containersOfCall, expectNoContainer} from '../helpers/containers.js'
import {TEST_IMAGES} from '../helpers/images.js'
import {DOCKER} from '../helpers/services.js'
import {createFunction, startTestStack, type TestStack} from '../helpers/stack.js'

interface Streamed {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  trailers: Record<string, string>
}

/**
 * POSTs a call with `Prefer: stream` and reads the body chunk by chunk; `onChunk` runs on each
 * chunk before the next is read (with the call id, known from the head).
 */
async function streamCall(url: string, input: Buffer | string, onChunk?: (chunk: Buffer, callId: string) => Promise<void>): Promise<Streamed> {
  const res = await request(url, {method: 'POST', body: input, headers: {prefer: 'stream'}})
  const parts: Buffer[] = []
  for await (const chunk of res.body) {
    parts.push(chunk as Buffer)
    await onChunk?.(chunk as Buffer, String(res.headers['amp-call-id']))
  }
  return {status: res.statusCode, headers: res.headers, body: Buffer.concat(parts), trailers: res.trailers}
}

describe('streamed calls end to end (Prefer: stream): listener, NATS, worker, docker', function () {
  this.timeout(120_000)
  let stack: TestStack
  let listener: Listener

  before(async () => {
    stack = await startTestStack()
    ;({listener} = stack)
    // `sh` runs its input as a shell script.
    // prestart 0: the hang-up test finds the call's container by its amp.call label, which a pre-started one lacks.
    await createFunction(listener, 'sh', {image: TEST_IMAGES.sh, timeoutMs: 30_000, prestart: 0})
    await createFunction(listener, 'sh-short', {image: TEST_IMAGES.sh, timeoutMs: 1500})
    await createFunction(listener, 'cat', {image: TEST_IMAGES.cat})
    await createFunction(listener, 'missing', {image: 'amp-test/does-not-exist:1'})
  })

  after(() => stack?.stop())

  it('delivers the first line while the function still runs: it writes the second only once the client has the first', async () => {
    // The function waits for a file that the test creates (docker exec) only after the first line reached it.
    // A listener or worker that held stdout until the end would never let that happen: the call would time out.
    const script = 'echo first; while [ ! -e /go ]; do sleep 0.05; done; echo second\n'
    const seen: string[] = []
    const res = await streamCall(`${listener.url}/sh`, script, async (chunk, callId) => {
      seen.push(chunk.toString())
      if (chunk.toString().includes('first')) await execa(DOCKER, ['exec', `amp-${callId}`, 'touch', '/go'])
    })
    expect(res.status).to.equal(200)
    expect(res.headers['preference-applied']).to.equal('stream')
    expect(res.headers['transfer-encoding']).to.equal('chunked')
    expect(res.body.toString()).to.equal('first\nsecond\n')
    expect(seen[0]).to.equal('first\n')
    expect(res.trailers['amp-outcome']).to.equal('exited')
    expect(res.trailers['amp-exit-code']).to.equal('0')
    expect(Number(res.trailers['amp-duration-ms'])).to.be.above(0)
    await expectNoContainer(String(res.headers['amp-call-id']))
  })

  it('sends the first chunk long before the end of a function that writes, sleeps 2 s, writes again', async () => {
    const arrivals: number[] = []
    const res = await streamCall(`${listener.url}/sh`, 'echo one; sleep 2; echo two\n', async () => {
      arrivals.push(Date.now())
    })
    const ended = Date.now()
    expect(res.body.toString()).to.equal('one\ntwo\n')
    // An ordering check: the first chunk came before the 2 s sleep, not with the end of the call.
    expect(ended - arrivals[0]).to.be.at.least(1500)
  })

  it('puts a non-zero exit code in the trailer', async () => {
    const res = await streamCall(`${listener.url}/sh`, 'echo out; exit 3\n')
    expect(res.status).to.equal(200)
    expect(res.body.toString()).to.equal('out\n')
    expect(res.trailers['amp-outcome']).to.equal('exited')
    expect(res.trailers['amp-exit-code']).to.equal('3')
  })

  it('ends with Amp-Outcome: timeout in the trailer when the function times out after writing', async () => {
    const res = await streamCall(`${listener.url}/sh-short`, 'echo started; sleep 30\n')
    expect(res.status).to.equal(200)
    expect(res.body.toString()).to.equal('started\n')
    expect(res.trailers['amp-outcome']).to.equal('timeout')
    expect(res.trailers['amp-error']).to.match(/timed out after 1500ms/)
    expect(res.trailers).to.not.have.property('amp-exit-code')
    await expectNoContainer(String(res.headers['amp-call-id']))
  })

  it('still enforces the 8 MiB stdout limit: what came is at most 8 MiB, and the trailer says failed', async () => {
    const res = await streamCall(`${listener.url}/sh`, 'head -c 9000000 /dev/zero; sleep 30\n')
    expect(res.status).to.equal(200)
    expect(res.body.length).to.be.at.most(8 * 1024 * 1024)
    expect(res.trailers['amp-outcome']).to.equal('failed')
    expect(res.trailers['amp-error']).to.match(/exceeded the 8 MiB limit/)
    await expectNoContainer(String(res.headers['amp-call-id']))
  })

  it('answers exactly as a buffered call when the call fails before any output (unknown image: 502)', async () => {
    const res = await streamCall(`${listener.url}/missing`, 'x')
    expect(res.status).to.equal(502)
    expect(res.headers['content-type']).to.equal('application/json')
    expect(JSON.parse(res.body.toString()).error.code).to.equal('function_failed_to_run')
    expect(res.headers).to.not.have.property('preference-applied')
    expect(res.trailers).to.deep.equal({})
  })

  it('answers exactly as a buffered call when the function ends without writing stdout (exit 4: 500)', async () => {
    const res = await streamCall(`${listener.url}/sh`, 'echo oops >&2; exit 4\n')
    expect(res.status).to.equal(500)
    expect(res.headers['amp-exit-code']).to.equal('4')
    expect(res.headers['amp-stderr-size']).to.equal('5')
    expect(res.body.length).to.equal(0)
    expect(res.headers).to.not.have.property('preference-applied')
  })

  it('streams 3 MiB of random bytes exactly as the buffered answer has them', async () => {
    const input = randomBytes(3 * 1024 * 1024)
    const streamed = await streamCall(`${listener.url}/cat`, input)
    const buffered = await request(`${listener.url}/cat`, {method: 'POST', body: input})
    const body = Buffer.from(await buffered.body.arrayBuffer())
    expect(streamed.headers['preference-applied']).to.equal('stream')
    expect(streamed.trailers['amp-exit-code']).to.equal('0')
    expect(streamed.body.length).to.equal(input.length)
    expect(streamed.body.equals(input)).to.equal(true)
    expect(body.equals(streamed.body)).to.equal(true)
  })

  it("gives the CLI's client the streamed stdout and the trailer's exit code", async () => {
    const got: Buffer[] = []
    const outcome = await stack.client.callStreamed('sh', Buffer.from('echo a; sleep 1; echo b; exit 3\n'), (chunk) => void got.push(chunk))
    expect(outcome.kind).to.equal('streamed')
    expect(outcome.kind === 'streamed' && outcome.call.exitCode).to.equal(3)
    expect(Buffer.concat(got).toString()).to.equal('a\nb\n')
    expect(got.length).to.be.at.least(2)
  })

  it('stops the container when the caller hangs up mid-stream', async () => {
    const res = await request(`${listener.url}/sh`, {method: 'POST', body: 'echo started; sleep 60\n', headers: {prefer: 'stream'}})
    const callId = String(res.headers['amp-call-id'])
    for await (const _chunk of res.body) break // the first chunk, then hang up
    expect(await containersOfCall(callId)).to.have.length(1)
    await expectNoContainer(callId, 10_000)
  })
})
