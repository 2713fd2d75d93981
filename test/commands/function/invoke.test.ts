import {expect} from 'chai'
import {Readable} from 'node:stream'

import type {InvokeJson} from '../../../src/commands/function/invoke.js'
import {type FakeListener, startFakeListener} from '../../helpers/fake-listener.js'
import {isolateEnvironment, runAmp} from '../../helpers/run-amp.js'

/** Replaces process.stdin for one test. */
function stdinFrom(data: Buffer, isTTY = false): () => void {
  const original = Object.getOwnPropertyDescriptor(process, 'stdin')!
  const stream = Object.assign(Readable.from([data]), {isTTY})
  Object.defineProperty(process, 'stdin', {configurable: true, enumerable: true, get: () => stream})
  return () => Object.defineProperty(process, 'stdin', original)
}

/** Runs amp and captures what it writes with process.stdout.write / process.stderr.write as raw bytes. */
async function runRaw(args: string[]) {
  const raw = {stdout: [] as Buffer[], stderr: [] as Buffer[]}
  const originals = {stdout: process.stdout.write, stderr: process.stderr.write}
  for (const name of ['stdout', 'stderr'] as const) {
    // runCommand's capture calls these (print: true) with what the command wrote.
    process[name].write = ((chunk: string | Uint8Array) => {
      raw[name].push(Buffer.from(chunk))
      return true
    }) as typeof process.stdout.write
  }
  try {
    const run = await runAmp<InvokeJson>(args, {print: true})
    return {...run, rawStdout: Buffer.concat(raw.stdout), rawStderr: Buffer.concat(raw.stderr)}
  } finally {
    process.stdout.write = originals.stdout
    process.stderr.write = originals.stderr
  }
}

describe('amp function invoke', () => {
  isolateEnvironment()
  let fake: FakeListener
  let restoreStdin: (() => void) | undefined
  beforeEach(async () => {
    fake = await startFakeListener()
    fake.add('test')
  })
  afterEach(async () => {
    restoreStdin?.()
    restoreStdin = undefined
    await fake.close()
  })

  it('sends all of stdin and writes the function stdout and stderr byte for byte, exit 0', async () => {
    const input = Buffer.from([0, 255, 1, 254, 10, 13, 0xc3, 0x28])
    fake.onInvoke = (_name, body) => ({exitCode: 0, stdout: Buffer.concat([body, Buffer.from([7])]), stderr: Buffer.from([0xff, 0x0a])})
    restoreStdin = stdinFrom(input)
    const run = await runRaw(['function', 'invoke', 'test', '--server', fake.url])
    expect(run.exitCode).to.equal(0)
    expect(fake.requests[0].body.equals(input)).to.equal(true)
    expect(fake.requests[0].headers.accept).to.equal('application/vnd.amp.result+json')
    expect(run.rawStdout.equals(Buffer.concat([input, Buffer.from([7])]))).to.equal(true)
    expect(run.rawStderr.equals(Buffer.from([0xff, 0x0a]))).to.equal(true)
  })

  it('works as amp fn invoke with an empty input', async () => {
    fake.onInvoke = (_name, body) => ({exitCode: 0, stdout: `got ${body.length} bytes`})
    restoreStdin = stdinFrom(Buffer.alloc(0))
    const {stdout, exitCode} = await runAmp(['fn', 'invoke', 'test', '--server', fake.url])
    expect(exitCode).to.equal(0)
    expect(stdout).to.equal('got 0 bytes')
  })

  for (const code of [1, 3, 42, 255]) {
    it(`exits ${code} when the function exits ${code}, still writing its outputs`, async () => {
      fake.onInvoke = () => ({exitCode: code, stdout: 'partial', stderr: 'boom\n'})
      restoreStdin = stdinFrom(Buffer.from('x'))
      const {stdout, stderr, error, exitCode} = await runAmp(['fn', 'invoke', 'test', '--server', fake.url])
      expect(error).to.equal(undefined)
      expect(exitCode).to.equal(code)
      expect(stdout).to.equal('partial')
      expect(stderr).to.equal('boom\n')
    })
  }

  it('prints the whole outcome as JSON with --json, outputs in base64, and still passes the exit code', async () => {
    fake.onInvoke = () => ({exitCode: 3, stdout: Buffer.from([0, 255]), stderr: 'log\n', stderrTruncated: true})
    restoreStdin = stdinFrom(Buffer.from('in'))
    const {stdout, stderr, exitCode} = await runAmp(['fn', 'invoke', 'test', '--json', '--server', fake.url])
    expect(exitCode).to.equal(3)
    expect(stderr).to.equal('')
    expect(JSON.parse(stdout)).to.deep.equal({
      callId: 'c' + JSON.parse(stdout).callId.slice(1),
      function: 'test',
      exitCode: 3,
      stdout: Buffer.from([0, 255]).toString('base64'),
      stderr: Buffer.from('log\n').toString('base64'),
      stderrTruncated: true,
      durationMs: 12,
      worker: 'w-fake',
    })
  })

  it('says on stderr when the function log was cut', async () => {
    fake.onInvoke = () => ({exitCode: 0, stdout: 'ok', stderr: 'lo', stderrTruncated: true})
    restoreStdin = stdinFrom(Buffer.from('x'))
    const {stderr} = await runAmp(['fn', 'invoke', 'test', '--server', fake.url])
    expect(stderr).to.match(/^lo\namp: the function's stderr was cut to its first 2 bytes \(call c\d+\)\n$/)
  })

  it('tells a terminal user that it reads until Ctrl-D', async () => {
    restoreStdin = stdinFrom(Buffer.from('typed'), true)
    const {stderr, stdout} = await runAmp(['fn', 'invoke', 'test', '--server', fake.url])
    expect(stderr).to.include('until Ctrl-D')
    expect(stdout).to.equal('typed')
  })

  const failures: Array<[number, string, number, string]> = [
    [503, 'no_worker', 104, 'no worker is available'],
    [504, 'function_timeout', 105, 'function test timed out after 30s; its container was killed'],
    [502, 'function_failed_to_run', 106, 'image busybox:1.36 not found'],
    [413, 'input_too_large', 107, 'input is larger than the limit of 8MiB'],
  ]
  for (const [status, code, exit, message] of failures) {
    it(`exits ${exit} on ${code}, with the listener's message`, async () => {
      fake.onInvoke = () => ({status, code, message})
      restoreStdin = stdinFrom(Buffer.from('x'))
      const {error, stdout, exitCode} = await runAmp(['fn', 'invoke', 'test', '--server', fake.url])
      expect(exitCode).to.equal(exit)
      expect(stdout).to.equal('')
      expect(error?.message).to.match(new RegExp(`^${message.replaceAll(/[().]/g, '\\$&')} \\(call c\\d+\\)$`))
    })
  }

  it('exits 102 for an unknown function', async () => {
    restoreStdin = stdinFrom(Buffer.from('x'))
    const {error, exitCode} = await runAmp(['fn', 'invoke', 'nope', '--server', fake.url])
    expect(exitCode).to.equal(102)
    expect(error?.message).to.match(/^no function named nope/)
    expect(error?.suggestions?.join()).to.include('amp function ls')
  })

  it('exits 109 when the answer is cut off', async () => {
    fake.onInvoke = () => ({raw: {status: 200, contentType: 'application/vnd.amp.result+json', body: '{"callId":"c1","std'}})
    restoreStdin = stdinFrom(Buffer.from('x'))
    const {error, exitCode} = await runAmp(['fn', 'invoke', 'test', '--server', fake.url])
    expect(exitCode).to.equal(109)
    expect(error?.message).to.match(/cut off or malformed/)
  })

  it('refuses a bad name with exit 2 before reading stdin or sending anything', async () => {
    let read = false
    const original = Object.getOwnPropertyDescriptor(process, 'stdin')!
    Object.defineProperty(process, 'stdin', {
      configurable: true,
      get() {
        read = true
        return Readable.from([Buffer.from('x')])
      },
    })
    restoreStdin = () => Object.defineProperty(process, 'stdin', original)
    const {error, exitCode} = await runAmp(['fn', 'invoke', 'Bad', '--server', fake.url])
    expect(exitCode).to.equal(2)
    expect(error?.message).to.match(/invalid function name "Bad"/)
    expect(read).to.equal(false)
    expect(fake.requests).to.have.length(0)
  })

  describe('asynchronous calls', () => {
    const UUID = /^[0-9a-f-]{36}$/

    it('--async sends Prefer: respond-async and prints the call id alone on stdout, the hint on stderr, exit 0', async () => {
      restoreStdin = stdinFrom(Buffer.from('later'))
      const {stdout, stderr, exitCode} = await runAmp(['fn', 'invoke', 'test', '--async', '--server', fake.url])
      expect(exitCode).to.equal(0)
      const id = stdout.trim()
      expect(id).to.match(UUID)
      expect(stdout).to.equal(`${id}\n`)
      expect(stderr).to.equal(`queued; fetch the result with: amp call get ${id} --wait\n`)
      expect(fake.requests[0].headers.prefer).to.equal('respond-async')
      expect(fake.requests[0].body.toString()).to.equal('later')
      expect(fake.calls.get(id)).to.include({function: 'test', state: 'queued'})
    })

    it('--async --json prints the 202 body and nothing on stderr', async () => {
      restoreStdin = stdinFrom(Buffer.from('x'))
      const {stdout, stderr, exitCode} = await runAmp(['fn', 'invoke', 'test', '--async', '--json', '--server', fake.url])
      expect(exitCode).to.equal(0)
      expect(stderr).to.equal('')
      const printed = JSON.parse(stdout)
      expect(printed).to.deep.equal({callId: printed.callId, function: 'test', state: 'queued', statusUrl: `/_amp/v1/calls/${printed.callId}`})
    })

    it('renders the 202 of a fire-and-forget function called without --async the same way, not as an error', async () => {
      fake.functions.get('test')!.fireAndForget = true
      restoreStdin = stdinFrom(Buffer.from('x'))
      const {stdout, stderr, error, exitCode} = await runAmp(['fn', 'invoke', 'test', '--server', fake.url])
      expect(error).to.equal(undefined)
      expect(exitCode).to.equal(0)
      expect(stdout.trim()).to.match(UUID)
      expect(stderr).to.match(/^queued; fetch the result with: amp call get [0-9a-f-]{36} --wait\n$/)
      expect(fake.requests[0].headers).to.not.have.property('prefer')
    })

    it('--callback-url sends the header and makes the call asynchronous', async () => {
      restoreStdin = stdinFrom(Buffer.from('x'))
      const {stdout, exitCode} = await runAmp(['fn', 'invoke', 'test', '--callback-url', 'https://hooks.example/done', '--server', fake.url])
      expect(exitCode).to.equal(0)
      expect(fake.requests[0].headers).to.include({prefer: 'respond-async', 'amp-callback-url': 'https://hooks.example/done'})
      expect(fake.calls.get(stdout.trim())?.callbackUrl).to.equal('https://hooks.example/done')
    })

    it('refuses a callback URL that is not absolute http(s) with exit 2, sending nothing', async () => {
      restoreStdin = stdinFrom(Buffer.from('x'))
      const {error, stdout, exitCode} = await runAmp(['fn', 'invoke', 'test', '--async', '--callback-url', 'file:///etc/passwd', '--server', fake.url])
      expect(exitCode).to.equal(2)
      expect(stdout).to.equal('')
      expect(error?.message).to.equal('invalid callback URL "file:///etc/passwd": give an absolute http:// or https:// URL')
      expect(fake.requests).to.deep.equal([])
    })

    it('exits 108 when the listener cannot queue the call (503), printing no call id', async () => {
      fake.queueDown = true
      restoreStdin = stdinFrom(Buffer.from('x'))
      const {error, stdout, exitCode} = await runAmp(['fn', 'invoke', 'test', '--async', '--server', fake.url])
      expect(exitCode).to.equal(108)
      expect(stdout).to.equal('')
      expect(error?.message).to.match(/^cannot queue the call: JetStream is unavailable \(call c\d+\)$/)
    })
  })

  describe('--stream', () => {
    const exited = (code: number) => ({'Amp-Outcome': 'exited', 'Amp-Exit-Code': String(code), 'Amp-Duration-Ms': '7'})

    it('sends Prefer: stream, writes the streamed stdout byte for byte and exits with the trailer exit code', async () => {
      for (const code of [0, 3]) {
        fake.requests.length = 0
        const chunks = [Buffer.from([0, 255, 10]), Buffer.from('second\n')]
        fake.onInvoke = () => ({stream: {chunks, trailers: exited(code)}})
        restoreStdin = stdinFrom(Buffer.from('in'))
        const run = await runRaw(['function', 'invoke', 'test', '--stream', '--server', fake.url])
        restoreStdin()
        restoreStdin = undefined
        expect(run.exitCode).to.equal(code)
        expect(run.rawStdout.equals(Buffer.concat(chunks))).to.equal(true)
        expect(run.rawStderr.length).to.equal(0)
        expect(fake.requests[0].headers.prefer).to.equal('stream')
        expect(fake.requests[0].body.toString()).to.equal('in')
      }
    })

    for (const [outcome, exit, message] of [
      ['timeout', 105, 'function test timed out after 1s; its container was killed'],
      ['failed', 106, 'function output exceeded the 8 MiB limit'],
      ['lost', 106, 'worker w1 stopped responding during the call'],
    ] as const) {
      it(`exits ${exit} when the trailer says ${outcome}, after writing the stdout that came`, async () => {
        fake.onInvoke = () => ({stream: {chunks: ['partial'], trailers: {'Amp-Outcome': outcome, 'Amp-Error': message}}})
        restoreStdin = stdinFrom(Buffer.alloc(0))
        const run = await runRaw(['fn', 'invoke', 'test', '--stream', '--server', fake.url])
        expect(run.exitCode).to.equal(exit)
        expect(run.rawStdout.toString()).to.equal('partial')
        expect(run.error?.message).to.match(new RegExp(`^${message}.* \\(call c\\d+\\)$`))
      })
    }

    it('exits 109 when the streamed answer ends without an outcome trailer (a proxy dropped them)', async () => {
      fake.onInvoke = () => ({stream: {chunks: ['x'], trailers: {}}})
      restoreStdin = stdinFrom(Buffer.alloc(0))
      const run = await runRaw(['fn', 'invoke', 'test', '--stream', '--server', fake.url])
      expect(run.exitCode).to.equal(109)
      expect(run.error?.message).to.match(/ended without a valid outcome trailer/)
    })

    it('shows a call answered whole (it ended before any stdout) as without --stream, stderr included', async () => {
      fake.onInvoke = () => ({exitCode: 4, stdout: 'out', stderr: 'err'})
      restoreStdin = stdinFrom(Buffer.alloc(0))
      const run = await runRaw(['fn', 'invoke', 'test', '--stream', '--server', fake.url])
      expect(run.exitCode).to.equal(4)
      expect(run.rawStdout.toString()).to.equal('out')
      expect(run.rawStderr.toString()).to.equal('err')
    })

    it('exits with the listener error code as without --stream (unknown function: 102)', async () => {
      restoreStdin = stdinFrom(Buffer.alloc(0))
      const run = await runRaw(['fn', 'invoke', 'nope', '--stream', '--server', fake.url])
      expect(run.exitCode).to.equal(102)
    })

    for (const extra of [['--json'], ['--async'], ['--callback-url', 'https://hooks.example/done']]) {
      it(`refuses --stream with ${extra[0]}: exit 2, nothing sent`, async () => {
        restoreStdin = stdinFrom(Buffer.alloc(0))
        const {error, stdout, exitCode} = await runAmp(['fn', 'invoke', 'test', '--stream', ...extra, '--server', fake.url])
        expect(exitCode).to.equal(2)
        // Under --json the error is printed as JSON on stdout.
        expect(error?.message ?? stdout).to.match(/--stream cannot go with --json, --async or --callback-url/)
        expect(fake.requests).to.deep.equal([])
      })
    }
  })
})
