import {expect} from 'chai'
import {createServer, type IncomingHttpHeaders, type IncomingMessage, request, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {CallLost, type CallOptions, type CallResult} from '../../../src/runtime/listener/dispatcher.js'
import {AmpError} from '../../../src/runtime/shared/errors.js'
import {type StoredFunction, storedFunction} from '../../../src/runtime/shared/function-spec.js'
import {type ApiContext, createRequestHandler} from '../../../src/runtime/listener/http-api.js'
import {createLogger} from '../../../src/runtime/shared/logger.js'
import {waitUntil} from '../../helpers/wait.js'

type Sink = NonNullable<CallOptions['onStdout']>

/** A dispatcher driven by each test: it gets the stdout sink the listener passed (if any). */
class StreamingDispatcher {
  readonly asked: Array<{callId: string; streamed: boolean}> = []
  readonly abandoned: string[] = []
  script: (sink: Sink | undefined, result: (overrides?: Partial<CallResult>) => CallResult) => Promise<CallResult> = async (_sink, result) => result()

  call(callId: string, spec: StoredFunction, _input: Uint8Array, options: CallOptions = {}): Promise<CallResult> {
    this.asked.push({callId, streamed: options.onStdout !== undefined})
    const result = (overrides: Partial<CallResult> = {}): CallResult => ({
      callId,
      function: spec.name,
      exitCode: 0,
      stdout: Buffer.alloc(0),
      stderr: Buffer.alloc(0),
      stderrTruncated: false,
      durationMs: 12,
      worker: 'worker-1',
      ...overrides,
    })
    return this.script(options.onStdout, result)
  }

  abandon(callId: string): void {
    this.abandoned.push(callId)
  }
}

interface Reply {
  status: number
  headers: IncomingHttpHeaders
  /** Body chunks in arrival order. */
  chunks: Buffer[]
  body: Buffer
  trailers: Record<string, string | undefined>
}

describe('http-api: streamed calls (Prefer: stream)', () => {
  let server: Server
  let base: string
  let dispatcher: StreamingDispatcher
  const spec = storedFunction({name: 'echo', image: 'busybox:1.36', env: {}, createdAt: 'c', updatedAt: 'u'})
  const fireAndForget = {...spec, name: 'later', fireAndForget: true}

  beforeEach(async () => {
    dispatcher = new StreamingDispatcher()
    const specs = new Map([[spec.name, spec], [fireAndForget.name, fireAndForget]])
    const ctx: ApiContext = {
      registry: {get: async (name: string) => specs.get(name)} as unknown as ApiContext['registry'],
      dispatcher,
      maxBodyBytes: 1024 * 1024,
      logger: createLogger({level: 'error', write: () => {}}),
      draining: () => false,
      asyncCalls: {
        enqueue: async (callId: string, fn: StoredFunction) => ({callId, function: fn.name, state: 'queued', statusUrl: `/_amp/v1/calls/${callId}`}),
      } as unknown as ApiContext['asyncCalls'],
    }
    server = createServer(createRequestHandler(ctx))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  afterEach(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  /** POSTs a call; `onChunk` sees each body chunk as it arrives (with the response, to pause it). */
  function post(name: string, headers: Record<string, string>, onChunk?: (chunk: Buffer, res: IncomingMessage) => void): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = request(`${base}/${name}`, {method: 'POST', headers, agent: false}, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk)
          onChunk?.(chunk, res)
        })
        res.on('error', reject)
        res.on('end', () =>
          resolve({status: res.statusCode!, headers: res.headers, chunks, body: Buffer.concat(chunks), trailers: res.trailers}),
        )
      })
      req.on('error', reject)
      req.end('input')
    })
  }

  const stream = {prefer: 'stream'}

  it('asks the dispatcher to stream only when the caller prefers it (also among other preferences)', async () => {
    await post('echo', {})
    await post('echo', stream)
    await post('echo', {prefer: 'wait=5, Stream'})
    expect(dispatcher.asked.map((call) => call.streamed)).to.deep.equal([false, true, true])
  })

  it('writes each chunk as it arrives: the first reaches the client while the call still runs', async () => {
    let firstArrived!: () => void
    const arrived = new Promise<void>((resolve) => (firstArrived = resolve))
    dispatcher.script = async (sink, result) => {
      await sink!(Buffer.from('first\n'), 'worker-1')
      // Without streaming this would never resolve: the answer would wait for the call to end.
      await arrived
      await sink!(Buffer.from('second\n'), 'worker-1')
      return result()
    }
    const reply = await post('echo', stream, (chunk) => {
      if (chunk.toString().includes('first')) firstArrived()
    })
    expect(reply.status).to.equal(200)
    expect(reply.body.toString()).to.equal('first\nsecond\n')
    expect(reply.headers['transfer-encoding']).to.equal('chunked')
    expect(reply.headers['preference-applied']).to.equal('stream')
    expect(reply.headers['content-type']).to.equal('application/octet-stream')
    expect(reply.headers.trailer).to.equal('Amp-Exit-Code, Amp-Outcome, Amp-Error, Amp-Duration-Ms')
    expect(reply.headers['amp-worker']).to.equal('worker-1')
    expect(reply.headers['amp-call-id']).to.equal(dispatcher.asked[0].callId)
    expect(reply.trailers).to.deep.equal({'amp-outcome': 'exited', 'amp-exit-code': '0', 'amp-duration-ms': '12'})
  })

  it('puts a non-zero exit code in the trailer (the status is already 200)', async () => {
    dispatcher.script = async (sink, result) => {
      await sink!(Buffer.from('partial'), 'worker-1')
      return result({exitCode: 3})
    }
    const reply = await post('echo', stream)
    expect(reply.status).to.equal(200)
    expect(reply.trailers['amp-outcome']).to.equal('exited')
    expect(reply.trailers['amp-exit-code']).to.equal('3')
  })

  it('answers exactly as a buffered call when the result comes before any stdout', async () => {
    dispatcher.script = async (_sink, result) => result({exitCode: 3, stderr: Buffer.from('oops')})
    const reply = await post('echo', stream)
    expect(reply.status).to.equal(500)
    expect(reply.headers['amp-exit-code']).to.equal('3')
    expect(reply.headers['amp-stderr-size']).to.equal('4')
    expect(reply.headers).to.not.have.property('preference-applied')
    expect(reply.headers).to.not.have.property('trailer')
    expect(reply.trailers).to.deep.equal({})
  })

  it('answers with the buffered status when the call fails before any stdout', async () => {
    for (const [error, status] of [
      [new AmpError('function_failed_to_run', 'cannot run nope:1: No such image'), 502],
      [new AmpError('no_worker', 'no worker is running'), 503],
      [new AmpError('function_timeout', 'function echo timed out after 1s'), 504],
    ] as const) {
      dispatcher.script = async () => {
        throw error
      }
      const reply = await post('echo', stream)
      expect(reply.status).to.equal(status)
      expect(reply.headers['content-type']).to.equal('application/json')
      expect(JSON.parse(reply.body.toString()).error.code).to.equal(error.code)
      expect(reply.headers).to.not.have.property('preference-applied')
    }
  })

  it('reports a failure after the first byte in the trailers: timeout, lost, failed', async () => {
    for (const [error, outcome] of [
      [new AmpError('function_timeout', 'function echo timed out after 1s; its container was killed'), 'timeout'],
      [new CallLost('worker w1 stopped responding during the call'), 'lost'],
      [new AmpError('function_failed_to_run', 'function output exceeded the 8 MiB limit'), 'failed'],
    ] as const) {
      dispatcher.script = async (sink) => {
        await sink!(Buffer.from('some output'), 'worker-1')
        throw error
      }
      const reply = await post('echo', stream)
      expect(reply.status).to.equal(200)
      expect(reply.body.toString()).to.equal('some output')
      expect(reply.trailers['amp-outcome']).to.equal(outcome)
      expect(reply.trailers['amp-error']).to.equal(error.message)
      expect(reply.trailers).to.not.have.property('amp-exit-code')
      expect(Number(reply.trailers['amp-duration-ms'])).to.be.at.least(0)
    }
  })

  it('delays the ack (the sink) until the socket took the chunk: backpressure reaches the worker', async () => {
    let resumed = false
    let sinkDoneBeforeResume: boolean | undefined
    const big = Buffer.alloc(16 * 1024 * 1024, 7)
    dispatcher.script = async (sink, result) => {
      await sink!(big, 'worker-1')
      sinkDoneBeforeResume = !resumed
      return result()
    }
    const reply = await post('echo', stream, (_chunk, res) => {
      if (resumed || res.isPaused()) return
      // Stop reading: 16 MiB cannot all fit in the socket buffers, so the write must wait for us.
      res.pause()
      setTimeout(() => {
        resumed = true
        res.resume()
      }, 300)
    })
    expect(reply.body.length).to.equal(big.length)
    expect(sinkDoneBeforeResume).to.equal(false)
  })

  it('stops the call when the caller hangs up mid-stream', async () => {
    let hungUp!: () => void
    const gone = new Promise<void>((resolve) => (hungUp = resolve))
    dispatcher.script = async (sink) => {
      await sink!(Buffer.from('first'), 'worker-1')
      await gone
      throw new AmpError('function_failed_to_run', 'the caller hung up before the call finished')
    }
    await new Promise<void>((resolve) => {
      const req = request(`${base}/echo`, {method: 'POST', headers: stream, agent: false}, (res) => {
        res.once('data', () => {
          res.destroy()
          resolve()
        })
      })
      req.on('error', () => {})
      req.end()
    })
    await waitUntil('the call to be abandoned', () => dispatcher.abandoned.length > 0, 2000, 10)
    hungUp()
    expect(dispatcher.abandoned).to.deep.equal([dispatcher.asked[0].callId])
  })

  it('lets async win: respond-async with stream, or a fire-and-forget function, answers 202', async () => {
    const asked = await post('echo', {prefer: 'respond-async, stream'})
    expect(asked.status).to.equal(202)
    expect(asked.headers['preference-applied']).to.equal('respond-async')
    const later = await post('later', stream)
    expect(later.status).to.equal(202)
    expect(dispatcher.asked).to.deep.equal([])
  })
})
